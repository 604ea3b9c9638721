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

/* ---- Adam ------------------------------------------------------------------- */

/* torch.optim.Adam's hyperparameters (amsgrad and maximize off). Doubles, as
 * torch's Python floats: the bias corrections 1 - beta^step are taken in double
 * and only the per-element factors are rounded to float, as torch does. */
typedef struct {
  double lr;
  double beta1, beta2;
  double eps;
  double weight_decay; /* L2, added to the gradient (Adam, not AdamW) */
} fh_adam;

/* torch.optim.Adam.step() over n parameters. exp_avg and exp_avg_sq have n
 * floats each and start at zero (torch's zeros_like); *steps counts calls and
 * sets the bias correction. */
void fh_adam_step(const fh_adam *opt, float *params, const float *grads, float *exp_avg,
                  float *exp_avg_sq, size_t n, long long *steps);

/* ---- Frozen parameters -------------------------------------------------------- */

/* params[offset, offset + count) of a flat buffer; in a model's layout a view's
 * offset and numel. Freezing the feature extractor of a model whose head comes
 * last is the single range {0, head_view->offset}. */
typedef struct {
  size_t offset, count;
} fh_param_range;

/* The steps above with the nfrozen ranges left out, as torch leaves out
 * parameters with requires_grad = False: their params, grads and optimiser
 * state are neither read nor written. Ranges are sorted by offset and lie
 * within [0, n); they may touch. The work is proportional to the parameters
 * trained, so freezing a large extractor makes the step cheap.
 *
 * *steps advances once per call for the whole buffer, while torch counts per
 * parameter tensor: keep the frozen set fixed over the life of the state. To
 * train groups in turns, give each group its own state and step count and call
 * the unmasked step on its slice (params + offset, ..., count, &group_steps). */
void fh_sgd_step_frozen(const fh_sgd *opt, float *params, const float *grads, float *momentum_buf,
                        size_t n, long long *steps, const fh_param_range *frozen, int nfrozen);
void fh_adam_step_frozen(const fh_adam *opt, float *params, const float *grads, float *exp_avg,
                         float *exp_avg_sq, size_t n, long long *steps,
                         const fh_param_range *frozen, int nfrozen);

#endif
