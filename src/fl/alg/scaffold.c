/* SCAFFOLD (Karimireddy et al. 2020, arXiv:1910.06378), option II. The server
 * keeps a control variate c, each client k its own c_k (per-client state,
 * zero at first); both estimate the update direction, and their difference
 * corrects the client's drift:
 *
 *   client k:  y <- theta^t; K local SGD steps of  y <- y - eta (g(y) - c_k + c)
 *              c_k+ = c_k - c + (theta^t - y) / (K eta)
 *              sends dy = y - theta^t and dc = c_k+ - c_k
 *   server:    theta^{t+1} = theta^t + eta_g mean_{S_t}(dy)
 *              c^{t+1}     = c^t + (1/N) sum_{S_t} dc      (N training clients)
 *
 * so that c stays the mean of all c_k (it starts at 0 = mean of zeros and each
 * sum of dc enters both). Payload: [theta (parameters, buffers) | c], one
 * broadcast; each contribution is [dy | dc] with weight 1, one reduction. The
 * correction goes into local SGD through its gradient hook; K counts the
 * client's optimiser steps and eta is train.lr (the formula assumes plain SGD).
 * Buffers (BatchNorm statistics) average as in FedAvg, eta_g applies to the
 * parameters. A client without training samples sends zeros. With LIPS
 * (fl/addons/lips.h) a client may start from a sparsified model x0: dy stays
 * y - theta^t, the server's reference, and c_k's update takes x0 - y, the
 * path local SGD took. */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/log.h"
#include "fl/algorithm.h"
#include "fl/client_state.h"
#include "fl/addon.h"
#include "fl/blocks/local_sgd.h"
#include "fl/payload.h"
#include "fl/run.h"

static const fh_key_spec scaffold_keys[] = {
    {"scaffold.global_lr", FH_T_REAL, "1", 0, 1e6, NULL, "server learning rate eta_g of theta += eta_g mean(dy)"},
    FH_KEYS_END};

typedef struct {
  fh_local_sgd sgd;
  int field;        /* c_k in the client store, [nparams] floats */
  size_t np;        /* nparams */
  float eta_g, eta;
  int ntrain;       /* N */
  float *corr;      /* [np] c - c_k of the client at work */
  float *contrib;   /* [payload_n] dy | dc */
  float *x0;        /* [np] the client's starting parameters */
} scaffold_state;

/* grads += c - c_k */
static void correction(void *ctx, const float *params, float *grads, size_t n) {
  (void)params;
  const float *corr = ((const scaffold_state *)ctx)->corr;
  for (size_t i = 0; i < n; i++) grads[i] += corr[i];
}

static int scaffold_setup(fh_run *run) {
  scaffold_state *s = fh_calloc(1, sizeof *s);
  run->alg_state = s;
  s->np = fh_model_nparams(run->model);
  fh_local_sgd_create(&s->sgd, run->cfg, run->data->dim, s->np);
  s->sgd.hook = correction;
  s->sgd.hook_ctx = s;
  s->eta_g = (float)fh_cfg_real(run->cfg, "scaffold.global_lr");
  s->eta = (float)fh_cfg_real(run->cfg, "train.lr");
  s->ntrain = run->map.num_clients - run->nholdout;
  if (s->eta <= 0)
    return FH_FAIL(FH_ERR_CONFIG, "run.algorithm = scaffold divides by train.lr (0 now); set train.lr > 0");
  if (s->sgd.opt.momentum > 0)
    fh_warn("run.algorithm = scaffold with train.momentum = %g: the control-variate update assumes plain "
            "SGD steps; set train.momentum = 0 for the method as published", (double)s->sgd.opt.momentum);
  FH_TRY(fh_client_store_field(run->state, "scaffold.c", FH_STATE_F32, s->np, &s->field));
  /* the payload grows by c, zero at first */
  run->payload_n = run->model_n + s->np;
  run->global = realloc(run->global, run->payload_n * sizeof(float));
  if (!run->global) return FH_FAIL(FH_ERR_RUNTIME, "out of memory for the SCAFFOLD payload");
  memset(run->global + run->model_n, 0, s->np * sizeof(float));
  s->corr = fh_malloc(s->np * sizeof(float));
  s->contrib = fh_malloc(run->payload_n * sizeof(float));
  s->x0 = fh_malloc(s->np * sizeof(float));
  return 0;
}

