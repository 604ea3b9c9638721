/* Softmax cross-entropy, numerically stable through log-sum-exp. */
#include "nn/loss.h"

#include <assert.h>
#include <math.h>
#include <stddef.h>

/* z [C] -> p [C] = softmax(z); returns logsumexp(z). Subtracting the maximum
 * keeps every exp in (0, 1]; NaN or +Inf logits give NaN, which the caller sees
 * in the loss. */
static double softmax_row(float *p, const float *z, int C) {
  float m = z[0];
  for (int j = 1; j < C; j++)
    if (z[j] > m) m = z[j];
  double s = 0.0;
  for (int j = 0; j < C; j++) {
    p[j] = expf(z[j] - m);
    s += p[j];
  }
  const float inv = (float)(1.0 / s);
  for (int j = 0; j < C; j++) p[j] *= inv;
  return (double)m + log(s);
}

double fh_softmax_ce_forward(float *probs, const float *logits, const int32_t *y, int B, int C) {
  double sum = 0.0;
  for (int b = 0; b < B; b++) {
    const float *z = logits + (size_t)b * C;
    assert(y[b] >= 0 && y[b] < C);
    sum += softmax_row(probs + (size_t)b * C, z, C) - (double)z[y[b]];
  }
  return B > 0 ? sum / B : 0.0;
}

void fh_softmax_ce_backward(float *dlogits, const float *probs, const int32_t *y, int B, int C) {
  const float inv_b = 1.0f / (float)B;
  for (int b = 0; b < B; b++) {
    const float *p = probs + (size_t)b * C;
    float *d = dlogits + (size_t)b * C;
    for (int j = 0; j < C; j++) d[j] = p[j] * inv_b;
    d[y[b]] -= inv_b;
  }
}

double fh_softmax_ce_soft_forward(float *probs, const float *logits, const float *t, int B, int C) {
  double sum = 0.0;
  for (int b = 0; b < B; b++) {
    const float *z = logits + (size_t)b * C, *tb = t + (size_t)b * C;
    const double lse = softmax_row(probs + (size_t)b * C, z, C);
    for (int j = 0; j < C; j++) sum += (double)tb[j] * (lse - (double)z[j]);
  }
  return B > 0 ? sum / B : 0.0;
}

void fh_softmax_ce_soft_backward(float *dlogits, const float *probs, const float *t, int B, int C) {
  const float inv_b = 1.0f / (float)B;
  for (int b = 0; b < B; b++) {
    const float *p = probs + (size_t)b * C, *tb = t + (size_t)b * C;
    float *d = dlogits + (size_t)b * C;
    float mass = 0.0f;
    for (int j = 0; j < C; j++) mass += tb[j];
    for (int j = 0; j < C; j++) d[j] = (p[j] * mass - tb[j]) * inv_b;
  }
}
