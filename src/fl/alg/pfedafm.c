/* pFedAFM (Yi et al., arXiv:2404.17847): model-heterogeneous personalised FL
 * by adaptive feature mixture. Client k owns a model F_k of its own
 * architecture (hetero.models: extractor F_k^ex + Linear header F_k^hd), a
 * mixing vector alpha_k in [0, 1]^d that starts at ones, and its optimisers'
 * state; all of it lives in the client store. The only thing that travels is
 * a small shared extractor G (the extractor of pfedafm.shared, cnn5's by
 * default), both ways:
 *
 *   payload = [ G's parameters | G's buffers (none for the CNNs) ]
 *
 * Round t, client k (sampled), from G^t:
 *   step 1  G frozen: E epochs (hetero.epochs) training F_k and alpha_k on the
 *           mixed features R = alpha_k R_l + (1 - alpha_k) R_g (fl/alg/pfedafm.h);
 *           SGD (hetero.lr, momentum, weight decay) with F_k's gradient norm
 *           clipped at hetero.clip_norm; alpha_k by its own SGD (pfedafm.alpha_*),
 *           clamped to [0, 1] before and after each step
 *   eval    the mixed model on the client's test split (kept in the client's
 *           state: the reported accuracy, pfedafm.eval = step1)
 *   step 2  F_k frozen: E epochs training G alone through F_k's header on
 *           R = R_g (alpha = 0), gradient norm clipped likewise
 *   send    G_k with weight n_k;  server: G^{t+1} = sum n_k G_k / sum n_k
 *
 * pfedafm.mode = paper (above): every client keeps its own optimisers'
 * momentum (hetero.optimizer_state = client) or starts every round from zero
 * (round). pfedafm.mode = authors_code runs the authors' code instead: one
 * alpha and one alpha and G optimiser passed from client to client (the
 * round's clients chained in id order along the ranks), F_k's optimiser fresh
 * every round, G^{t+1} the last client's G (docs/pfedafm.md).
 *
 * Client state (fields of the store, each client's row of the same length):
 *   pfedafm.model     [max state]  F_k as the state of its architecture
 *                                  (hetero.h layout), padded to the largest
 *   pfedafm.alpha     [d]
 *   pfedafm.momentum  [max np + d + |G|]  F_k's, alpha's and G's momentum
 *                                  (optimizer_state = client and momentum > 0)
 *   pfedafm.steps     [3] f64      optimiser steps taken (F_k, alpha, G)
 *   pfedafm.score     [4] f64      step-1 test result: correct, count, loss, set
 *
 * run->model becomes G's extractor, so model.h5 holds the final G and the
 * payload is that model's state. There is no global model of the data: the
 * run reports each client's mixed model (the personal group of metrics.h5). */
#include "fl/alg/pfedafm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "core/error.h"
#include "core/log.h"
#include "core/profile.h"
#include "core/rng.h"
#include "fl/algorithm.h"
#include "fl/client_state.h"
#include "fl/payload.h"
#include "fl/run.h"
#include "nn/loss.h"

static const fh_key_spec pfedafm_keys[] = {
    {"pfedafm.shared", FH_T_STRING, "cnn5", 0, 0, NULL,
     "architecture whose extractor is the shared extractor G (named as in hetero.models); its "
     "features must be as wide as the clients' (model.arch is not used)"},
    {"pfedafm.alpha_lr", FH_T_REAL, "0.01", 0, 1e6, NULL, "SGD learning rate of the mixing vector alpha"},
    {"pfedafm.alpha_momentum", FH_T_REAL, "0.9", 0, 1, NULL, "SGD momentum of alpha (the authors' 0.9)"},
    {"pfedafm.alpha_weight_decay", FH_T_REAL, "0.001", 0, 1e6, NULL,
     "L2 weight decay of alpha (the authors' 1e-3)"},
    {"pfedafm.mode", FH_T_ENUM, "paper", 0, 0, "paper|authors_code",
     "paper: every client its own alpha and optimisers, the server averages the clients' G by n_k; "
     "authors_code: as LipingYi/pFedAFM's pFedAFM_mh.py runs, one alpha passed from client to client, "
     "G's and alpha's optimisers shared by all clients, F_k's optimiser fresh every round, the server's G "
     "the last client's G, n_k = train + test rows; the round's clients run one after another in id "
     "order (docs/pfedafm.md)"},
    {"pfedafm.log_alpha", FH_T_BOOL, "false", 0, 0, NULL,
     "log every trained client's alpha after step 1 (mean, min, max): the clients of rank 0, so all of "
     "them on one rank"},
    {"pfedafm.eval", FH_T_ENUM, "step1", 0, 0, "step1|latest",
     "client accuracy reported: step1 = the mixed model right after step 1 of the client's latest "
     "round, with that round's G (the paper's); latest = F_k and alpha_k with the latest G"},
    FH_KEYS_END};

