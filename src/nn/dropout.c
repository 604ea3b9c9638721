/* Dropout: a Bernoulli(1 - p) mask scaled by 1/(1 - p), identity in evaluation. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/dropout.h"

void fh_dropout_mask(float *mask, size_t n, float p, fh_rng *r) {
  if (p <= 0.0f) {
    for (size_t i = 0; i < n; i++) mask[i] = 1.0f;
    return;
  }
  if (p >= 1.0f) {
    memset(mask, 0, n * sizeof(float));
    return;
  }
  /* Drop when a 32-bit draw falls below p 2^32. */
  const uint64_t threshold = (uint64_t)llround((double)p * 4294967296.0);
  const float keep = (float)(1.0 / (1.0 - (double)p));
  for (size_t i = 0; i < n; i++) mask[i] = (uint64_t)fh_rng_u32(r) < threshold ? 0.0f : keep;
}

void fh_dropout_apply(float *y, const float *x, const float *mask, size_t n) {
  for (size_t i = 0; i < n; i++) y[i] = x[i] * mask[i];
}

/* Scratch: mask [B, size]. */
static void dropout_forward(const fh_layer *L, const fh_layer_ctx *c, const float *x, float *y,
                            int B) {
  const size_t n = (size_t)B * L->out_size;
  const float p = L->farg[0];
  if (!c->train || p <= 0.0f) {
    if (y != x) memcpy(y, x, n * sizeof(float));
    return;
  }
  if (!c->rng) {
    fprintf(stderr,
            "fedhpc: internal error: dropout layer '%s' runs in training mode but the model "
            "has no rng (fh_model_set_rng)\n", L->name);
    abort();
  }
  fh_dropout_mask(c->scratch, n, p, c->rng);
  fh_dropout_apply(y, x, c->scratch, n);
}

static void dropout_backward(const fh_layer *L, const fh_layer_ctx *c, const float *x,
                             const float *y, const float *dy, float *dx, int B) {
  (void)x, (void)y;
  if (!dx) return;
  const size_t n = (size_t)B * L->out_size;
  if (!c->train || L->farg[0] <= 0.0f) {
    if (dx != dy) memcpy(dx, dy, n * sizeof(float));
    return;
  }
  fh_dropout_apply(dx, dy, c->scratch, n); /* the mask the forward drew */
}

static double no_flops(const fh_layer *L, int B) {
  (void)L, (void)B;
  return 0.0;
}

static void dropout_describe(const fh_layer *L, char *buf, size_t cap) {
  const double p = L->farg[0];
  if (p == floor(p))
    snprintf(buf, cap, "Dropout(p=%.1f, inplace=False)", p);
  else
    snprintf(buf, cap, "Dropout(p=%g, inplace=False)", p);
}

static const fh_layer_ops dropout_ops = {
    .kind_name = "Dropout",
    .forward = dropout_forward,
    .backward = dropout_backward,
    .init = NULL,
    .flops_forward = no_flops,
    .flops_backward = no_flops,
    .describe = dropout_describe,
};

fh_layer fh_layer_dropout(const char *name, float p, int c, int h, int w) {
  if (!(p >= 0.0f && p <= 1.0f)) {
    fprintf(stderr, "fedhpc: internal error: dropout layer '%s' has p = %g, outside [0, 1]\n",
            name, (double)p);
    abort();
  }
  fh_layer L;
  memset(&L, 0, sizeof L);
  L.kind = FH_LAYER_DROPOUT;
  L.ops = &dropout_ops;
  snprintf(L.name, sizeof L.name, "%s", name);
  L.input = -1;
  L.in_shape[0] = L.out_shape[0] = c;
  L.in_shape[1] = L.out_shape[1] = h;
  L.in_shape[2] = L.out_shape[2] = w;
  L.in_size = L.out_size = (size_t)c * h * w;
  L.scratch_per_sample = L.in_size;
  L.farg[0] = p;
  return L;
}
