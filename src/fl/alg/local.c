/* Local (standalone) training: no communication. Each client keeps its own
 * model in the client store, starting from theta^0, and trains it E epochs of
 * local SGD whenever it is sampled; nothing is broadcast, nothing is reduced
 * (FH_ALG_NO_GLOBAL: the round loop skips both), and each client is evaluated
 * with its own model (the personal group of metrics.h5). The lower bound every
 * federated method should beat on clients with enough data. */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "fl/algorithm.h"
#include "fl/client_state.h"
#include "fl/blocks/local_sgd.h"
#include "fl/payload.h"
#include "fl/run.h"

typedef struct {
  fh_local_sgd sgd;
  int field; /* the client's model state, [model_n] floats */
} local_state;

static int local_setup(fh_run *run) {
  local_state *s = fh_calloc(1, sizeof *s);
  run->alg_state = s;
  fh_local_sgd_create(&s->sgd, run->cfg, run->data->dim, fh_model_nparams(run->model));
  return fh_client_store_field(run->state, "local.model", FH_STATE_F32, run->model_n, &s->field);
}

/* The client's own model into m; a client met for the first time starts from
 * theta^0 (run->global, which never changes). */
static float *acquire_model(fh_run *run, int client, fh_model *m, int *dirty) {
  local_state *s = run->alg_state;
  int fresh;
  float *own = fh_client_store_acquire(run->state, s->field, client, &fresh);
  if (fresh) memcpy(own, run->global, run->model_n * sizeof(float));
  *dirty = fresh;
  fh_model_load_state(m, own);
  return own;
}

static int local_client_update(fh_run *run, fh_client_ctx *c, fh_accum *acc, fh_client_report *rep) {
  (void)acc; /* nothing is sent */
  local_state *s = run->alg_state;
  int dirty;
  float *own = acquire_model(run, c->id, c->model, &dirty);
  int rc = fh_local_sgd_run(&s->sgd, c->model, &c->data->train, run->seed, c->id, c->round, &rep->train_loss);
  rep->weight = (double)c->data->train.n;
  if (rc == 0) {
    fh_model_store_state(c->model, own);
    dirty = 1;
  }
  int rc_r = fh_client_store_release(run->state, s->field, c->id, dirty);
  FH_TRY(rc);
  return rc_r;
}

static int local_client_model(fh_run *run, fh_client_ctx *c) {
  local_state *s = run->alg_state;
  int dirty;
  acquire_model(run, c->id, c->model, &dirty);
  return fh_client_store_release(run->state, s->field, c->id, dirty);
}

static void local_destroy(fh_run *run) {
  local_state *s = run->alg_state;
  fh_local_sgd_destroy(&s->sgd);
  free(s);
  run->alg_state = NULL;
}

static const fh_test_case local_tests[] = {
    {"local", FH_TEST_RANKS | FH_TEST_DECK, "", "personal/accuracy", NULL},
    {NULL, 0, NULL, NULL, NULL}};

const fh_algorithm fh_alg_local = {
    .name = "local",
    .summary = "Local: each client trains its own model, no communication",
    .keys = NULL,
    .setup = local_setup,
    .client_update = local_client_update,
    .server_step = NULL,
    .destroy = local_destroy,
    .client_model = local_client_model,
    .flags = FH_ALG_NO_GLOBAL,
    .tests = local_tests,
};