/* ---- the mixed network ---------------------------------------------------------------- */

void fh_afm_mix_create(fh_afm_mix *m, int d, int max_batch) {
  memset(m, 0, sizeof *m);
  m->d = d;
  m->max_batch = max_batch;
  const size_t n = (size_t)d * max_batch;
  m->R = fh_malloc(n * sizeof(float));
  m->dR = fh_malloc(n * sizeof(float));
  m->dRl = fh_malloc(n * sizeof(float));
  m->dRg = fh_malloc(n * sizeof(float));
  m->dalpha = fh_malloc((size_t)d * sizeof(float));
}

void fh_afm_mix_destroy(fh_afm_mix *m) {
  free(m->R);
  free(m->dR);
  free(m->dRl);
  free(m->dRg);
  free(m->dalpha);
  memset(m, 0, sizeof *m);
}

void fh_afm_clamp01(float *x, int n) {
  for (int i = 0; i < n; i++) {
    if (x[i] < 0.0f) x[i] = 0.0f;
    else if (x[i] > 1.0f) x[i] = 1.0f;
  }
}

const float *fh_afm_forward(fh_afm_mix *m, fh_hnet *local, fh_hnet *shared, const float *alpha,
                            const float *x, int B, int train, int g_train) {
  const int d = m->d;
  m->Rg = fh_hnet_features(shared, x, B, g_train);
  m->Rl = fh_hnet_features(local, x, B, train);
  for (int b = 0; b < B; b++) {
    const float *rl = m->Rl + (size_t)b * d, *rg = m->Rg + (size_t)b * d;
    float *r = m->R + (size_t)b * d;
    for (int j = 0; j < d; j++) {
      const float g = (1.0f - alpha[j]) * rg[j]; /* the authors' order: (1 - alpha) R_g first */
      r[j] = rl[j] * alpha[j] + g;
    }
  }
  return fh_hnet_head_forward(local, m->R, B);
}

float fh_afm_loss_grad(fh_afm_mix *m, fh_hnet *local, fh_hnet *shared, const float *alpha,
                       const float *x, const int32_t *y, int B, int g_grad) {
  const int d = m->d, C = local->C;
  const float *logits = fh_afm_forward(m, local, shared, alpha, x, B, 1, g_grad);
  const double loss = fh_softmax_ce_forward(local->probs, logits, y, B, C);
  fh_softmax_ce_backward(local->dlogits, local->probs, y, B, C);
  fh_hnet_head_backward(local, m->R, local->dlogits, m->dR, B);
  memset(m->dalpha, 0, (size_t)d * sizeof(float));
  for (int b = 0; b < B; b++) {
    const float *dr = m->dR + (size_t)b * d, *rl = m->Rl + (size_t)b * d, *rg = m->Rg + (size_t)b * d;
    float *dl = m->dRl + (size_t)b * d, *dg = m->dRg + (size_t)b * d;
    for (int j = 0; j < d; j++) {
      m->dalpha[j] += dr[j] * (rl[j] - rg[j]);
      dl[j] = dr[j] * alpha[j];
      dg[j] = dr[j] * (1.0f - alpha[j]);
    }
  }
  fh_hnet_features_backward(local, x, m->dRl, B);
  if (g_grad) fh_hnet_features_backward(shared, x, m->dRg, B);
  return (float)loss;
}

/* ---- the algorithm ------------------------------------------------------------------- */

/* ---- the local steps ------------------------------------------------------------------ */

void fh_afm_evaluate(fh_afm_ctx *x, fh_hnet *net, const float *alpha, const fh_split *sp, double *correct,
                     double *loss_sum) {
  const int mb = x->mix->max_batch;
  const size_t dim = (size_t)x->h->dim;
  for (int st = 0; st < sp->n; st += mb) {
    const int B = sp->n - st < mb ? sp->n - st : mb;
    const float *logits = fh_afm_forward(x->mix, net, x->g, alpha, sp->x + st * dim, B, 0, 0);
    *loss_sum += fh_hnet_score(net, logits, sp->y + st, B, correct);
  }
  fh_prof_count_flops((fh_hnet_flops_features(x->g, 1, 0) + fh_hnet_flops_features(net, 1, 0) +
                       fh_hnet_flops_head(net, 1, 0)) * sp->n);
}

static int diverged(const char *what, float loss, long long step, double lr) {
  return FH_FAIL(FH_ERR_DIVERGED, "pfedafm %s: the loss became %s at step %lld; lower hetero.lr (now %g)",
                 what, isnan(loss) ? "NaN" : "infinite", step, lr);
}

