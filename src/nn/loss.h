/* Softmax cross-entropy, as torch.nn.functional.cross_entropy with
 * reduction='mean': logits in, the mean over the batch out. The forward keeps
 * the softmax probabilities for the backward (and for prediction).
 *
 * Hard labels: y [B] int32 in [0, C). Soft targets: t [B, C], each row a
 * distribution (torch's probability targets); the gradient does not assume the
 * rows sum to one.
 *
 * Below them: the distillation loss and the mean squared error. */
#ifndef FH_LOSS_H
#define FH_LOSS_H

#include <stddef.h>
#include <stdint.h>

/* logits [B, C], y [B] -> probs [B, C] = softmax(logits); returns
 * mean_b (logsumexp(logits_b) - logits_b[y_b]), computed as max + log(sum exp(z - max)). */
double fh_softmax_ce_forward(float *probs, const float *logits, const int32_t *y, int B, int C);
/* probs [B, C] from the forward, y [B] -> dlogits [B, C] = (probs - onehot(y)) / B. */
void fh_softmax_ce_backward(float *dlogits, const float *probs, const int32_t *y, int B, int C);

/* logits [B, C], t [B, C] -> probs [B, C]; returns
 * mean_b sum_j t_bj (logsumexp(logits_b) - logits_bj). */
double fh_softmax_ce_soft_forward(float *probs, const float *logits, const float *t, int B, int C);
/* dlogits [B, C] = (probs * sum_j t_bj - t) / B. */
void fh_softmax_ce_soft_backward(float *dlogits, const float *probs, const float *t, int B, int C);

/* ---- Knowledge distillation ------------------------------------------------- */

/* The distillation loss of Hinton et al. at temperature T, as it is written in
 * PyTorch: F.kl_div(F.log_softmax(s / T), F.softmax(t / T), reduction='batchmean')
 * * T * T. The T^2 keeps the gradient's scale independent of T.
 *
 * student, teacher [B, C] -> ps, pt [B, C] = softmax(student / T), softmax(teacher / T);
 * returns T^2 / B * sum_b sum_j pt_bj (log pt_bj - log ps_bj), with 0 log 0 = 0. */
double fh_kd_loss_forward(float *ps, float *pt, const float *student, const float *teacher, int B,
                          int C, float T);
/* ps, pt [B, C] from the forward -> dstudent [B, C] = T / B * (ps - pt). The
 * teacher is a constant: no gradient flows to it. */
void fh_kd_loss_backward(float *dstudent, const float *ps, const float *pt, int B, int C, float T);

/* ---- Mean squared error ------------------------------------------------------- */

/* torch.nn.MSELoss() (reduction='mean') over n elements: pred, target [n] ->
 * mean (pred - target)^2. */
double fh_mse_forward(const float *pred, const float *target, size_t n);
/* dpred [n] = 2 / n * (pred - target). */
void fh_mse_backward(float *dpred, const float *pred, const float *target, size_t n);

#endif
