/* LIPS: transient sparsity of the middle layers when a client receives the
 * global model (see fl/addons/lips.h for the flow and docs/lips.md for the
 * method and the choices made); the per-layer inertia record's rounds are in
 * lips_inertia.c.
 *
 * Per-client state (client store, so it survives checkpoints and does not
 * depend on the rank count):
 *   lips.grad   F16 [glen]   the last minibatch gradient of the recorded
 *                            layers (the middle ones; every conv and linear
 *                            weight with lips.record_inertia), packed
 *   lips.local  F32 [nloc]   the client's own biases and BatchNorm parameters
 *                            and running statistics (lips.local_bias_bn)
 * Server vector: lips.snapshot [nparams], the global parameters after round
 * index 2 (the inertia record's reference; rank 0's, in the checkpoint). */
#include "fl/addons/lips.h"
#include "fl/addons/lips_impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/log.h"
#include "core/rng.h"
#include "fl/accumulate.h"
#include "fl/addon.h"
#include "fl/client_state.h"
#include "fl/payload.h"
#include "nn/layer.h"
#include "nn/model.h"

const fh_key_spec fh_lips_keys[] = {
    {"lips.enable", FH_T_BOOL, "false", 0, 0, NULL,
     "LIPS transient sparsity of the middle layers, on top of an algorithm that trains by local SGD "
     "([local SGD] in `fedhpc help algorithms`)"},
    {"lips.d0", FH_T_REAL, "0.5", 0, 1, NULL,
     "density d0 of the middle layers on the first sparse round; d = min(1, d0 + (1 - d0) s/T)"},
    {"lips.every", FH_T_INT, "5", 1, 1e8, NULL,
     "f: the model aggregated in round s (0-based) starts the next round sparse when s mod f == 0"},
    {"lips.rounds", FH_T_INT, "0", 0, 1e8, NULL, "T of the density schedule; 0 = run.rounds"},
    {"lips.score", FH_T_ENUM, "gw", 0, 0, "gw|w|g|random",
     "what a middle weight keeps by: |g w| (own last minibatch gradient times the global weight), |w|, |g|, "
     "or a random order"},
    {"lips.local_bias_bn", FH_T_BOOL, "true", 0, 0, NULL,
     "each client keeps its own biases and BatchNorm parameters and statistics (the authors' code); false: "
     "global"},
    {"lips.record_inertia", FH_T_BOOL, "false", 0, 0, NULL,
     "write RUN/inertia.h5: per conv/linear weight and round, cosine and distance to the round-3 global "
     "model, update norm, clients' gradient norm and diversity (any algorithm with a global model)"},
    FH_KEYS_END};

/* ---- pure pieces ---------------------------------------------------------------- */

double fh_lips_density(int t, double d0, int every, int T) {
  const int s = t - 1; /* the round whose aggregate the client receives */
  if (s < 0 || every < 1 || T < 1 || s % every != 0) return 1.0;
  const double d = d0 + (1.0 - d0) * (double)s / (double)T;
  return d < 1.0 ? d : 1.0;
}

size_t fh_lips_kept(double d, size_t n) {
  if (!(d > 0)) return 0;
  if (d >= 1) return n;
  double k = floor(d * (double)n);
  return k >= (double)n ? n : (size_t)k;
}

uint32_t fh_lips_score_key(float s) {
  uint32_t u;
  memcpy(&u, &s, sizeof u);
  return u & 0x7fffffffu; /* |s|: -0 orders as +0 */
}

uint16_t fh_lips_grad_to_half(float x) {
  if (x > 65504.0f) x = 65504.0f;
  else if (x < -65504.0f) x = -65504.0f;
  return fh_f32_to_f16(x);
}

/* Radix selection of the threshold key: digits of 11, 11 and 10 bits from the
 * top; at each level the bucket holding the k-th largest key among the
 * candidates sharing the higher digits. */
