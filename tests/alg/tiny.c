/* A tiny algorithm registered only in the test build's binary fedhpc_tiny
 * (tests/CMakeLists.txt): FedAvg with server momentum. Each sampled client
 * runs local SGD from theta^t and sends its model weighted by n_k; the server
 * keeps v (a server vector, so a checkpoint must carry it) and takes
 *   v <- 0.5 v + (theta^t - mean_k theta_k),   theta^{t+1} = theta^t - v.
 * It has no test table: the registry gives it the default case, and
 * tests/mpi/test_registry_tests.sh checks that the rank-invariance, resume and
 * deck tests pick it up without naming it. */
#include <stdlib.h>

#include "core/error.h"
#include "fl/algorithm.h"
#include "fl/blocks/local_sgd.h"
#include "fl/payload.h"
#include "fl/run.h"

typedef struct {
  fh_local_sgd sgd;
  float *scratch; /* [model_n] a client's model state; the server's mean */
  float *v;       /* [model_n] server vector "tiny.v" */
} tiny_state;

static int tiny_setup(fh_run *run) {
  tiny_state *s = fh_calloc(1, sizeof *s);
  run->alg_state = s;
  fh_local_sgd_create(&s->sgd, run->cfg, run->data->dim, fh_model_nparams(run->model));
  s->scratch = fh_malloc(run->model_n * sizeof(float));
  s->v = fh_run_server_state(run, "tiny.v", run->model_n);
  return 0;
}

static int tiny_client_update(fh_run *run, fh_client_ctx *c, fh_accum *acc, fh_client_report *rep) {
  tiny_state *s = run->alg_state;
  fh_model_load_state(c->model, run->global);
  FH_TRY(fh_local_sgd_run(&s->sgd, c->model, &c->data->train, run->seed, c->id, c->round, &rep->train_loss));
  rep->weight = fh_split_weight(&c->data->train);
  return fh_accum_add_model(acc, c->model, s->scratch, rep->weight);
}

static int tiny_server_step(fh_run *run, const fh_accum *acc) {
  tiny_state *s = run->alg_state;
  fh_accum_mean(acc, s->scratch);
  for (size_t i = 0; i < run->model_n; i++) {
    s->v[i] = 0.5f * s->v[i] + (run->global[i] - s->scratch[i]);
    run->global[i] -= s->v[i];
  }
  return 0;
}

static void tiny_destroy(fh_run *run) {
  tiny_state *s = run->alg_state;
  fh_local_sgd_destroy(&s->sgd);
  free(s->scratch);
  free(s);
  run->alg_state = NULL;
}

static const fh_algorithm fh_alg_tiny = {
    .name = "tiny",
    .summary = "test build only: FedAvg with server momentum 0.5",
    .setup = tiny_setup,
    .client_update = tiny_client_update,
    .server_step = tiny_server_step,
    .destroy = tiny_destroy,
};

/* The registry's hook for an executable's own algorithms (src/fl/registry.c). */
const fh_algorithm *const fh_extra_algorithms[] = {&fh_alg_tiny, NULL};
