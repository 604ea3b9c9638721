/* Flatten: [C, H, W] -> [C*H*W, 1, 1], the same floats in the same order. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/flatten.h"

/* x [B, C*H*W] -> y [B, C*H*W] */
static void flatten_forward(const fh_layer *L, const fh_layer_ctx *c, const float *x, float *y,
                            int B) {
  (void)c;
  memcpy(y, x, (size_t)B * L->out_size * sizeof(float));
}

/* dy [B, C*H*W] -> dx [B, C*H*W] */
static void flatten_backward(const fh_layer *L, const fh_layer_ctx *c, const float *x,
                             const float *y, const float *dy, float *dx, int B) {
  (void)c, (void)x, (void)y;
  if (dx) memcpy(dx, dy, (size_t)B * L->in_size * sizeof(float));
}

static double no_flops(const fh_layer *L, int B) {
  (void)L, (void)B;
  return 0.0;
}

static const fh_layer_ops flatten_ops = {
    .kind_name = "Flatten",
    .forward = flatten_forward,
    .backward = flatten_backward,
    .init = NULL,
    .flops_forward = no_flops,
    .flops_backward = no_flops,
};

fh_layer fh_layer_flatten(const char *name, int c, int h, int w) {
  if (c < 1 || h < 1 || w < 1) {
    fprintf(stderr, "fedhpc: internal error: Flatten layer '%s': input [%d, %d, %d]\n", name, c,
            h, w);
    abort();
  }
  fh_layer L;
  memset(&L, 0, sizeof L);
  L.kind = FH_LAYER_FLATTEN;
  L.ops = &flatten_ops;
  snprintf(L.name, sizeof L.name, "%s", name);
  L.input = -1;
  L.in_shape[0] = c, L.in_shape[1] = h, L.in_shape[2] = w;
  L.out_shape[0] = c * h * w, L.out_shape[1] = 1, L.out_shape[2] = 1;
  L.in_size = L.out_size = (size_t)c * h * w;
  return L;
}