void fh_lips_topk(const uint32_t *key, size_t n, size_t k, uint8_t *keep, uint32_t *hist) {
  if (k >= n) {
    memset(keep, 1, n);
    return;
  }
  memset(keep, 0, n);
  if (k == 0) return;
  static const int shift[3] = {21, 10, 0}, width[3] = {11, 11, 10};
  uint32_t prefix = 0, pmask = 0; /* the candidates: (key & pmask) == prefix */
  size_t need = k;                /* of them still to take                   */
  for (int lev = 0; lev < 3; lev++) {
    const uint32_t nb = 1u << width[lev], dmask = nb - 1;
    memset(hist, 0, nb * sizeof *hist);
    for (size_t i = 0; i < n; i++)
      if ((key[i] & pmask) == prefix) hist[(key[i] >> shift[lev]) & dmask]++;
    uint32_t b = nb - 1;
    size_t above = 0;
    while (above + hist[b] < need) above += hist[b--]; /* sum of all buckets >= need: stops */
    need -= above;
    prefix |= b << shift[lev];
    pmask |= dmask << shift[lev];
  }
  /* prefix is now the threshold key T: every key > T is kept, and the first
   * `need` keys equal to T in index order */
  const uint32_t T = prefix;
  for (size_t i = 0; i < n; i++) {
    if (key[i] > T) keep[i] = 1;
    else if (key[i] == T && need > 0) keep[i] = 1, need--;
  }
}

/* ---- layout ----------------------------------------------------------------------- */

static int is_bn(const fh_layer *L) {
  return L->kind == FH_LAYER_BATCHNORM2D || L->kind == FH_LAYER_BATCHNORM1D;
}

static int ends_with(const char *s, const char *suffix) {
  size_t a = strlen(s), b = strlen(suffix);
  return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Appends [off, off+len) to the client-local segments (capacity: one per
 * view), merging neighbours but never across the parameters' end np (the
 * buffers live elsewhere in the model). */
static void add_segment(struct fh_lips *L, size_t off, size_t len, size_t np) {
  if (L->nseg > 0 && L->seg_off[L->nseg - 1] + L->seg_len[L->nseg - 1] == off && off != np) {
    L->seg_len[L->nseg - 1] += len;
  } else {
    L->seg_off[L->nseg] = off;
    L->seg_len[L->nseg++] = len;
  }
  L->nloc += len;
}

/* The model state entry at payload offset off (parameters, then buffers). */
static float *state_at(fh_model *m, size_t off) {
  const size_t np = fh_model_nparams(m);
  return off < np ? fh_model_params(m) + off : fh_model_buffers(m) + (off - np);
}

/* c->model's client-local segments <- the client's stored copy, if it has one. */
static void load_local(fh_run *run, struct fh_lips *L, int client, fh_model *m) {
  if (!L->local || !fh_client_store_initialised(run->state, L->f_local, client)) return;
  const float *v = fh_client_store_acquire(run->state, L->f_local, client, NULL);
  for (int s = 0, o = 0; s < L->nseg; o += (int)L->seg_len[s], s++)
    memcpy(state_at(m, L->seg_off[s]), v + o, L->seg_len[s] * sizeof(float));
  fh_client_store_release(run->state, L->f_local, client, 0);
}

/* Evaluation with local biases and BatchNorm: the global model with the
 * client's own ones (unmasked: the mask is only where a round starts). */
static int lips_client_model(fh_run *run, void *state, fh_client_ctx *c) {
  fh_model_load_state(c->model, run->global);
  load_local(run, state, c->id, c->model);
  return 0;
}

/* ---- setup -------------------------------------------------------------------------- */

static int lips_enabled(const fh_config *cfg) {
  return fh_cfg_bool(cfg, "lips.enable") || fh_cfg_bool(cfg, "lips.record_inertia");
}

/* Refuses what LIPS and the inertia record cannot run on: LIPS needs an
 * algorithm that trains by local SGD (it calls the client hooks), the record
 * a global model in the broadcast payload. */
static int check_algorithm(const fh_run *run, int enabled, int inertia) {
  const char *alg = run->alg->name;
  if (enabled && !(run->alg->flags & FH_ALG_LOCAL_SGD)) {
    char names[256];
    fh_algorithm_names_with(FH_ALG_LOCAL_SGD, "or", names, sizeof names);
    return FH_FAIL(FH_ERR_CONFIG, "lips.enable = true works on run.algorithm = %s, not %s; "
                                  "set lips.enable = false or change run.algorithm", names, alg);
  }
  if (inertia && (run->alg->flags & (FH_ALG_NO_GLOBAL | FH_ALG_NO_GLOBAL_MODEL)))
    return FH_FAIL(FH_ERR_CONFIG, "lips.record_inertia = true needs a global model, and run.algorithm = %s has "
                                  "none; set lips.record_inertia = false", alg);
  /* The record reads the model's weights in the broadcast payload: an algorithm
   * whose payload is something else (FedKD: a factorised update) has none there. */
  if (inertia && run->alg->global_model)
    return FH_FAIL(FH_ERR_CONFIG, "lips.record_inertia = true reads the global weights from the broadcast, and "
                                  "run.algorithm = %s broadcasts something else; set lips.record_inertia = false", alg);
  return 0;
}

