/* FedAvg (McMahan et al. 2017): each sampled client runs E epochs of minibatch
 * SGD from theta^t; theta^{t+1} = sum_k w_k theta_k with w_k = n_k / sum n_j.
 * Payload: the model's parameters, then its buffers (BatchNorm running
 * statistics, averaged the same way). Per-client state: none. */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "fl/algorithm.h"
#include "fl/addon.h"
#include "fl/blocks/local_sgd.h"
#include "fl/payload.h"
#include "fl/run.h"

typedef struct {
  fh_local_sgd sgd;
  float *scratch; /* [model_n] the client's model state, when it has buffers */
} fedavg_state;

static int fedavg_setup(fh_run *run) {
  fedavg_state *s = fh_calloc(1, sizeof *s);
  fh_local_sgd_create(&s->sgd, run->cfg, run->data->dim, fh_model_nparams(run->model));
  s->scratch = fh_malloc(run->model_n * sizeof(float));
  run->alg_state = s;
  return 0;
}

static int fedavg_client_update(fh_run *run, fh_client_ctx *c, fh_accum *acc, fh_client_report *rep) {
  fedavg_state *s = run->alg_state;
  fh_model_load_state(c->model, run->global);
  FH_TRY(fh_addons_client_begin(run, c, &s->sgd));
  int rc = fh_local_sgd_run(&s->sgd, c->model, &c->data->train, run->seed, c->id, c->round, &rep->train_loss);
  FH_TRY(fh_addons_client_end(run, c, &s->sgd, rc));
  rep->weight = fh_split_weight(&c->data->train);
  return fh_accum_add_model(acc, c->model, s->scratch, rep->weight);
}

static int fedavg_server_step(fh_run *run, const fh_accum *acc) {
  fh_accum_mean(acc, run->global);
  return 0;
}

static void fedavg_destroy(fh_run *run) {
  fedavg_state *s = run->alg_state;
  fh_local_sgd_destroy(&s->sgd);
  free(s->scratch);
  free(s);
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
    .flags = FH_ALG_LOCAL_SGD | FH_ALG_SAMPLE_WEIGHTS,
};
