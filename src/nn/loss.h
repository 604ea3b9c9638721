/* Softmax cross-entropy, as torch.nn.functional.cross_entropy with
 * reduction='mean': logits in, the mean over the batch out. The forward keeps
 * the softmax probabilities for the backward (and for prediction).
 *
 * Hard labels: y [B] int32 in [0, C). Soft targets: t [B, C], each row a
 * distribution (torch's probability targets); the gradient does not assume the
 * rows sum to one. */
#ifndef FH_LOSS_H
#define FH_LOSS_H

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

#endif