/* The recorded layers (every conv and linear weight), which of them are
 * middle layers, where each one's gradient sits in lips.grad, and the
 * client-local segments of the model state. Returns the middle layers' count;
 * *max_numel gets the largest middle layer's size. */
static int layout(struct fh_lips *L, fh_model *m, size_t *max_numel) {
  const int enabled = L->enabled, inertia = L->inertia;
  const int nv = fh_model_nviews(m);
  L->view = fh_malloc((size_t)nv * sizeof *L->view);
  L->middle = fh_malloc((size_t)nv);
  L->goff = fh_malloc((size_t)nv * sizeof *L->goff);
  const size_t nseg_max = (size_t)nv + (size_t)fh_model_nbuffer_views(m);
  L->seg_off = fh_malloc(nseg_max * sizeof *L->seg_off);
  L->seg_len = fh_malloc(nseg_max * sizeof *L->seg_len);
  int nmiddle = 0;
  for (int v = 0; v < nv; v++) {
    const fh_layer *ly = fh_model_layer(m, fh_model_view_layer(m, v));
    const fh_param_view *pv = fh_model_view(m, v);
    const int weight = (ly->kind == FH_LAYER_CONV2D || ly->kind == FH_LAYER_LINEAR) &&
                       strcmp(pv->name, ly->param[0].name) == 0;
    if (weight) {
      const int mid = fh_model_view_is_middle(m, v);
      nmiddle += mid;
      L->view[L->nl] = v;
      L->middle[L->nl] = (uint8_t)mid;
      /* the gradient is stored for the middle layers, and for all with the record */
      const int stored = (enabled && L->score != FH_LIPS_SCORE_W && L->score != FH_LIPS_SCORE_RANDOM && mid) ||
                         inertia;
      L->goff[L->nl] = stored ? L->glen : SIZE_MAX;
      if (stored) L->glen += pv->numel;
      if (mid && pv->numel > *max_numel) *max_numel = pv->numel;
      L->nl++;
    }
    if (L->local && (is_bn(ly) || ends_with(pv->name, ".bias"))) add_segment(L, pv->offset, pv->numel, fh_model_nparams(m));
  }
  if (L->local) {
    const size_t np = fh_model_nparams(m);
    for (int b = 0; b < fh_model_nbuffer_views(m); b++) {
      const fh_param_view *bv = fh_model_buffer_view(m, b);
      add_segment(L, np + bv->offset, bv->numel, np);
    }
  }
  return nmiddle;
}

static int lips_setup(fh_run *run, void **state) {
  const fh_config *cfg = run->cfg;
  const int enabled = fh_cfg_bool(cfg, "lips.enable"), inertia = fh_cfg_bool(cfg, "lips.record_inertia");
  FH_TRY(check_algorithm(run, enabled, inertia));
  struct fh_lips *L = fh_calloc(1, sizeof *L);
  *state = L;
  L->enabled = enabled;
  L->inertia = inertia;
  L->local = enabled && fh_cfg_bool(cfg, "lips.local_bias_bn");
  L->d0 = fh_cfg_real(cfg, "lips.d0");
  L->every = (int)fh_cfg_int(cfg, "lips.every");
  L->T = fh_cfg_int(cfg, "lips.rounds") > 0 ? (int)fh_cfg_int(cfg, "lips.rounds") : run->rounds;
  const char *score = fh_cfg_str(cfg, "lips.score");
  L->score = fh_cfg_enum(cfg, "lips.score"); /* gw|w|g|random: FH_LIPS_SCORE_* */
  L->f_grad = L->f_local = -1;

  fh_model *m = run->model;
  size_t max_numel = 0;
  const int nmiddle = layout(L, m, &max_numel);
  if (enabled && nmiddle == 0)
    return FH_FAIL(FH_ERR_CONFIG, "lips.enable = true but model.arch = %s has no middle layers to sparsify; "
                                  "use resnet4, resnet6, resnet8, resnet10, resnet18 or vgg11_bn",
                   fh_model_arch(m));
  if (enabled) {
    L->key = fh_malloc((max_numel ? max_numel : 1) * sizeof *L->key);
    L->keep = fh_malloc(max_numel ? max_numel : 1);
  }
  if (L->glen > 0) {
    FH_TRY(fh_client_store_field(run->state, "lips.grad", FH_STATE_F16, L->glen, &L->f_grad));
    L->last_grad = fh_malloc(fh_model_nparams(m) * sizeof(float));
  }
  if (L->local && L->nloc > 0)
    FH_TRY(fh_client_store_field(run->state, "lips.local", FH_STATE_F32, L->nloc, &L->f_local));
  else
    L->local = 0;
  if (L->local) /* each client is evaluated with its own biases and BatchNorm */
    fh_run_addon_slot(run, &fh_addon_lips)->client_model = lips_client_model;
  if (inertia) fh_lips_inertia_setup(run, L);
  if (enabled)
    fh_info("lips: %d middle layers, density from %g every %d rounds over T = %d, score %s, biases and "
            "BatchNorm %s; the payload stays %zu floats each way on every round",
            nmiddle, L->d0, L->every, L->T, score, L->local ? "client-local" : "global", run->payload_n);
  return 0;
}

