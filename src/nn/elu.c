/* ELU: y = x for x > 0, alpha (exp(x) - 1) otherwise. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "nn/elu.h"

/* exp(x) = s (1 + p) with s = 2^k, p = expm1(r), x = k ln 2 + r, |r| <= ln 2 / 2,
 * for x <= 0 (below -87.6, where exp is subnormal, x is taken as -87.6:
 * k >= -126 keeps s = 2^k a normal float).
 * Branch-free float arithmetic, so that the loops below vectorise: k by the
 * round-to-nearest of adding 1.5 2^23, ln 2 in two parts (Cody and Waite:
 * k ln2_hi is exact for |k| < 2^7), expm1(r) by its Taylor series to r^8
 * (truncation under 2e-10 relative on |r| <= 0.347). NaN stays NaN in p. */
static inline void exp_parts(float x, float *s, float *p) {
  x = x < -87.6f ? -87.6f : x;
  const float t = x * 1.44269504f + 12582912.0f;
  const float k = t - 12582912.0f;
  const float r = (x - k * 0.693359375f) + k * 2.12194440e-4f;
  float q = 1.0f / 40320.0f;
  q = q * r + 1.0f / 5040.0f;
  q = q * r + 1.0f / 720.0f;
  q = q * r + 1.0f / 120.0f;
  q = q * r + 1.0f / 24.0f;
  q = q * r + 1.0f / 6.0f;
  q = q * r + 0.5f;
  *p = r + r * r * q;
  uint32_t tb, sb;
  memcpy(&tb, &t, sizeof tb);
  /* k sits in the low bits of t: t = 1.5 2^23 + k */
  sb = (tb - 0x4B400000u + 127u) << 23;
  memcpy(s, &sb, sizeof sb);
}

void fh_elu_forward(float *y, const float *x, size_t n, float alpha) {
  /* expm1(x) = s p + (s - 1): s - 1 is exact, so the relative accuracy near 0
   * is expm1's; NaN fails x > 0 and propagates through p. */
  for (size_t i = 0; i < n; i++) {
    const float v = x[i], neg = v > 0.0f ? 0.0f : v;
    float s, p;
    exp_parts(neg, &s, &p);
    const float em1 = s * p + (s - 1.0f);
    y[i] = v > 0.0f ? v : alpha * em1;
  }
}

void fh_elu_backward(float *dx, const float *dy, const float *x, size_t n, float alpha) {
  for (size_t i = 0; i < n; i++) {
    const float v = x[i], neg = v > 0.0f ? 0.0f : v;
    float s, p;
    exp_parts(neg, &s, &p);
    const float e = s + s * p;
    dx[i] = v > 0.0f ? dy[i] : dy[i] * alpha * e;
  }
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
