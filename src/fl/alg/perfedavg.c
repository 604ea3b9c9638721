/* Per-FedAvg (Fallah, Mokhtari, Ozdaglar 2020, arXiv:2002.07948): FedAvg of a
 * MAML objective, so that the global model is a good start for one local
 * gradient step. Each sampled client takes tau local steps of
 * src/fl/blocks/maml.h (first-order FO or Hessian-free HF) from theta^t, its
 * minibatches D, D', D'' taken in turn from permutations of its train split
 * drawn from its shuffle stream; theta^{t+1} = sum_k w_k theta_k (n_k weights,
 * buffers averaged too). Evaluation is personalised: each client copies the
 * global model and takes perfedavg.eval_steps SGD steps of rate alpha on
 * minibatches of its train split, then tests. Plain SGD: train.momentum and
 * train.weight_decay do not apply. Per-client state: none. */
#include "fl/blocks/maml.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/log.h"
#include "core/rng.h"
#include "fl/algorithm.h"
#include "fl/payload.h"
#include "fl/run.h"

static const fh_key_spec perfedavg_keys[] = {
    {"perfedavg.variant", FH_T_ENUM, "hf", 0, 0, "fo|hf",
     "fo: first order; hf: Hessian-free (Hessian-vector product by finite differences)"},
    {"perfedavg.alpha", FH_T_REAL, "0.01", 0, 1e6, NULL,
     "inner (adaptation) step size alpha, also of the personalisation step"},
    {"perfedavg.beta", FH_T_REAL, "0.03", 0, 1e6, NULL, "outer (meta) step size beta"},
    {"perfedavg.delta", FH_T_REAL, "0.001", 1e-12, 1e6, NULL,
     "hf: finite-difference step delta of the Hessian-vector product"},
    {"perfedavg.steps", FH_T_INT, "0", 0, 1e8, NULL,
     "local steps tau per round; 0 = train.iterations, or else train.epochs passes over the client's train split "
     "(each step uses 2 minibatches, 3 for hf)"},
    {"perfedavg.eval_steps", FH_T_INT, "1", 0, 1e6, NULL,
     "SGD steps (rate alpha, train.batch_size) a client adapts the global model with before testing"},
    FH_KEYS_END};

/* ---- the algorithm ------------------------------------------------------------- */

typedef struct {
  fh_local_sgd sgd;
  fh_perfedavg_step step;
  int steps, eval_steps, batch;
  int *order, max_n; /* [max_n] permutation of the client's train split */
  int *idx;          /* [3, batch] this step's D, D', D''               */
  float *scratch;    /* [model_n]                                       */
} perfedavg_state;

static int perfedavg_setup(fh_run *run) {
  FH_TRY(fh_local_sgd_refuse_augment(run->data, "perfedavg", "its meta-gradient over fixed row sets"));
  perfedavg_state *s = fh_calloc(1, sizeof *s);
  const fh_config *cfg = run->cfg;
  fh_local_sgd_create(&s->sgd, cfg, run->data->dim, fh_model_nparams(run->model));
  int hf = fh_cfg_enum(cfg, "perfedavg.variant") == 1; /* fo|hf */
  fh_perfedavg_step_create(&s->step, hf, (float)fh_cfg_real(cfg, "perfedavg.alpha"),
                           (float)fh_cfg_real(cfg, "perfedavg.beta"), (float)fh_cfg_real(cfg, "perfedavg.delta"),
                           &s->sgd, run->model);
  if (s->sgd.opt.momentum > 0 || s->sgd.opt.weight_decay > 0)
    fh_warn("run.algorithm = perfedavg takes plain SGD steps of perfedavg.alpha and perfedavg.beta: "
            "train.momentum and train.weight_decay do not apply");
  s->steps = (int)fh_cfg_int(cfg, "perfedavg.steps");
  s->eval_steps = (int)fh_cfg_int(cfg, "perfedavg.eval_steps");
  s->batch = (int)fh_cfg_int(cfg, "train.batch_size");
  s->idx = fh_malloc((size_t)3 * s->batch * sizeof(int));
  s->scratch = fh_malloc(run->model_n * sizeof(float));
  run->alg_state = s;
  return 0;
}