static void lips_destroy(fh_run *run, void *state) {
  struct fh_lips *L = state;
  if (!L) return;
  if (L->enabled && run->rank == 0 && L->n_scored > 0) /* rank 0 speaks for its own clients */
    fh_info("lips: rank 0 masked %lld client starts, %.3g weights scored in %.3f s (%.2f ns per weight)",
            L->n_masked, L->n_scored, L->t_mask, 1e9 * L->t_mask / L->n_scored);
  free(L->view);
  free(L->middle);
  free(L->goff);
  free(L->seg_off);
  free(L->seg_len);
  free(L->last_grad);
  free(L->key);
  free(L->keep);
  free(L->gdec);
  free(L->prev);
  if (L->inertia) fh_accum_destroy(&L->gacc);
  free(L->traced);
  free(L->rows);
  free(L->density);
  free(L);
}

/* ---- a client's round ------------------------------------------------------------ */

/* Zeroes the weights of one middle layer that its scores do not keep. */
static void mask_layer(struct fh_lips *L, float *w, const uint16_t *g, size_t n, size_t k, fh_rng *rng) {
  uint32_t *key = L->key;
  switch (L->score) {
  case FH_LIPS_SCORE_W:
    for (size_t i = 0; i < n; i++) key[i] = fh_lips_score_key(w[i]);
    break;
  case FH_LIPS_SCORE_G:
    for (size_t i = 0; i < n; i++) key[i] = fh_lips_score_key(fh_f16_to_f32(g[i]));
    break;
  case FH_LIPS_SCORE_RANDOM:
    for (size_t i = 0; i < n; i++) key[i] = fh_rng_u32(rng);
    break;
  default:
    for (size_t i = 0; i < n; i++) key[i] = fh_lips_score_key(fh_f16_to_f32(g[i]) * w[i]);
  }
  fh_lips_topk(key, n, k, L->keep, L->hist);
  for (size_t i = 0; i < n; i++)
    if (!L->keep[i]) w[i] = 0.0f;
}

static int lips_client_begin(fh_run *run, void *state, const fh_client_ctx *c, fh_local_sgd *sgd) {
  struct fh_lips *L = state;
  sgd->last_grad = L->f_grad >= 0 ? L->last_grad : NULL;
  load_local(run, L, c->id, c->model);
  if (!L->enabled) return 0;
  const double d = fh_lips_density(c->round, L->d0, L->every, L->T);
  if (d >= 1.0) return 0;
  const int need_g = L->score == FH_LIPS_SCORE_GW || L->score == FH_LIPS_SCORE_G;
  /* No gradient yet (the client's first participation): it starts dense. */
  if (need_g && !fh_client_store_initialised(run->state, L->f_grad, c->id)) return 0;
  double t0 = MPI_Wtime();
  const uint16_t *g = need_g ? fh_client_store_acquire(run->state, L->f_grad, c->id, NULL) : NULL;
  fh_rng rng;
  fh_rng_init(&rng, run->seed, FH_RNG_ALGORITHM, (uint32_t)c->id, (uint32_t)c->round);
  float *params = fh_model_params(c->model);
  for (int l = 0; l < L->nl; l++) {
    if (!L->middle[l]) continue;
    const fh_param_view *pv = fh_model_view(c->model, L->view[l]);
    const size_t k = fh_lips_kept(d, pv->numel);
    if (k < pv->numel) mask_layer(L, params + pv->offset, g ? g + L->goff[l] : NULL, pv->numel, k, &rng);
    L->n_scored += (double)pv->numel;
  }
  if (g) fh_client_store_release(run->state, L->f_grad, c->id, 0);
  L->t_mask += MPI_Wtime() - t0;
  L->n_masked++;
  return 0;
}

