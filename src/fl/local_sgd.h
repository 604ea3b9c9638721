/* Minibatch SGD of one client on its train split: the local work shared by
 * FedAvg-like algorithms. Buffers are allocated once per run and reused for
 * every client (nothing is allocated per client or per step). */
#ifndef FH_LOCAL_SGD_H
#define FH_LOCAL_SGD_H

#include <stdint.h>

#include "core/config.h"
#include "data/dataset.h"
#include "nn/model.h"
#include "nn/optim.h"

extern const fh_key_spec fh_train_keys[];

typedef struct {
  int epochs;
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
} fh_local_sgd;

void fh_local_sgd_create(fh_local_sgd *t, const fh_config *cfg, int dim, size_t nparams);
void fh_local_sgd_destroy(fh_local_sgd *t);

/* Runs train.epochs epochs over `train` from the model's current parameters.
 * Each epoch visits the samples in an order drawn from the client's stream
 * (seed, FH_RNG_SHUFFLE, client, round). The momentum buffer starts at zero for
 * every call (a fresh optimiser per round, as FedAvg implementations do).
 * *last_epoch_loss gets the sample-weighted mean loss of the last epoch.
 * A non-finite loss is FH_ERR_DIVERGED naming the local step (the caller
 * adds the round and client). */
int fh_local_sgd_run(fh_local_sgd *t, fh_model *m, const fh_split *train, uint64_t seed,
                     int client, int round, double *last_epoch_loss);

#endif
