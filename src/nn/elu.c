/* ELU: y = x for x > 0, alpha (exp(x) - 1) otherwise. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "nn/elu.h"

void fh_elu_forward(float *y, const float *x, size_t n, float alpha) {
  /* expm1 keeps the relative accuracy near 0; NaN fails x > 0 and propagates
   * through expm1f. */
  for (size_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : alpha * expm1f(x[i]);
}

void fh_elu_backward(float *dx, const float *dy, const float *x, size_t n, float alpha) {
  for (size_t i = 0; i < n; i++) dx[i] = x[i] > 0.0f ? dy[i] : dy[i] * alpha * expf(x[i]);
}

static void elu_forward(const fh_layer *L, const fh_layer_ctx *c, const float *x, float *y,
                        int B) {
  (void)c;
  fh_elu_forward(y, x, (size_t)B * L->out_size, L->farg[0]);
}

static void elu_backward(const fh_layer *L, const fh_layer_ctx *c, const float *x,
                         const float *y, const float *dy, float *dx, int B) {
  (void)c, (void)y;
  if (dx) fh_elu_backward(dx, dy, x, (size_t)B * L->out_size, L->farg[0]);
}

static double no_flops(const fh_layer *L, int B) {
  (void)L, (void)B;
  return 0.0;
}

static void elu_describe(const fh_layer *L, char *buf, size_t cap) {
  /* Python prints a float with at least one decimal: ELU(alpha=1.0). */
  const double a = L->farg[0];
  if (a == floor(a) && fabs(a) < 1e15)
    snprintf(buf, cap, "ELU(alpha=%.1f)", a);
  else
    snprintf(buf, cap, "ELU(alpha=%g)", a);
}

static const fh_layer_ops elu_ops = {
    .kind_name = "ELU",
    .forward = elu_forward,
    .backward = elu_backward,
    .init = NULL,
    .flops_forward = no_flops,
    .flops_backward = no_flops,
    .describe = elu_describe,
};

fh_layer fh_layer_elu(const char *name, float alpha, int c, int h, int w) {
  fh_layer L;
  memset(&L, 0, sizeof L);
  L.kind = FH_LAYER_ELU;
  L.ops = &elu_ops;
  snprintf(L.name, sizeof L.name, "%s", name);
  L.input = -1;
  L.in_shape[0] = L.out_shape[0] = c;
  L.in_shape[1] = L.out_shape[1] = h;
  L.in_shape[2] = L.out_shape[2] = w;
  L.in_size = L.out_size = (size_t)c * h * w;
  L.farg[0] = alpha;
  return L;
}