static int scaffold_client_update(fh_run *run, fh_client_ctx *c, fh_accum *acc, fh_client_report *rep) {
  scaffold_state *s = run->alg_state;
  const size_t np = s->np, mn = run->model_n;
  const float *theta = run->global, *cg = run->global + mn;
  int fresh;
  float *ck = fh_client_store_acquire(run->state, s->field, c->id, &fresh);
  for (size_t i = 0; i < np; i++) s->corr[i] = cg[i] - ck[i];
  fh_model_load_state(c->model, theta);
  int rc = fh_addons_client_begin(run, c, &s->sgd);
  /* x0: where local SGD starts (theta's parameters, or LIPS's masked ones) */
  memcpy(s->x0, fh_model_params(c->model), np * sizeof(float));
  if (rc == 0) rc = fh_local_sgd_run(&s->sgd, c->model, &c->data->train, run->seed, c->id, c->round, &rep->train_loss);
  rc = fh_addons_client_end(run, c, &s->sgd, rc);
  rep->weight = 1.0;
  memset(s->contrib, 0, run->payload_n * sizeof(float));
  if (rc == 0 && s->sgd.steps > 0) {
    /* dy over the model's state */
    fh_model_store_state(c->model, s->contrib);
    for (size_t i = 0; i < mn; i++) s->contrib[i] -= theta[i];
    /* c_k+ = c_k - c + (x0 - y) / (K eta); dc = c_k+ - c_k */
    const double inv = 1.0 / ((double)s->sgd.steps * s->eta);
    const float *y = fh_model_params(c->model);
    float *dc = s->contrib + mn;
    for (size_t i = 0; i < np; i++) {
      float ck_new = ck[i] - cg[i] + (float)(((double)s->x0[i] - y[i]) * inv);
      dc[i] = ck_new - ck[i];
      ck[i] = ck_new;
    }
  }
  int rc_r = fh_client_store_release(run->state, s->field, c->id, rc == 0);
  FH_TRY(rc);
  FH_TRY(rc_r);
  return fh_accum_add(acc, s->contrib, 1.0);
}

static int scaffold_server_step(fh_run *run, const fh_accum *acc) {
  scaffold_state *s = run->alg_state;
  const double m = fh_accum_weight(acc); /* |S_t| */
  if (m <= 0) return 0;
  const size_t np = s->np, mn = run->model_n;
  float *g = run->global;
  for (size_t i = 0; i < mn; i++) {
    double mean = (double)acc->sum[i] / acc->scale / m;
    g[i] = (float)(g[i] + (i < np ? s->eta_g : 1.0) * mean);
  }
  for (size_t i = 0; i < np; i++) g[mn + i] = (float)(g[mn + i] + (double)acc->sum[mn + i] / acc->scale / s->ntrain);
  return 0;
}

static void scaffold_destroy(fh_run *run) {
  scaffold_state *s = run->alg_state;
  fh_local_sgd_destroy(&s->sgd);
  free(s->corr);
  free(s->contrib);
  free(s->x0);
  free(s);
  run->alg_state = NULL;
}

/* Tests: SCAFFOLD's c_k update assumes plain SGD (no momentum). */
static const fh_test_case scaffold_tests[] = {
    {"scaffold", FH_TEST_RANKS | FH_TEST_DECK, "train.momentum=0 scaffold.global_lr=0.8 eval.holdout_clients=3", "test_accuracy holdout/accuracy", NULL},
    {"scaffold", FH_TEST_RESUME, "train.momentum=0", "", NULL},
    {NULL, 0, NULL, NULL, NULL}};

const fh_algorithm fh_alg_scaffold = {
    .name = "scaffold",
    .summary = "SCAFFOLD (option II): local SGD corrected by server and client control variates",
    .keys = scaffold_keys,
    .setup = scaffold_setup,
    .client_update = scaffold_client_update,
    .server_step = scaffold_server_step,
    .destroy = scaffold_destroy,
    .flags = FH_ALG_LOCAL_SGD,
    .tests = scaffold_tests,
};