int fh_afm_step1(fh_afm_ctx *x, fh_hnet *net, const fh_split *tr, fh_rng *rng, float *alpha, float *mom_f,
                 float *mom_a, long long steps[FH_AFM_NSTEPS], double *last_loss) {
  fh_hetero *h = x->h;
  const int d = x->mix->d;
  const double flops = fh_hnet_flops_features(x->g, 1, 0) + fh_hnet_flops_features(net, 1, 0) +
                       fh_hnet_flops_features(net, 1, 1) + fh_hnet_flops_head(net, 1, 0) +
                       fh_hnet_flops_head(net, 1, 1);
  double epoch_loss = 0;
  for (int e = 0; e < h->tr.epochs; e++) {
    fh_hetero_shuffle(h, tr, rng);
    epoch_loss = 0;
    for (int b0 = 0; b0 < tr->n; b0 += h->tr.batch) {
      const int B = tr->n - b0 < h->tr.batch ? tr->n - b0 : h->tr.batch;
      fh_hetero_gather(h, tr, b0, B);
      const float loss = fh_afm_loss_grad(x->mix, net, x->g, alpha, h->xb, h->yb, B, 0);
      fh_prof_count_flops(flops * B);
      if (!isfinite(loss)) return diverged("step 1", loss, steps[FH_AFM_STEPS_LOCAL] + 1, h->tr.opt.lr);
      fh_hnet_clip(net, h->tr.clip); /* F_k's parameters, as the authors clip */
      fh_afm_clamp01(alpha, d);
      fh_hnet_sgd_step(net, &h->tr.opt, mom_f, &steps[FH_AFM_STEPS_LOCAL]);
      fh_sgd_step(&x->alpha_opt, alpha, x->mix->dalpha, mom_a, (size_t)d, &steps[FH_AFM_STEPS_ALPHA]);
      fh_afm_clamp01(alpha, d);
      epoch_loss += (double)loss * B;
    }
  }
  *last_loss = tr->n ? epoch_loss / tr->n : 0.0;
  return 0;
}

int fh_afm_step2(fh_afm_ctx *x, fh_hnet *net, const fh_split *tr, fh_rng *rng, float *mom_g,
                 long long steps[FH_AFM_NSTEPS]) {
  fh_hetero *h = x->h;
  fh_model *G = x->g->ex;
  const size_t g_np = x->g->ex_np;
  const double flops = fh_hnet_flops_features(x->g, 1, 0) + fh_hnet_flops_features(x->g, 1, 1) +
                       fh_hnet_flops_head(net, 1, 0) + fh_hnet_flops_head(net, 1, 1);
  for (int e = 0; e < h->tr.epochs; e++) {
    fh_hetero_shuffle(h, tr, rng);
    for (int b0 = 0; b0 < tr->n; b0 += h->tr.batch) {
      const int B = tr->n - b0 < h->tr.batch ? tr->n - b0 : h->tr.batch;
      fh_hetero_gather(h, tr, b0, B);
      const float *Rg = fh_hnet_features(x->g, h->xb, B, 1);
      const float *logits = fh_hnet_head_forward(net, Rg, B);
      const float loss = (float)fh_softmax_ce_forward(net->probs, logits, h->yb, B, net->C);
      fh_prof_count_flops(flops * B);
      if (!isfinite(loss)) return diverged("step 2", loss, steps[FH_AFM_STEPS_G] + 1, h->tr.opt.lr);
      fh_softmax_ce_backward(net->dlogits, net->probs, h->yb, B, net->C);
      /* the header's gradient lands in net's scratch; F_k itself is never stepped */
      fh_hnet_head_backward(net, Rg, net->dlogits, x->mix->dR, B);
      fh_hnet_features_backward(x->g, h->xb, x->mix->dR, B);
      if (h->tr.clip > 0) fh_clip_grad_norm(fh_model_grads(G), g_np, h->tr.clip);
      fh_sgd_step(&h->tr.opt, fh_model_params(G), fh_model_grads(G), mom_g, g_np, &steps[FH_AFM_STEPS_G]);
    }
  }
  return 0;
}

/* ---- the algorithm ------------------------------------------------------------------- */

enum { SC_CORRECT, SC_COUNT, SC_LOSS, SC_SET, NSCORE };

