/* Optimisers with PyTorch semantics. The optimiser's state (momentum buffer,
 * Adam moments) belongs to the client that owns it: the caller passes it in. */
#ifndef FH_OPTIM_H
#define FH_OPTIM_H

#include <stddef.h>

typedef struct {
  float lr;
  float momentum;     /* 0 = plain SGD                                  */
  float dampening;
  float weight_decay; /* L2, added to the gradient as in torch.optim.SGD */
  int nesterov;
} fh_sgd;

/* torch.optim.SGD.step() over n parameters. momentum_buf has n floats (unused
 * when momentum == 0); *steps counts calls so the first step sets buf = g. */
void fh_sgd_step(const fh_sgd *opt, float *params, const float *grads, float *momentum_buf,
                 size_t n, long long *steps);

/* Scales grads so their global L2 norm is at most max_norm
 * (torch.nn.utils.clip_grad_norm_); returns the norm before clipping. */
double fh_clip_grad_norm(float *grads, size_t n, double max_norm);

#endif
