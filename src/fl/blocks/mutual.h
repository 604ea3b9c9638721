/* Mutual learning between a client's own model and a shared model on the same
 * batch (FML's deep mutual learning, FedKD's adaptive mutual distillation):
 * both networks (fl/blocks/hetero.h: extractor + Linear header) see x, each learns
 * from the labels and from the other's softened predictions, and optionally
 * their features are pulled together:
 *
 *   L_own    = w_ce_own  CE(z_own, y)    + w_kd_own  KD(z_own    || z_shared)
 *            + w_hidden MSE(h_own, h_shared)
 *   L_shared = w_ce_sh   CE(z_shared, y) + w_kd_sh   KD(z_shared || z_own)
 *            + w_hidden MSE(h_shared, h_own)
 *
 * KD(s || t) is the distillation loss of nn/loss.h at temperature T with t a
 * constant (KL(softmax(t/T) || softmax(s/T)) T^2), MSE the mean over the batch
 * and features. Adaptive weighting (FedKD): the distillation and hidden
 * weights are divided by CE(z_own) + CE(z_shared) of the batch (constants in
 * the gradient), so that the models learn more from each other once their
 * own predictions are good. */
#ifndef FH_MUTUAL_H
#define FH_MUTUAL_H

#include <stdint.h>

#include "fl/blocks/hetero.h"

typedef struct {
  float T;
  float w_ce_own, w_kd_own, w_ce_sh, w_kd_sh, w_hidden;
  int adaptive;
  /* scratch, [max_batch, C] and [max_batch, d] */
  int max_batch, C, d;
  float *z_own, *z_sh, *ps, *pt, *d_own, *d_sh, *dk, *dh_own, *dh_sh;
} fh_mutual;

/* d: feature width of both models (0: no hidden loss possible). */
void fh_mutual_create(fh_mutual *m, int C, int d, int max_batch);
void fh_mutual_destroy(fh_mutual *m);

/* One batch: forward both in training mode, the losses above, backward:
 * both networks' gradients OVERWRITTEN. Returns the own model's CE (for the
 * round's loss report) in *ce_own and the shared one's in *ce_sh; returns 0,
 * or 1 when a loss is not finite. */
int fh_mutual_batch(fh_mutual *m, fh_hnet *own, fh_hnet *shared, const float *x, const int32_t *y,
                    int B, double *ce_own, double *ce_sh);

/* E epochs (hetero.epochs) of mutual learning on tr, minibatches from rng:
 * each step clips each network's gradient (hetero.clip_norm) and takes an SGD
 * step of each (hetero.*) with its own momentum buffer (mom_own [own->np],
 * mom_sh [shared->np]; NULL: none) and step count. *last_loss: the own
 * model's mean CE over the last epoch. FH_ERR_DIVERGED on a non-finite loss.
 * FLOPs are counted. */
int fh_mutual_train(fh_mutual *m, fh_hetero *h, fh_hnet *own, fh_hnet *shared, const fh_split *tr,
                    fh_rng *rng, float *mom_own, long long *steps_own, float *mom_sh,
                    long long *steps_sh, double *last_loss);

/* ---- the algorithm around it (FML, FedKD) ---------------------------------------- */

typedef struct fh_run fh_run;
typedef struct fh_client_ctx fh_client_ctx;

/* The clients' own models (hetero.models) and the shared model, run->model
 * (model.arch), split the same way; the payload is the shared model's state,
 * so the global model is evaluated and saved as in FedAvg. */
typedef struct {
  fh_hetero h;
  fh_hetero_fields f;  /* <prefix>.model, .momentum, .steps: the own model */
  fh_hnet shared;      /* scratch of the shared model                      */
  fh_mutual mu;
  int f_smom, f_ssteps; /* <prefix>.shared_momentum [np], .shared_steps [1] */
  float *smom_scratch;
  float *state;        /* [model_n] the shared model after a client's work  */
} fh_mutual_alg;

/* Builds it all and declares the client-state fields under prefix. */
int fh_mutual_alg_setup(fh_mutual_alg *a, fh_run *run, const char *prefix);
/* Client c's round: own model and the shared one from shared_state
 * [model_n] (FML: run->global; FedKD: its student), E epochs of mutual
 * learning; a->state then holds the trained shared model's state, to be sent
 * (rep->weight = n_k). */
int fh_mutual_alg_client(fh_mutual_alg *a, fh_run *run, fh_client_ctx *c, const float *shared_state,
                         double *train_loss);
void fh_mutual_alg_destroy(fh_mutual_alg *a);

#endif
