/* FedProx (Li et al. 2020): FedAvg whose clients minimise the local loss plus
 * the proximal term (mu/2)||w - theta^t||^2, i.e. add mu (w - theta^t) to
 * every minibatch gradient (through local SGD's gradient hook). The term
 * covers the trainable parameters; buffers travel and average as in FedAvg.
 * mu = 0 is FedAvg bit for bit: the term is then an exact zero.
 * Per-client state: none. With LIPS (fl/addons/lips.h) the anchor stays theta^t,
 * the dense model the server sent, whatever the client starts from. */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "fl/algorithm.h"
#include "fl/addon.h"
#include "fl/blocks/local_sgd.h"
#include "fl/payload.h"
#include "fl/run.h"

static const fh_key_spec fedprox_keys[] = {
    {"fedprox.mu", FH_T_REAL, "0.01", 0, 1e6, NULL, "weight mu of the proximal term (mu/2)||w - theta^t||^2"},
    FH_KEYS_END};

typedef struct {
  fh_local_sgd sgd;
  float mu;
  const float *anchor; /* theta^t's parameters: the head of run->global */
  float *scratch;      /* [model_n] the client's model state, when it has buffers */
} fedprox_state;

/* grads += mu (w - theta^t), params and grads [nparams] */
static void proximal_gradient(void *ctx, const float *params, float *grads, size_t n) {
  const fedprox_state *s = ctx;
  const float mu = s->mu;
  for (size_t i = 0; i < n; i++) grads[i] += mu * (params[i] - s->anchor[i]);
}

static int fedprox_setup(fh_run *run) {
  fedprox_state *s = fh_calloc(1, sizeof *s);
  fh_local_sgd_create(&s->sgd, run->cfg, run->data->dim, fh_model_nparams(run->model));
  s->mu = (float)fh_cfg_real(run->cfg, "fedprox.mu");
  s->sgd.hook = proximal_gradient;
  s->sgd.hook_ctx = s;
  s->scratch = fh_malloc(run->model_n * sizeof(float));
  run->alg_state = s;
  return 0;
}

static int fedprox_client_update(fh_run *run, fh_client_ctx *c, fh_accum *acc, fh_client_report *rep) {
  fedprox_state *s = run->alg_state;
  s->anchor = run->global;
  fh_model_load_state(c->model, run->global);
  FH_TRY(fh_addons_client_begin(run, c, &s->sgd));
  int rc = fh_local_sgd_run(&s->sgd, c->model, &c->data->train, run->seed, c->id, c->round, &rep->train_loss);
  FH_TRY(fh_addons_client_end(run, c, &s->sgd, rc));
  rep->weight = fh_split_weight(&c->data->train);
  return fh_accum_add_model(acc, c->model, s->scratch, rep->weight);
}

static int fedprox_server_step(fh_run *run, const fh_accum *acc) {
  fh_accum_mean(acc, run->global);
  return 0;
}

static void fedprox_destroy(fh_run *run) {
  fedprox_state *s = run->alg_state;
  fh_local_sgd_destroy(&s->sgd);
  free(s->scratch);
  free(s);
  run->alg_state = NULL;
}

const fh_algorithm fh_alg_fedprox = {
    .name = "fedprox",
    .summary = "FedProx: FedAvg with the proximal term (mu/2)||w - theta^t||^2 in the local loss",
    .keys = fedprox_keys,
    .setup = fedprox_setup,
    .client_update = fedprox_client_update,
    .server_step = fedprox_server_step,
    .destroy = fedprox_destroy,
    .flags = FH_ALG_LOCAL_SGD | FH_ALG_SAMPLE_WEIGHTS,
};
