/* pFedAFM's mixed network on one batch (src/fl/alg/pfedafm.c uses it for
 * training and evaluation; the tests compare it with PyTorch):
 *
 *   R_l = F_k^ex(x), R_g = G(x)                       [B, d] each
 *   R   = alpha * R_l + (1 - alpha) * R_g             alpha [d], over the batch
 *   y   = F_k^hd(R)                                   [B, C]
 *
 * computed as the authors' code does it, (1 - alpha) * R_g first. The
 * backward gives dR = dy W, then dR_l = alpha * dR, dR_g = (1 - alpha) * dR
 * and dalpha_j = sum_b dR_bj (R_l,bj - R_g,bj). */
#ifndef FH_PFEDAFM_H
#define FH_PFEDAFM_H

#include <stdint.h>

#include "fl/blocks/hetero.h"

typedef struct {
  int d, max_batch;
  float *R;      /* [max_batch, d] mixed features   */
  float *dR;     /* [max_batch, d] their gradient   */
  float *dRl;    /* [max_batch, d] alpha * dR       */
  float *dRg;    /* [max_batch, d] (1 - alpha) * dR */
  float *dalpha; /* [d]                             */
  const float *Rl, *Rg; /* the last forward's features (the extractors' buffers) */
} fh_afm_mix;

void fh_afm_mix_create(fh_afm_mix *m, int d, int max_batch);
void fh_afm_mix_destroy(fh_afm_mix *m);

/* Logits [B, C] (local->logits) of client network `local` on the mixture of
 * its features and those of shared->ex (G). local runs in training mode when
 * train is 1; G in training mode when g_train is 1 (only when its gradient
 * will be wanted: otherwise it is frozen and nothing of it changes). */
const float *fh_afm_forward(fh_afm_mix *m, fh_hnet *local, fh_hnet *shared, const float *alpha,
                            const float *x, int B, int train, int g_train);
/* Forward (train = 1) + mean cross-entropy against y + backward: local's
 * gradients (extractor and header) and m->dalpha OVERWRITTEN; G's extractor
 * gradients too when g_grad is 1 (its forward then runs in training mode),
 * left alone otherwise. Returns the mean loss. */
float fh_afm_loss_grad(fh_afm_mix *m, fh_hnet *local, fh_hnet *shared, const float *alpha,
                       const float *x, const int32_t *y, int B, int g_grad);

/* Clamps x [n] into [0, 1]; NaN stays (the loss check reports it). */
void fh_afm_clamp01(float *x, int n);

/* ---- the two local steps of a client's round ------------------------------------ */

/* What the steps work with (pfedafm.c runs them in turn for each client). */
typedef struct {
  fh_hetero *h;      /* minibatch scratch and the hetero.* settings      */
  fh_hnet *g;        /* the shared architecture; G is its extractor g->ex */
  fh_afm_mix *mix;
  fh_sgd alpha_opt;  /* alpha's SGD (pfedafm.alpha_*)                    */
} fh_afm_ctx;

/* Step counts of a client's optimisers, index of steps[]. */
enum { FH_AFM_STEPS_LOCAL, FH_AFM_STEPS_ALPHA, FH_AFM_STEPS_G, FH_AFM_NSTEPS };

/* Step 1: E epochs (hetero.epochs) of net (F_k: extractor and header) and
 * alpha [d] on the mixture, minibatches from rng; G is frozen: its
 * parameters and buffers are not written. Each step: F_k's gradient clipped
 * (hetero.clip_norm), alpha clamped to [0, 1], SGD of F_k (hetero.*, momentum
 * buffer mom_f [np]) and of alpha (mom_a [d]), alpha clamped again. NULL
 * buffers: no momentum. *last_loss: the mean loss of the last epoch. */
int fh_afm_step1(fh_afm_ctx *x, fh_hnet *net, const fh_split *tr, fh_rng *rng, float *alpha,
                 float *mom_f, float *mom_a, long long steps[FH_AFM_NSTEPS], double *last_loss);
/* Step 2: E epochs of G alone through net's header on R = G(x) (alpha = 0),
 * gradient clipped likewise, SGD with the hetero.* settings and momentum
 * buffer mom_g [|G|]; net's parameters are not written. */
int fh_afm_step2(fh_afm_ctx *x, fh_hnet *net, const fh_split *tr, fh_rng *rng, float *mom_g,
                 long long steps[FH_AFM_NSTEPS]);
/* The mixed model's right predictions and summed cross-entropy on sp, in
 * evaluation mode (G as loaded in x->g). */
void fh_afm_evaluate(fh_afm_ctx *x, fh_hnet *net, const float *alpha, const fh_split *sp,
                     double *correct, double *loss_sum);

#endif
