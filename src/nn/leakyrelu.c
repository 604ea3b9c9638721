/* LeakyReLU (nn.LeakyReLU): y = x for x > 0, slope x otherwise. */
#include <stdio.h>
#include <string.h>

#include "nn/leakyrelu.h"

void fh_leakyrelu_forward(float *y, const float *x, size_t n, float slope) {
  /* torch: x > 0 ? x : x * slope; NaN takes the second branch and stays NaN. */
  for (size_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : x[i] * slope;
}

void fh_leakyrelu_backward(float *dx, const float *dy, const float *x, size_t n, float slope) {
  /* torch's leaky_relu_backward on the input: dy where x > 0, else dy slope. */
  for (size_t i = 0; i < n; i++) dx[i] = x[i] > 0.0f ? dy[i] : dy[i] * slope;
}

static void lrelu_forward(const fh_layer *L, const fh_layer_ctx *c, const float *x, float *y,
                          int B) {
  (void)c;
  fh_leakyrelu_forward(y, x, (size_t)B * L->out_size, L->farg[0]);
}

static void lrelu_backward(const fh_layer *L, const fh_layer_ctx *c, const float *x,
                           const float *y, const float *dy, float *dx, int B) {
  (void)c, (void)y;
  if (dx) fh_leakyrelu_backward(dx, dy, x, (size_t)B * L->out_size, L->farg[0]);
}

static double no_flops(const fh_layer *L, int B) {
  (void)L, (void)B;
  return 0.0;
}

static void lrelu_describe(const fh_layer *L, char *buf, size_t cap) {
  snprintf(buf, cap, "LeakyReLU(negative_slope=%g)", (double)L->farg[0]);
}

static const fh_layer_ops lrelu_ops = {
    .kind_name = "LeakyReLU",
    .forward = lrelu_forward,
    .backward = lrelu_backward,
    .init = NULL,
    .flops_forward = no_flops,
    .flops_backward = no_flops,
    .describe = lrelu_describe,
};

fh_layer fh_layer_leakyrelu(const char *name, float slope, int c, int h, int w) {
  fh_layer L;
  memset(&L, 0, sizeof L);
  L.kind = FH_LAYER_LEAKYRELU;
  L.ops = &lrelu_ops;
  snprintf(L.name, sizeof L.name, "%s", name);
  L.input = -1;
  L.in_shape[0] = L.out_shape[0] = c;
  L.in_shape[1] = L.out_shape[1] = h;
  L.in_shape[2] = L.out_shape[2] = w;
  L.in_size = L.out_size = (size_t)c * h * w;
  L.farg[0] = slope;
  return L;
}