typedef struct {
  fh_hetero h;
  fh_hnet g;          /* the shared architecture; only its extractor (G) is used */
  size_t g_np, g_n;   /* G's parameters; its state = the payload              */
  int d;
  fh_afm_mix mix;
  fh_afm_ctx ctx;
  int eval_latest;
  int keep_mom;       /* momentum kept in the store                           */
  size_t mom_n;       /* max np + d + g_np                                    */
  int f_model, f_alpha, f_mom, f_steps, f_score;
  float *mom_scratch; /* [mom_n] when momentum restarts every round           */
  float *contrib;     /* [g_n] G's state when G has buffers                   */
  /* pfedafm.mode = authors_code: the state their code shares (server state,
   * the same on every rank between rounds, passed along the round's chain) */
  int authors;
  int log_alpha;
  float *sh;          /* [d alpha | d alpha's momentum | g_np G's momentum]  */
  size_t sh_n;
  double *sh_steps;   /* [2] steps of alpha's and G's optimisers               */
  float *g_next;      /* [g_n] the last client's G (every rank, after a round) */
  int chain_round;    /* round whose chain this rank is in (-1: none yet)      */
  int chain_first, chain_last; /* this rank's first and last sampled client */
  int chain_prev, chain_next;  /* ranks before and after it in the chain (-1) */
  int chain_sent;     /* the chain went on from here this round              */
  int chain_holder;   /* this rank trained the round's last client           */
  int *sampled;       /* [m]                                                   */
} pfedafm_state;

/* G <- run->global. */
static void load_g(pfedafm_state *s, const float *global) {
  memcpy(fh_model_params(s->g.ex), global, s->g_np * sizeof(float));
  if (s->g.ex_nb) memcpy(fh_model_buffers(s->g.ex), global + s->g_np, s->g.ex_nb * sizeof(float));
}

static int pfedafm_setup(fh_run *run) {
  pfedafm_state *s = fh_calloc(1, sizeof *s);
  run->alg_state = s;
  const fh_config *cfg = run->cfg;
  FH_TRY(fh_hetero_create(&s->h, run));
  FH_TRY(fh_hetero_need_common_d(&s->h, "pfedafm"));
  s->d = s->h.d;
  const fh_dataset *ds = run->data;
  const char *shared = fh_cfg_str(cfg, "pfedafm.shared");
  int rc = fh_hnet_create(&s->g, cfg, shared, ds->c, ds->h, ds->w, ds->num_classes, s->h.max_batch, 1);
  if (rc) {
    fh_error_prefix("pfedafm.shared = %s: ", shared);
    return rc;
  }
  if (s->g.d != s->d)
    return FH_FAIL(FH_ERR_CONFIG, "pfedafm.shared = %s ends in %d features but the clients' models in %d; "
                                  "choose architectures of one feature width",
                   shared, s->g.d, s->d);
  s->g_np = s->g.ex_np;
  s->g_n = s->g.ex_np + s->g.ex_nb;
  s->eval_latest = strcmp(fh_cfg_str(cfg, "pfedafm.eval"), "latest") == 0;
  s->authors = strcmp(fh_cfg_str(cfg, "pfedafm.mode"), "authors_code") == 0;
  if (s->authors) /* the chain passes the shared state from host to host in id order */
    run->schedule_static = "pfedafm.mode = authors_code trains the round's clients one after another along the ranks";
  s->log_alpha = fh_cfg_bool(cfg, "pfedafm.log_alpha");
  s->ctx.h = &s->h;
  s->ctx.g = &s->g;
  s->ctx.mix = &s->mix;
  s->ctx.alpha_opt.lr = (float)fh_cfg_real(cfg, "pfedafm.alpha_lr");
  s->ctx.alpha_opt.momentum = (float)fh_cfg_real(cfg, "pfedafm.alpha_momentum");
  s->ctx.alpha_opt.weight_decay = (float)fh_cfg_real(cfg, "pfedafm.alpha_weight_decay");

  /* The run's model becomes G's extractor and the payload its state, drawn
   * from the run's initialisation stream as the whole architecture. */
  fh_rng init;
  fh_rng_init(&init, run->seed, FH_RNG_INIT, FH_RNG_NONE, FH_RNG_NONE);
  float *state0 = fh_malloc(s->g.state_n * sizeof(float));
  fh_hnet_init_state(&s->g, &init, state0);
  fh_model_free(run->model);
  run->model = s->g.ex; /* freed by fh_run_free; destroy lets go of it */
  run->model_n = run->payload_n = s->g_n;
  free(run->global);
  run->global = fh_malloc(run->payload_n * sizeof(float));
  memcpy(run->global, state0, s->g_np * sizeof(float));
  if (s->g.ex_nb) memcpy(run->global + s->g_np, state0 + s->g.np, s->g.ex_nb * sizeof(float));
  free(state0);

  /* Client state. */
  const int any_mom = s->h.tr.opt.momentum > 0 || s->ctx.alpha_opt.momentum > 0;
  s->keep_mom = s->h.tr.keep_momentum && any_mom && !s->authors;
  if (s->authors) {
    s->sh_n = 2 * (size_t)s->d + s->g_np;
    s->sh = fh_run_server_state(run, "pfedafm.shared_state", s->sh_n);
    s->sh_steps = fh_run_server_state_typed(run, "pfedafm.shared_steps", FH_STATE_F64, 2);
    s->g_next = fh_malloc(s->g_n * sizeof(float));
    s->sampled = fh_malloc((size_t)fh_run_sampled_count(run) * sizeof(int));
    s->chain_round = -1;
  }
  s->mom_n = s->h.max_np + (size_t)s->d + s->g_np;
  FH_TRY(fh_client_store_field(run->state, "pfedafm.model", FH_STATE_F32, s->h.max_state, &s->f_model));
  FH_TRY(fh_client_store_field(run->state, "pfedafm.alpha", FH_STATE_F32, (size_t)s->d, &s->f_alpha));
  s->f_mom = -1;
  if (s->keep_mom)
    FH_TRY(fh_client_store_field(run->state, "pfedafm.momentum", FH_STATE_F32, s->mom_n, &s->f_mom));
  else if (any_mom) s->mom_scratch = fh_malloc(s->mom_n * sizeof(float));
  FH_TRY(fh_client_store_field(run->state, "pfedafm.steps", FH_STATE_F64, FH_AFM_NSTEPS, &s->f_steps));
  FH_TRY(fh_client_store_field(run->state, "pfedafm.score", FH_STATE_F64, NSCORE, &s->f_score));
  fh_afm_mix_create(&s->mix, s->d, s->g.max_batch);

  if (run->rank == 0) {
    const double per_client =
        4.0 * ((double)s->h.max_state + s->d + (s->keep_mom ? (double)s->mom_n : 0)) + 8.0 * (FH_AFM_NSTEPS + NSCORE);
    fh_info("pfedafm: shared extractor G = %s's (%zu parameters): %zu bytes each way per sampled client; "
            "client state up to %.1f MiB per client (model %zu floats%s, alpha %d)",
            shared, s->g_np, run->payload_n * sizeof(float), per_client / 1048576.0, s->h.max_state,
            s->keep_mom ? ", momentum" : "", s->d);
  }
  return 0;
}

