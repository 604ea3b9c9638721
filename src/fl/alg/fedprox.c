/* FedProx (Li et al. 2020): FedAvg whose clients minimise the local loss plus
 * the proximal term (mu/2)||w - theta^t||^2, i.e. add mu (w - theta^t) to
 * every minibatch gradient (through local SGD's gradient hook). The term
 * covers the trainable parameters; buffers travel and average as in FedAvg.
 * mu = 0 is FedAvg bit for bit: the term is then an exact zero.
 * Per-client state: none. With LIPS (fl/addons/lips.h) the anchor stays theta^t,
 * the dense model the server sent, whatever the client starts from. */
#include <stdlib.h>

#include "core/error.h"
#include "fl/algorithm.h"
#include "fl/blocks/sgd_client.h"
#include "fl/run.h"

static const fh_key_spec fedprox_keys[] = {
    {"fedprox.mu", FH_T_REAL, "0.01", 0, 1e6, NULL, "weight mu of the proximal term (mu/2)||w - theta^t||^2"},
    FH_KEYS_END};

typedef struct {
  fh_sgd_client client; /* FedAvg's client round (fl/blocks/sgd_client.h) */
  float mu;
  const float *anchor;  /* theta^t's parameters: the head of run->global */
} fedprox_state;

/* grads += mu (w - theta^t), params and grads [nparams] */
static void proximal_gradient(void *ctx, const float *params, float *grads, size_t n) {
  const fedprox_state *s = ctx;
  const float mu = s->mu;
  for (size_t i = 0; i < n; i++) grads[i] += mu * (params[i] - s->anchor[i]);
}

static int fedprox_setup(fh_run *run) {
  fedprox_state *s = fh_calloc(1, sizeof *s);
  fh_sgd_client_create(&s->client, run);
  s->mu = (float)fh_cfg_real(run->cfg, "fedprox.mu");
  s->client.sgd.hook = proximal_gradient;
  s->client.sgd.hook_ctx = s;
  run->alg_state = s;
  return 0;
}

static int fedprox_client_update(fh_run *run, fh_client_ctx *c, fh_accum *acc, fh_client_report *rep) {
  fedprox_state *s = run->alg_state;
  s->anchor = run->global;
  return fh_sgd_client_update(&s->client, run, c, acc, rep);
}

static void fedprox_destroy(fh_run *run) {
  fedprox_state *s = run->alg_state;
  fh_sgd_client_destroy(&s->client);
  free(s);
  run->alg_state = NULL;
}

static const fh_test_case fedprox_tests[] = {
    {"fedprox", FH_TEST_RANKS | FH_TEST_DECK, "fedprox.mu=0.1 eval.finetune_steps=3", "test_accuracy finetune/accuracy", NULL},
    {NULL, 0, NULL, NULL, NULL}};

const fh_algorithm fh_alg_fedprox = {
    .name = "fedprox",
    .summary = "FedProx: FedAvg with the proximal term (mu/2)||w - theta^t||^2 in the local loss",
    .keys = fedprox_keys,
    .setup = fedprox_setup,
    .client_update = fedprox_client_update,
    .server_step = fh_server_mean,
    .destroy = fedprox_destroy,
    .flags = FH_ALG_LOCAL_SGD | FH_ALG_SAMPLE_WEIGHTS | FH_ALG_SERVER_ANY_RANK,
    .tests = fedprox_tests,
};
