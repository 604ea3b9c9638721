/* The one-step MAML building block: Per-FedAvg's local step (Fallah,
 * Mokhtari, Ozdaglar 2020; the algorithm is src/fl/alg/perfedavg.c) and the
 * meta-gradient AugFL's clients use (src/fl/alg/augfl.c). At the client's w, with
 * three minibatches D, D', D'' of its train split:
 *
 *   tmp = w - alpha grad f(w; D)
 *   v   = grad f(tmp; D')
 *   FO: w+ = w - beta v
 *   HF: w+ = w - beta (v - alpha Hv),  Hv = [grad f(w + delta v; D'')
 *                                          - grad f(w - delta v; D'')] / (2 delta)
 *
 * the Hessian-vector product by central finite differences of the gradient.
 * The two probes leave BatchNorm running statistics as they were. */
#ifndef FH_MAML_H
#define FH_MAML_H

#include <stddef.h>

#include "data/dataset.h"
#include "fl/blocks/local_sgd.h"
#include "nn/model.h"

typedef struct {
  int hf;                  /* Hessian-free variant, else first order */
  float alpha, beta, delta;
  fh_local_sgd *sgd;       /* gradients over index sets (scratch)    */
  /* scratch, [nparams] each, [nbuffers] for saved */
  float *w, *v, *hplus, *saved;
  size_t nparams, nbuffers;
} fh_perfedavg_step;

void fh_perfedavg_step_create(fh_perfedavg_step *s, int hf, float alpha, float beta, float delta,
                              fh_local_sgd *sgd, const fh_model *m);
void fh_perfedavg_step_destroy(fh_perfedavg_step *s);

/* One local step: the model's parameters go from w to w+. d0, d1, d2: row
 * indices of sp (D, D', D''; d2 unused by FO), b rows each. *query_loss gets
 * f(tmp; D'). FH_ERR_DIVERGED on a non-finite loss. */
int fh_perfedavg_local_step(fh_perfedavg_step *s, fh_model *m, const fh_split *sp, const int *d0,
                            const int *d1, const int *d2, int b, double *query_loss);

/* A set of samples: rows idx [n] of sp, or its first n rows when idx is NULL. */
typedef struct {
  const fh_split *sp;
  const int *idx;
  int n; /* >= 1 */
} fh_row_set;

/* The one-step MAML meta-gradient at the model's parameters w, which it
 * leaves as they were (BatchNorm statistics move with the first two passes,
 * as in the local step; the probes keep them):
 *
 *   phi = w - alpha grad f(w; D);  v = grad f(phi; D')
 *   FO: ghat = v
 *   HF: ghat = v - alpha Hv,  Hv = [grad f(w + delta v; D'') - grad f(w - delta v; D'')] / (2 delta)
 *
 * with the step's alpha and the delta given. ghat [nparams] may be s->v.
 * Per-FedAvg's local step is w+ = w - beta ghat; AugFL's client uses ghat
 * with D = D'' its train split and D' its test split. *query_loss gets
 * f(phi; D'). FH_ERR_DIVERGED on a non-finite loss. */
int fh_maml_meta_gradient(fh_perfedavg_step *s, fh_model *m, fh_row_set d, fh_row_set dq, fh_row_set dh,
                          float delta, float *ghat, double *query_loss);

#endif