static void log_alpha(const pfedafm_state *s, const fh_client_ctx *c, const float *alpha) {
  if (!s->log_alpha) return;
  double sum = 0, lo = alpha[0], hi = alpha[0];
  for (int j = 0; j < s->d; j++) {
    sum += alpha[j];
    if (alpha[j] < lo) lo = alpha[j];
    if (alpha[j] > hi) hi = alpha[j];
  }
  fh_info("pfedafm: round %d client %d alpha mean %.6f min %.6f max %.6f", c->round + 1, c->id, sum / s->d, lo, hi);
}

/* The client's rows, a fresh client's initialised (model from its stream,
 * alpha all ones). */
typedef struct {
  float *model, *alpha, *mom;
  double *steps, *score;
  int dirty_model;
} client_rows;

static void acquire_model_alpha(fh_run *run, pfedafm_state *s, int client, fh_hnet *net, client_rows *r) {
  int fresh;
  r->model = fh_client_store_acquire(run->state, s->f_model, client, &fresh);
  if (fresh) fh_hnet_init_client(net, run->seed, client, r->model);
  r->dirty_model = fresh;
  r->alpha = fh_client_store_acquire(run->state, s->f_alpha, client, &fresh);
  if (fresh)
    for (int j = 0; j < s->d; j++) r->alpha[j] = 1.0f;
  r->dirty_model |= fresh;
}

static int release_model_alpha(fh_run *run, pfedafm_state *s, int client, int dirty) {
  int rc = fh_client_store_release(run->state, s->f_model, client, dirty);
  int rc2 = fh_client_store_release(run->state, s->f_alpha, client, dirty);
  return rc ? rc : rc2;
}

/* ---- pfedafm.mode = authors_code: the round's chain -------------------------------- */

/* The authors' loop trains the round's clients one after another, each taking
 * over the alpha, and the alpha and G optimisers, the one before left. Here
 * the clients of a round run in ascending id order along the ranks (each rank
 * hosts a block of ids): the first sampled client of a rank waits for that
 * state from the rank of the sampled client before it, the rank's last one
 * sends it on to the rank of the next. Every rank learns its place from the
 * round's draw, which every rank makes itself. */
enum { CHAIN_TAG = 0x4146 };

static void chain_plan(fh_run *run, pfedafm_state *s, int t) {
  const int m = fh_run_sampled_count(run);
  fh_run_sample(run, t, s->sampled);
  s->chain_round = t;
  s->chain_first = s->chain_last = -1;
  s->chain_prev = s->chain_next = -1;
  s->chain_sent = 0;
  const int lo = run->first_client, hi = run->first_client + run->nlocal;
  for (int j = 0; j < m; j++) {
    const int k = s->sampled[j];
    if (k < lo) s->chain_prev = fh_client_owner(&run->map, k);
    else if (k < hi) {
      if (s->chain_first < 0) s->chain_first = k;
      s->chain_last = k;
    } else if (s->chain_next < 0) s->chain_next = fh_client_owner(&run->map, k);
  }
}