static int perfedavg_client_update(fh_run *run, fh_client_ctx *c, fh_accum *acc, fh_client_report *rep) {
  perfedavg_state *s = run->alg_state;
  const fh_split *tr = &c->data->train;
  fh_model_load_state(c->model, run->global);
  rep->weight = (double)tr->n;
  rep->train_loss = 0;
  if (tr->n > 0) {
    const int per_step = s->step.hf ? 3 : 2, b = tr->n < s->batch ? tr->n : s->batch;
    const long long tau = s->steps > 0            ? s->steps
                          : s->sgd.iterations > 0 ? s->sgd.iterations
                                                  : s->sgd.epochs * (((long long)tr->n + per_step * b - 1) / (per_step * b));
    if (tr->n > s->max_n) {
      free(s->order);
      s->order = fh_malloc((size_t)tr->n * sizeof(int));
      s->max_n = tr->n;
    }
    fh_rng rng;
    fh_rng_init(&rng, run->seed, FH_RNG_SHUFFLE, (uint32_t)c->id, (uint32_t)c->round);
    int pos = tr->n; /* draw a permutation first */
    double loss_sum = 0;
    for (long long k = 0; k < tau; k++) {
      /* D, D', D'': the next b indices each, a new permutation when fewer are left */
      for (int j = 0; j < per_step; j++) {
        if (pos + b > tr->n) {
          fh_rng_permutation(&rng, s->order, tr->n);
          pos = 0;
        }
        memcpy(s->idx + (size_t)j * b, s->order + pos, (size_t)b * sizeof(int));
        pos += b;
      }
      double ql = 0;
      FH_TRY(fh_perfedavg_local_step(&s->step, c->model, tr, s->idx, s->idx + b, s->idx + 2 * b, b, &ql));
      loss_sum += ql;
    }
    rep->train_loss = tau > 0 ? loss_sum / tau : 0.0;
  }
  return fh_accum_add_model(acc, c->model, s->scratch, rep->weight);
}

static int perfedavg_server_step(fh_run *run, const fh_accum *acc) {
  fh_accum_mean(acc, run->global);
  return 0;
}

/* One (or eval_steps) SGD steps of rate alpha from the global model. */
static int perfedavg_client_model(fh_run *run, fh_client_ctx *c) {
  perfedavg_state *s = run->alg_state;
  fh_model_load_state(c->model, run->global);
  fh_rng rng;
  fh_rng_init(&rng, run->seed, FH_RNG_ALGORITHM, (uint32_t)c->id, (uint32_t)c->round);
  return fh_local_sgd_adapt(&s->sgd, c->model, &c->data->train, s->eval_steps, s->batch, s->step.alpha, &rng);
}

static void perfedavg_destroy(fh_run *run) {
  perfedavg_state *s = run->alg_state;
  fh_perfedavg_step_destroy(&s->step);
  fh_local_sgd_destroy(&s->sgd);
  free(s->order);
  free(s->idx);
  free(s->scratch);
  free(s);
  run->alg_state = NULL;
}

static const fh_test_case perfedavg_tests[] = {
    {"perfedavg_hf", FH_TEST_RANKS | FH_TEST_DECK, "perfedavg.variant=hf eval.holdout_clients=4", "personal/accuracy holdout/accuracy", NULL},
    {"perfedavg_fo", FH_TEST_RANKS, "perfedavg.variant=fo perfedavg.eval_steps=2", "personal/accuracy", NULL},
    {NULL, 0, NULL, NULL, NULL}};

const fh_algorithm fh_alg_perfedavg = {
    .name = "perfedavg",
    .summary = "Per-FedAvg: FedAvg of a one-step MAML objective (FO or HF), evaluated after local adaptation",
    .keys = perfedavg_keys,
    .setup = perfedavg_setup,
    .client_update = perfedavg_client_update,
    .server_step = perfedavg_server_step,
    .destroy = perfedavg_destroy,
    .client_model = perfedavg_client_model,
    .tests = perfedavg_tests,
};
