/* ReLU: y = max(x, 0), element-wise, any shape. */
#include <stdio.h>
#include <string.h>

#include "nn/layer.h"

void fh_relu_forward(float *y, const float *x, size_t n) {
  /* (x < 0) is false for NaN, so NaN passes through as in torch.relu. */
  for (size_t i = 0; i < n; i++) y[i] = x[i] < 0.0f ? 0.0f : x[i];
}

void fh_relu_backward(float *dx, const float *dy, const float *y, size_t n) {
  /* torch's threshold_backward on the output: zero where y <= 0. dy is read
   * whatever y is: a select, which vectorises on any x86-64 (a conditional
   * read does not without AVX's masked loads: 2.3 ms against 0.4 ms on a
   * [10, 64, 32, 32] batch in an SSE2 build). */
  for (size_t i = 0; i < n; i++) {
    const float g = dy[i];
    dx[i] = y[i] <= 0.0f ? 0.0f : g;
  }
}

static void relu_forward(const fh_layer *L, const fh_layer_ctx *c, const float *x, float *y,
                         int B) {
  (void)c;
  fh_relu_forward(y, x, (size_t)B * L->out_size);
}

static void relu_backward(const fh_layer *L, const fh_layer_ctx *c, const float *x,
                          const float *y, const float *dy, float *dx, int B) {
  (void)c, (void)x;
  if (dx) fh_relu_backward(dx, dy, y, (size_t)B * L->out_size);
}

static double no_flops(const fh_layer *L, int B) {
  (void)L, (void)B;
  return 0.0;
}

static const fh_layer_ops relu_ops = {
    .kind_name = "ReLU",
    .forward = relu_forward,
    .backward = relu_backward,
    .init = NULL,
    .flops_forward = no_flops,
    .flops_backward = no_flops,
};

fh_layer fh_layer_relu(const char *name, int c, int h, int w) {
  fh_layer L;
  memset(&L, 0, sizeof L);
  L.kind = FH_LAYER_RELU;
  L.ops = &relu_ops;
  snprintf(L.name, sizeof L.name, "%s", name);
  L.input = -1;
  L.in_shape[0] = L.out_shape[0] = c;
  L.in_shape[1] = L.out_shape[1] = h;
  L.in_shape[2] = L.out_shape[2] = w;
  L.in_size = L.out_size = (size_t)c * h * w;
  return L;
}