/* Passes the shared state on (failed: only the failure, so that no rank
 * waits for ever). */
static void chain_send(fh_run *run, pfedafm_state *s, int failed) {
  s->chain_sent = 1;
  if (s->chain_next < 0) {
    s->chain_holder = !failed;
    return;
  }
  double head[3] = {failed, s->sh_steps[0], s->sh_steps[1]};
  MPI_Send(head, 3, MPI_DOUBLE, s->chain_next, CHAIN_TAG, run->comm);
  if (!failed) MPI_Send(s->sh, (int)s->sh_n, MPI_FLOAT, s->chain_next, CHAIN_TAG, run->comm);
}

static int chain_recv(fh_run *run, pfedafm_state *s) {
  if (s->chain_prev < 0) return 0;
  double head[3];
  MPI_Recv(head, 3, MPI_DOUBLE, s->chain_prev, CHAIN_TAG, run->comm, MPI_STATUS_IGNORE);
  if (head[0] != 0)
    return FH_FAIL(FH_ERR_DIVERGED, "pfedafm.mode = authors_code: a client before this one in the round's "
                                    "chain failed (rank %d); its error is reported there", s->chain_prev);
  s->sh_steps[0] = head[1], s->sh_steps[1] = head[2];
  MPI_Recv(s->sh, (int)s->sh_n, MPI_FLOAT, s->chain_prev, CHAIN_TAG, run->comm, MPI_STATUS_IGNORE);
  return 0;
}

static int pfedafm_client_update_authors(fh_run *run, fh_client_ctx *c, fh_client_report *rep);

static int pfedafm_client_update(fh_run *run, fh_client_ctx *c, fh_accum *acc, fh_client_report *rep) {
  pfedafm_state *s = run->alg_state;
  if (s->authors) {
    if (s->chain_round != c->round) chain_plan(run, s, c->round);
    int rc = c->id == s->chain_first ? chain_recv(run, s) : 0;
    if (rc == 0) rc = pfedafm_client_update_authors(run, c, rep);
    if (rc || c->id == s->chain_last) chain_send(run, s, rc != 0);
    return rc;
  }
  fh_hnet *net = fh_hetero_net(&s->h, c->id);
  client_rows r;
  int fresh;
  acquire_model_alpha(run, s, c->id, net, &r);
  r.mom = NULL;
  if (s->keep_mom) r.mom = fh_client_store_acquire(run->state, s->f_mom, c->id, &fresh);
  else if (s->mom_scratch) r.mom = memset(s->mom_scratch, 0, s->mom_n * sizeof(float));
  r.steps = fh_client_store_acquire(run->state, s->f_steps, c->id, &fresh);
  r.score = fh_client_store_acquire(run->state, s->f_score, c->id, &fresh);
  long long st[FH_AFM_NSTEPS];
  for (int i = 0; i < FH_AFM_NSTEPS; i++) st[i] = s->keep_mom ? (long long)r.steps[i] : 0;
  float *mom_f = NULL, *mom_a = NULL, *mom_g = NULL;
  if (r.mom) {
    mom_f = s->h.tr.opt.momentum > 0 ? r.mom : NULL;
    mom_a = s->ctx.alpha_opt.momentum > 0 ? r.mom + s->h.max_np : NULL;
    mom_g = s->h.tr.opt.momentum > 0 ? r.mom + s->h.max_np + s->d : NULL;
  }

  fh_hnet_load(net, r.model);
  load_g(s, run->global);
  const fh_split *tr = &c->data->train;
  fh_rng rng;
  fh_rng_init(&rng, run->seed, FH_RNG_SHUFFLE, (uint32_t)c->id, (uint32_t)c->round);
  fh_hetero_begin(&s->h, tr, &rng); /* one augmentation stream through both steps */
  int rc = fh_afm_step1(&s->ctx, net, tr, &rng, r.alpha, mom_f, mom_a, st, &rep->train_loss);
  if (rc == 0) {
    double correct = 0, loss = 0;
    fh_afm_evaluate(&s->ctx, net, r.alpha, &c->data->test, &correct, &loss);
    r.score[SC_CORRECT] = correct, r.score[SC_COUNT] = c->data->test.n, r.score[SC_LOSS] = loss;
    r.score[SC_SET] = 1;
    log_alpha(s, c, r.alpha);
    rc = fh_afm_step2(&s->ctx, net, tr, &rng, mom_g, st);
  }
  if (rc == 0) {
    fh_hnet_store(net, r.model);
    for (int i = 0; i < FH_AFM_NSTEPS; i++) r.steps[i] = (double)st[i];
  }
  const int dirty = rc == 0;
  int rr = release_model_alpha(run, s, c->id, dirty || r.dirty_model), r2;
  if (s->keep_mom && (r2 = fh_client_store_release(run->state, s->f_mom, c->id, dirty)) && !rr) rr = r2;
  if ((r2 = fh_client_store_release(run->state, s->f_steps, c->id, dirty)) && !rr) rr = r2;
  if ((r2 = fh_client_store_release(run->state, s->f_score, c->id, dirty)) && !rr) rr = r2;
  FH_TRY(rc);
  FH_TRY(rr);
  rep->weight = (double)tr->n;
  /* G_k's state: its parameters and buffers, contiguous in G's model only
   * without buffers */
  if (s->g.ex_nb == 0) return fh_accum_add(acc, fh_model_params(s->g.ex), rep->weight);
  if (!s->contrib) s->contrib = fh_malloc(s->g_n * sizeof(float));
  fh_model_store_state(s->g.ex, s->contrib);
  return fh_accum_add(acc, s->contrib, rep->weight);
}

