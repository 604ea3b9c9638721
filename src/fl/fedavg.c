/* FedAvg (McMahan et al. 2017): each sampled client runs E epochs of minibatch
 * SGD from theta^t; theta^{t+1} = sum_k w_k theta_k with w_k = n_k / sum n_j.
 * Payload: the model's parameters. Per-client state: none. */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "fl/algorithm.h"
#include "fl/local_sgd.h"
#include "fl/run.h"

static int fedavg_setup(fh_run *run) {
  fh_local_sgd *t = fh_malloc(sizeof *t);
  fh_local_sgd_create(t, run->cfg, run->data->dim, fh_model_nparams(run->model));
  run->alg_state = t;
  return 0;
}

static int fedavg_client_update(fh_run *run, fh_client_ctx *c, fh_accum *acc, fh_client_report *rep) {
  fh_local_sgd *t = run->alg_state;
  float *params = fh_model_params(c->model);
  memcpy(params, run->global, run->payload_n * sizeof(float));
  FH_TRY(fh_local_sgd_run(t, c->model, &c->data->train, run->seed, c->id, c->round, &rep->train_loss));
  rep->weight = (double)c->data->train.n;
  return fh_accum_add(acc, params, rep->weight);
}

static int fedavg_server_step(fh_run *run, const fh_accum *acc) {
  fh_accum_mean(acc, run->global);
  return 0;
}

static void fedavg_destroy(fh_run *run) {
  fh_local_sgd_destroy(run->alg_state);
  free(run->alg_state);
  run->alg_state = NULL;
}

const fh_algorithm fh_alg_fedavg = {
    .name = "fedavg",
    .summary = "FedAvg: weighted average of E epochs of local SGD",
    .keys = NULL,
    .setup = fedavg_setup,
    .client_update = fedavg_client_update,
    .server_step = fedavg_server_step,
    .destroy = fedavg_destroy,
};
