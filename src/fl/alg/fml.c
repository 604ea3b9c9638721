/* FML, Federated Mutual Learning (Shen et al. 2020, arXiv:2006.16765), in the
 * model-heterogeneous setting of pFedAFM's comparison: each client keeps a
 * private model of its own architecture (hetero.models) and trains it
 * together with a copy of a shared "meme" model (model.arch, the same for
 * all) by deep mutual learning on each batch (fl/blocks/mutual.h):
 *
 *   L_private = alpha CE(private) + (1 - alpha) KL(meme || private)
 *   L_meme    = beta  CE(meme)    + (1 - beta)  KL(private || meme)
 *
 * E epochs (hetero.epochs) of SGD of both (hetero.* settings, each with its
 * own momentum). Only the meme travels: server meme^{t+1} = sum n_k meme_k /
 * sum n_k, the payload being its state as in FedAvg (so the global meme is
 * evaluated and saved like a global model). Clients are scored with their
 * private models (personal). Client state: fml.model, fml.momentum,
 * fml.steps (private model), fml.shared_momentum, fml.shared_steps. */
#include <stdlib.h>

#include "core/error.h"
#include "core/log.h"
#include "fl/algorithm.h"
#include "fl/blocks/mutual.h"
#include "fl/run.h"

static const fh_key_spec fml_keys[] = {
    {"fml.alpha", FH_T_REAL, "0.5", 0, 1, NULL,
     "weight of the private model's own CE (1 - alpha: its KL to the meme)"},
    {"fml.beta", FH_T_REAL, "0.5", 0, 1, NULL,
     "weight of the meme's own CE (1 - beta: its KL to the private model)"},
    {"fml.temperature", FH_T_REAL, "1", 1e-3, 1e3, NULL, "softmax temperature of the mutual KL terms"},
    FH_KEYS_END};

static int fml_setup(fh_run *run) {
  fh_mutual_alg *a = fh_calloc(1, sizeof *a);
  run->alg_state = a;
  FH_TRY(fh_mutual_alg_setup(a, run, "fml"));
  const float alpha = (float)fh_cfg_real(run->cfg, "fml.alpha"), beta = (float)fh_cfg_real(run->cfg, "fml.beta");
  a->mu.T = (float)fh_cfg_real(run->cfg, "fml.temperature");
  a->mu.w_ce_own = alpha, a->mu.w_kd_own = 1.0f - alpha;
  a->mu.w_ce_sh = beta, a->mu.w_kd_sh = 1.0f - beta;
  if (run->rank == 0)
    fh_info("fml: the meme %s travels: %zu bytes each way per sampled client; private models up to %.1f MiB "
            "of client state each", a->shared.arch, run->payload_n * sizeof(float),
            fh_hetero_client_bytes(&a->h, &a->f) / 1048576.0);
  return 0;
}

static int fml_client_update(fh_run *run, fh_client_ctx *c, fh_accum *acc, fh_client_report *rep) {
  fh_mutual_alg *a = run->alg_state;
  FH_TRY(fh_mutual_alg_client(a, run, c, run->global, &rep->train_loss));
  rep->weight = (double)c->data->train.n;
  return fh_accum_add(acc, a->state, rep->weight);
}

static int fml_server_step(fh_run *run, const fh_accum *acc) {
  fh_accum_mean(acc, run->global);
  return 0;
}

static void fml_destroy(fh_run *run) {
  fh_mutual_alg_destroy(run->alg_state);
  free(run->alg_state);
  run->alg_state = NULL;
}

/* Tests: heterogeneous MLPs; the shared meme model an mlp-16 too. */
static const fh_test_case fml_tests[] = {
    {"fml", FH_TEST_RESUME_SHORT | FH_TEST_DECK, FH_HETERO_TEST_SETTINGS " model.hidden=16", "", NULL},
    {NULL, 0, NULL, NULL, NULL}};

const fh_algorithm fh_alg_fml = {
    .name = "fml",
    .summary = "FML: heterogeneous private models and a shared meme model learn from each other (only the "
               "meme travels)",
    .keys = fml_keys,
    .setup = fml_setup,
    .client_update = fml_client_update,
    .server_step = fml_server_step,
    .destroy = fml_destroy,
    .client_evaluate = fh_hetero_client_evaluate,
    .tests = fml_tests,
};