/* One client as the authors' loop trains it: alpha from the chain (ones for
 * a client never trained: their ALPHA[k] starts as torch.ones and becomes the
 * shared Parameter after the client's first round), F_k's momentum from zero,
 * alpha's and G's optimisers those of the chain; G from the round's G^t. */
static int pfedafm_client_update_authors(fh_run *run, fh_client_ctx *c, fh_client_report *rep) {
  pfedafm_state *s = run->alg_state;
  const int d = s->d;
  fh_hnet *net = fh_hetero_net(&s->h, c->id);
  client_rows r;
  int fresh_score;
  acquire_model_alpha(run, s, c->id, net, &r);
  r.steps = fh_client_store_acquire(run->state, s->f_steps, c->id, NULL);
  r.score = fh_client_store_acquire(run->state, s->f_score, c->id, &fresh_score);
  const int trained_before = !fresh_score && r.score[SC_SET] == 1;
  float *sh_alpha = s->sh, *sh_mom_a = s->sh + d, *sh_mom_g = s->sh + 2 * (size_t)d;
  if (trained_before) memcpy(r.alpha, sh_alpha, (size_t)d * sizeof(float));
  else
    for (int j = 0; j < d; j++) r.alpha[j] = 1.0f;
  float *mom_f = NULL;
  if (s->h.tr.opt.momentum > 0) mom_f = memset(s->mom_scratch, 0, s->h.max_np * sizeof(float));
  long long st[FH_AFM_NSTEPS] = {0, (long long)s->sh_steps[0], (long long)s->sh_steps[1]};

  fh_hnet_load(net, r.model);
  load_g(s, run->global);
  const fh_split *tr = &c->data->train;
  fh_rng rng;
  fh_rng_init(&rng, run->seed, FH_RNG_SHUFFLE, (uint32_t)c->id, (uint32_t)c->round);
  fh_hetero_begin(&s->h, tr, &rng);
  int rc = fh_afm_step1(&s->ctx, net, tr, &rng, r.alpha, mom_f, s->ctx.alpha_opt.momentum > 0 ? sh_mom_a : NULL,
                        st, &rep->train_loss);
  if (rc == 0) {
    double correct = 0, loss = 0;
    fh_afm_evaluate(&s->ctx, net, r.alpha, &c->data->test, &correct, &loss);
    r.score[SC_CORRECT] = correct, r.score[SC_COUNT] = c->data->test.n, r.score[SC_LOSS] = loss;
    r.score[SC_SET] = 1;
    log_alpha(s, c, r.alpha);
    rc = fh_afm_step2(&s->ctx, net, tr, &rng, s->h.tr.opt.momentum > 0 ? sh_mom_g : NULL, st);
  }
  if (rc == 0) {
    fh_hnet_store(net, r.model);
    for (int i = 0; i < FH_AFM_NSTEPS; i++) r.steps[i] = (double)st[i];
    memcpy(sh_alpha, r.alpha, (size_t)d * sizeof(float));
    s->sh_steps[0] = (double)st[FH_AFM_STEPS_ALPHA], s->sh_steps[1] = (double)st[FH_AFM_STEPS_G];
    if (c->id == s->chain_last && s->chain_next < 0) fh_model_store_state(s->g.ex, s->g_next);
  }
  const int dirty = rc == 0;
  int rr = release_model_alpha(run, s, c->id, dirty || r.dirty_model), r2;
  if ((r2 = fh_client_store_release(run->state, s->f_steps, c->id, dirty)) && !rr) rr = r2;
  if ((r2 = fh_client_store_release(run->state, s->f_score, c->id, dirty)) && !rr) rr = r2;
  FH_TRY(rc);
  FH_TRY(rr);
  rep->weight = (double)(tr->n + c->data->test.n); /* their n_k: train + validation + test rows */
  return 0;
}