static int lips_client_end(fh_run *run, void *state, const fh_client_ctx *c, fh_local_sgd *sgd, int rc_train) {
  struct fh_lips *L = state;
  sgd->last_grad = NULL;
  if (rc_train != 0 || sgd->steps == 0) return rc_train; /* nothing trained: nothing new to keep */
  if (L->f_grad >= 0) {
    uint16_t *g = fh_client_store_acquire(run->state, L->f_grad, c->id, NULL);
    for (int l = 0; l < L->nl; l++) {
      if (L->goff[l] == SIZE_MAX) continue;
      const fh_param_view *pv = fh_model_view(c->model, L->view[l]);
      const float *src = L->last_grad + pv->offset;
      uint16_t *dst = g + L->goff[l];
      for (size_t i = 0; i < pv->numel; i++) dst[i] = fh_lips_grad_to_half(src[i]);
    }
    if (L->inertia) { /* the round's mean gradient, in fixed point */
      fh_f16_to_f32_array(g, L->gdec, L->glen);
      L->traced[L->ntraced++] = c->id;
    }
    FH_TRY(fh_client_store_release(run->state, L->f_grad, c->id, 1));
    if (L->inertia) FH_TRY(fh_accum_add(&L->gacc, L->gdec, 1.0));
  }
  if (L->local) {
    float *v = fh_client_store_acquire(run->state, L->f_local, c->id, NULL);
    for (int s = 0, o = 0; s < L->nseg; o += (int)L->seg_len[s], s++)
      memcpy(v + o, state_at(c->model, L->seg_off[s]), L->seg_len[s] * sizeof(float));
    FH_TRY(fh_client_store_release(run->state, L->f_local, c->id, 1));
  }
  return 0;
}

/* ---- resume ---------------------------------------------------------------------- */

/* LIPS's schedule depends on T: a resumed run may not change it (lips.rounds
 * = 0 and run.rounds changed from the checkpoint's); a checkpoint without
 * run.rounds (older) is accepted. */
static int lips_resume_check(const fh_config *cfg, fh_ck_lookup get, const void *ck, const char *run_dir) {
  const char *ck_rounds = get(ck, "run.rounds");
  if (!ck_rounds || !fh_cfg_bool(cfg, "lips.enable") || fh_cfg_int(cfg, "lips.rounds") > 0) return 0;
  const long long was = atoll(ck_rounds), now = fh_cfg_int(cfg, "run.rounds");
  if (was == now) return 0;
  return FH_FAIL(FH_ERR_CONFIG, "--resume %s: run.rounds = %lld in the deck but %lld in the checkpoint, and LIPS's "
                                "density schedule takes its T from run.rounds (lips.rounds = 0); resume with "
                                "run.rounds = %lld, or set lips.rounds when starting a run you may extend",
                 run_dir, now, was, was);
}

/* ---- the add-on -------------------------------------------------------------------- */

int fh_lips_client_start(fh_run *run, const fh_client_ctx *c, fh_local_sgd *sgd) {
  void *L = fh_run_addon_state(run, &fh_addon_lips);
  return L ? lips_client_begin(run, L, c, sgd) : 0;
}

int fh_lips_client_end(fh_run *run, const fh_client_ctx *c, fh_local_sgd *sgd, int rc_train) {
  void *L = fh_run_addon_state(run, &fh_addon_lips);
  return L ? lips_client_end(run, L, c, sgd, rc_train) : rc_train;
}

/* Tests: LIPS needs images and a ResNet; its per-client gradients and
 * biases/BatchNorm are client state, its round-3 snapshot a server vector, and
 * its schedule's T is fixed by lips.rounds, as the resumed parts change
 * run.rounds. */
static const fh_test_case lips_tests[] = {
    {"fedavg+lips", FH_TEST_RESUME, "data.source=synthimg data.synthimg_channels=1 data.synthimg_height=8 data.synthimg_width=8 data.synthimg_classes=4 data.synthimg_train=300 data.synthimg_test=100 model.arch=resnet4 lips.enable=true lips.d0=0.3 lips.every=2 lips.rounds=6 lips.record_inertia=true", "", "fedavg"},
    {NULL, 0, NULL, NULL, NULL}};

const fh_addon fh_addon_lips = {
    .name = "lips",
    .summary = "LIPS transient sparsity of the middle layers (lips.enable) and the inertia record "
               "(lips.record_inertia)",
    .keys = fh_lips_keys,
    .enabled = lips_enabled,
    .setup = lips_setup,
    .round_begin = fh_lips_inertia_round_begin,
    .round_end = fh_lips_inertia_round_end,
    .client_begin = lips_client_begin,
    .client_end = lips_client_end,
    .resume_check = lips_resume_check,
    .destroy = lips_destroy,
    .tests = lips_tests,
};
