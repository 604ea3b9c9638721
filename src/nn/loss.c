/* Softmax cross-entropy, knowledge distillation and mean squared error; the
 * softmaxes are numerically stable through log-sum-exp. */
#include "nn/loss.h"

#include <assert.h>
#include <math.h>
#include <stddef.h>

/* z [C] -> p [C] = softmax(z / T); returns logsumexp(z / T). Subtracting the
 * maximum keeps every exp in (0, 1]; NaN or +Inf logits give NaN, which the
 * caller sees in the loss. Each z_j / T is rounded to float before use, as torch
 * divides the logits first. */
static double softmax_row_at(float *p, const float *z, int C, float T) {
  float m = z[0] / T;
  for (int j = 1; j < C; j++)
    if (z[j] / T > m) m = z[j] / T;
  double s = 0.0;
  for (int j = 0; j < C; j++) {
    p[j] = expf(z[j] / T - m);
    s += p[j];
  }
  const float inv = (float)(1.0 / s);
  for (int j = 0; j < C; j++) p[j] *= inv;
  return (double)m + log(s);
}

/* T = 1: the division folds away. */
static double softmax_row(float *p, const float *z, int C) { return softmax_row_at(p, z, C, 1.0f); }

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

double fh_kd_loss_forward(float *ps, float *pt, const float *student, const float *teacher, int B,
                          int C, float T) {
  double sum = 0.0;
  for (int b = 0; b < B; b++) {
    const size_t row = (size_t)b * C;
    const float *s = student + row, *t = teacher + row;
    const float *q = pt + row;
    const double lse_s = softmax_row_at(ps + row, s, C, T);
    const double lse_t = softmax_row_at(pt + row, t, C, T);
    /* log q_j - log p_j from the logits, not from the rounded probabilities;
     * q_j = 0 adds nothing, as torch's xlogy. */
    for (int j = 0; j < C; j++) {
      if (q[j] <= 0.0f) continue;
      const double log_q = (double)(t[j] / T) - lse_t, log_p = (double)(s[j] / T) - lse_s;
      sum += (double)q[j] * (log_q - log_p);
    }
  }
  return B > 0 ? (double)T * T * sum / B : 0.0;
}

void fh_kd_loss_backward(float *dstudent, const float *ps, const float *pt, int B, int C, float T) {
  /* T^2 / B from the loss times 1 / T from the logits' scaling. */
  const float scale = T / (float)B;
  const size_t n = (size_t)B * C;
  for (size_t i = 0; i < n; i++) dstudent[i] = scale * (ps[i] - pt[i]);
}

double fh_mse_forward(const float *pred, const float *target, size_t n) {
  double sum = 0.0;
  for (size_t i = 0; i < n; i++) {
    const double d = (double)pred[i] - (double)target[i];
    sum += d * d;
  }
  return n > 0 ? sum / (double)n : 0.0;
}

void fh_mse_backward(float *dpred, const float *pred, const float *target, size_t n) {
  const float scale = (float)(2.0 / (double)n);
  for (size_t i = 0; i < n; i++) dpred[i] = (pred[i] - target[i]) * scale;
}