/* authors_code: the rank that trained the round's last client hands the
 * shared state and that client's G to every rank. */
static int pfedafm_server_collective(fh_run *run, const fh_accum *acc) {
  (void)acc;
  pfedafm_state *s = run->alg_state;
  if (!s->authors) return 0;
  int holder = s->chain_holder ? run->rank : -1;
  MPI_Allreduce(MPI_IN_PLACE, &holder, 1, MPI_INT, MPI_MAX, run->comm);
  s->chain_holder = 0;
  s->chain_round = -1;
  if (holder < 0)
    return FH_FAIL(FH_ERR_DIVERGED, "pfedafm.mode = authors_code: no rank holds the round's last client");
  MPI_Bcast(s->sh, (int)s->sh_n, MPI_FLOAT, holder, run->comm);
  MPI_Bcast(s->sh_steps, 2, MPI_DOUBLE, holder, run->comm);
  MPI_Bcast(s->g_next, (int)s->g_n, MPI_FLOAT, holder, run->comm);
  return 0;
}

static int pfedafm_server_step(fh_run *run, const fh_accum *acc) {
  pfedafm_state *s = run->alg_state;
  if (s->authors) /* their aggregation sums references to one module: the last client's G */
    memcpy(run->global, s->g_next, s->g_n * sizeof(float));
  else
    fh_accum_mean(acc, run->global);
  return 0;
}

static int pfedafm_client_evaluate(fh_run *run, fh_client_ctx *c, const fh_split *sp, double *correct,
                                   double *loss_sum) {
  pfedafm_state *s = run->alg_state;
  if (!s->eval_latest && fh_client_store_initialised(run->state, s->f_score, c->id)) {
    double *sc = fh_client_store_acquire(run->state, s->f_score, c->id, NULL);
    const int have = sc[SC_SET] == 1 && sc[SC_COUNT] == sp->n;
    if (have) *correct = sc[SC_CORRECT], *loss_sum = sc[SC_LOSS];
    FH_TRY(fh_client_store_release(run->state, s->f_score, c->id, 0));
    if (have) return 0;
  }
  /* F_k and alpha_k (as they start, for a client not trained yet) with the latest G */
  fh_hnet *net = fh_hetero_net(&s->h, c->id);
  client_rows r;
  acquire_model_alpha(run, s, c->id, net, &r);
  fh_hnet_load(net, r.model);
  load_g(s, run->global);
  *correct = 0, *loss_sum = 0;
  fh_afm_evaluate(&s->ctx, net, r.alpha, sp, correct, loss_sum);
  return release_model_alpha(run, s, c->id, r.dirty_model);
}

static void pfedafm_destroy(fh_run *run) {
  pfedafm_state *s = run->alg_state;
  if (s->g.ex == run->model) s->g.ex = NULL; /* run->model, freed with the run */
  fh_hnet_destroy(&s->g);
  fh_hetero_destroy(&s->h);
  fh_afm_mix_destroy(&s->mix);
  free(s->mom_scratch);
  free(s->contrib);
  free(s->g_next);
  free(s->sampled);
  free(s);
  run->alg_state = NULL;
}

/* Tests: heterogeneous MLPs ending in 16 features take the deck's vectors. */
static const fh_test_case pfedafm_tests[] = {
    {"pfedafm", FH_TEST_RESUME | FH_TEST_DECK, "hetero.models=mlp-32-16,mlp-24-16,mlp-20-16 pfedafm.shared=mlp-16 hetero.epochs=2", "", NULL},
    {"pfedafm+authors", FH_TEST_RESUME_SHORT,
     "hetero.models=mlp-32-16,mlp-24-16,mlp-20-16 pfedafm.shared=mlp-16 hetero.epochs=2 pfedafm.mode=authors_code", "",
     NULL},
    {NULL, 0, NULL, NULL, NULL}};

const fh_algorithm fh_alg_pfedafm = {
    .name = "pfedafm",
    .summary = "pFedAFM: heterogeneous client models mix their features with a shared small extractor "
               "(the only payload)",
    .keys = pfedafm_keys,
    .setup = pfedafm_setup,
    .client_update = pfedafm_client_update,
    .server_step = pfedafm_server_step,
    .server_collective = pfedafm_server_collective,
    .destroy = pfedafm_destroy,
    .client_evaluate = pfedafm_client_evaluate,
    .flags = FH_ALG_NO_GLOBAL_MODEL,
    .tests = pfedafm_tests,
};
