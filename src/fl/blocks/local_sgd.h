/* Minibatch SGD of one client on its train split: the local work shared by
 * FedAvg-like algorithms, with a hook that adds a term to every minibatch
 * gradient (FedProx's proximal term, SCAFFOLD's control-variate correction).
 * Also the few-step adaptation of evaluation (fine-tuning, held-out clients,
 * Per-FedAvg's personalisation) and the mean gradient over a set of samples.
 * Buffers are allocated once per run and reused for every client (nothing is
 * allocated per client or per step). */
#ifndef FH_LOCAL_SGD_H
#define FH_LOCAL_SGD_H

#include <stdint.h>

#include "core/config.h"
#include "data/dataset.h"
#include "nn/model.h"
#include "nn/optim.h"

extern const fh_key_spec fh_train_keys[];

/* Called after each minibatch gradient and before the optimiser step:
 * grads [n] += the algorithm's term at params [n]. */
typedef void (*fh_grad_hook)(void *ctx, const float *params, float *grads, size_t n);

typedef struct {
  int epochs;
  long long iterations; /* train.iterations: > 0 replaces epochs by this many steps */
  int batch_size;
  fh_sgd opt;
  /* scratch */
  int dim;
  float *xb;       /* [batch_size, dim] */
  int32_t *yb;     /* [batch_size]      */
  int *order;      /* [max_n]           */
  int max_n;
  float *momentum; /* [nparams]         */
  size_t nparams;
  float *gsum;     /* [nparams], lazily: gradients over several chunks */
  /* set by the caller, NULL after create */
  fh_grad_hook hook;
  void *hook_ctx;
  /* set by fh_local_sgd_run: optimiser steps it took (SCAFFOLD's K) */
  long long steps;
  /* set by the caller, NULL after create: when set, fh_local_sgd_run(_rng)
   * copies the minibatch loss gradient of its last step here [nparams],
   * before the hook's term and the optimiser's weight decay (LIPS scores) */
  float *last_grad;
} fh_local_sgd;

void fh_local_sgd_create(fh_local_sgd *t, const fh_config *cfg, int dim, size_t nparams);
void fh_local_sgd_destroy(fh_local_sgd *t);

/* Runs train.epochs epochs over `train` from the model's current parameters.
 * Each epoch visits the samples in an order drawn from the client's stream
 * (seed, FH_RNG_SHUFFLE, client, round). With train.iterations > 0 it runs
 * that many minibatch steps instead, through successive permutations from the
 * same stream. The momentum buffer starts at zero for every call (a fresh
 * optimiser per round, as FedAvg implementations do). *last_epoch_loss gets
 * the sample-weighted mean loss of the last epoch (of all the round's steps
 * with train.iterations).
 * Batches of a split with an augmentation (train->augment) are augmented
 * after gathering, from the stream (seed, FH_RNG_AUGMENT, client, round).
 * A non-finite loss is FH_ERR_DIVERGED naming the local step (the caller
 * adds the round and client). */
int fh_local_sgd_run(fh_local_sgd *t, fh_model *m, const fh_split *train, uint64_t seed,
                     int client, int round, double *last_epoch_loss);
/* The same with the minibatch order drawn from the caller's stream rng. */
int fh_local_sgd_run_rng(fh_local_sgd *t, fh_model *m, const fh_split *train, fh_rng *rng,
                         double *last_epoch_loss);

/* Mean-loss gradient of the model over rows idx [count] of sp (all rows in
 * order when idx is NULL), in chunks of at most batch_size rows: the model's
 * grads buffer is left holding it (count >= 1). Returns the mean loss (NaN or
 * Inf propagate: the caller checks). BatchNorm statistics move as in training. */
float fh_local_sgd_gradient(fh_local_sgd *t, fh_model *m, const fh_split *sp, const int *idx,
                            int count);

/* Adaptation: `steps` plain SGD steps (learning rate lr, no momentum, no hook)
 * on minibatches of `batch` samples of train (0 or >= n: the whole split),
 * taken in turn from permutations drawn from rng, a new one when the last is
 * used up. Nothing happens for an empty split. FH_ERR_DIVERGED on a
 * non-finite loss. */
/* FH_ERR_CONFIG (one line) when data.augment_* is on: for the algorithms
 * whose client training does not go through fh_local_sgd_run or the
 * heterogeneous gather and so cannot augment (who: the algorithm, why: what
 * it trains with). 0 otherwise. */
int fh_local_sgd_refuse_augment(const fh_dataset *ds, const char *who, const char *why);

int fh_local_sgd_adapt(fh_local_sgd *t, fh_model *m, const fh_split *train, int steps, int batch,
                       float lr, fh_rng *rng);

#endif
