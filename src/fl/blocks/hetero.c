/* The machinery shared by the model-heterogeneous methods (see hetero.h):
 * the [hetero] keys, per-architecture networks split into extractor and
 * header, their passes, optimiser steps and minibatches. */
#include "fl/blocks/hetero.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/profile.h"
#include "fl/client_state.h"
#include "fl/payload.h"
#include "fl/run.h"
#include "nn/layer.h"
#include "nn/loss.h"

const fh_key_spec fh_hetero_keys[] = {
    {"hetero.models", FH_T_STRLIST, "cnn1,cnn2,cnn3,cnn4,cnn5", 0, 0, NULL,
     "model-heterogeneous methods: client k's architecture is entry k mod n; a model.arch name "
     "(cnn1..cnn5 for 3x32x32 samples; mlp = model.hidden) or mlp-H1-H2-... (an MLP with those "
     "hidden widths)"},
    {"hetero.epochs", FH_T_INT, "10", 1, 100000, NULL,
     "model-heterogeneous methods: local epochs E per round (pFedAFM: per step)"},
    {"hetero.lr", FH_T_REAL, "0.01", 0, 1e6, NULL, "model-heterogeneous methods: SGD learning rate"},
    {"hetero.momentum", FH_T_REAL, "0.9", 0, 1, NULL, "model-heterogeneous methods: SGD momentum"},
    {"hetero.weight_decay", FH_T_REAL, "0.001", 0, 1e6, NULL,
     "model-heterogeneous methods: L2 weight decay added to the gradient"},
    {"hetero.clip_norm", FH_T_REAL, "50", 0, 1e12, NULL,
     "model-heterogeneous methods: gradient-norm clipping of every step (0 = off)"},
    {"hetero.optimizer_state", FH_T_ENUM, "client", 0, 0, "client|round",
     "client: each client keeps its optimisers' momentum across rounds (client state); round: "
     "momentum starts at zero every round (less memory)"},
    FH_KEYS_END};

/* ---- one architecture ------------------------------------------------------------ */

#define FH_HETERO_MAX_HIDDEN 64

/* "mlp-256-64" -> widths; 0 when arch is not of that form, -1 when malformed. */
static int parse_mlp(const char *arch, int *hidden) {
  if (strncmp(arch, "mlp-", 4) != 0) return 0;
  int n = 0;
  const char *p = arch + 4;
  if (!*p) return -1;
  while (*p) {
    char *end;
    long w = strtol(p, &end, 10);
    if (end == p || w < 1 || w > 1000000 || n == FH_HETERO_MAX_HIDDEN || (*end && *end != '-'))
      return -1;
    hidden[n++] = (int)w;
    p = *end ? end + 1 : end;
    if (*end && !*p) return -1; /* trailing '-' */
  }
  return n;
}

int fh_hnet_create(fh_hnet *n, const fh_config *cfg, const char *arch, int in_c, int in_h, int in_w,
                   int num_classes, int max_batch, int build) {
  memset(n, 0, sizeof *n);
  if (strlen(arch) >= sizeof n->arch)
    return FH_FAIL(FH_ERR_CONFIG, "hetero.models: architecture name '%s' is too long", arch);
  snprintf(n->arch, sizeof n->arch, "%s", arch);
  int hidden[FH_HETERO_MAX_HIDDEN];
  const int nh = parse_mlp(arch, hidden);
  fh_model *full = NULL;
  if (nh < 0)
    return FH_FAIL(FH_ERR_CONFIG, "hetero.models: '%s' is not mlp-H1-H2-... with widths from 1 to "
                                  "1000000 (at most %d); write e.g. mlp-256-64", arch, FH_HETERO_MAX_HIDDEN);
  if (nh > 0)
    FH_TRY(fh_model_create_mlp(&full, in_c * in_h * in_w, hidden, nh, num_classes, 1));
  else
    FH_TRY(fh_model_create_arch(&full, cfg, arch, in_c, in_h, in_w, num_classes, 1));
  const int hv = fh_model_header_first_view(full);
  const fh_param_view *W = fh_model_view(full, hv);
  n->d = fh_model_feature_dim(full);
  n->C = num_classes;
  if (fh_model_nviews(full) - hv != 2 || W->numel != (size_t)n->d * n->C || fh_model_nlayers(full) < 2) {
    fh_model_free(full);
    return FH_FAIL(FH_ERR_CONFIG, "hetero.models: '%s' has no feature extractor followed by one Linear "
                                  "header; give it hidden layers (mlp-H1-...)", arch);
  }
  n->ex_np = W->offset;
  n->ex_nb = fh_model_nbuffers(full);
  n->head_n = (size_t)n->d * n->C + (size_t)n->C;
  n->np = n->ex_np + n->head_n;
  n->state_n = n->np + n->ex_nb;
  if (!build) {
    fh_model_free(full);
    return 0;
  }
  n->full = full;
  n->max_batch = max_batch;
  FH_TRY(fh_model_create_extractor(&n->ex, full, max_batch));
  n->head = fh_calloc(n->head_n, sizeof(float));
  n->head_grad = fh_calloc(n->head_n, sizeof(float));
  n->logits = fh_malloc((size_t)max_batch * n->C * sizeof(float));
  n->probs = fh_malloc((size_t)max_batch * n->C * sizeof(float));
  n->dlogits = fh_malloc((size_t)max_batch * n->C * sizeof(float));
  n->dfeat = fh_malloc((size_t)max_batch * n->d * sizeof(float));
  return 0;
}

void fh_hnet_destroy(fh_hnet *n) {
  fh_model_free(n->full);
  fh_model_free(n->ex);
  free(n->head);
  free(n->head_grad);
  free(n->logits);
  free(n->probs);
  free(n->dlogits);
  free(n->dfeat);
  memset(n, 0, sizeof *n);
}

/* ---- the run's architectures -------------------------------------------------------- */

int fh_hetero_create(fh_hetero *h, fh_run *run) {
  memset(h, 0, sizeof *h);
  const fh_config *cfg = run->cfg;
  const char *const *names;
  const int n = fh_cfg_strlist(cfg, "hetero.models", &names);
  if (n < 1) return FH_FAIL(FH_ERR_CONFIG, "hetero.models is empty; name at least one architecture");
  if (fh_cfg_int(cfg, "train.iterations") > 0)
    return FH_FAIL(FH_ERR_CONFIG, "run.algorithm = %s trains hetero.epochs passes over a client's rows; "
                                  "train.iterations = %lld is not honoured: remove it",
                   run->alg->name, fh_cfg_int(cfg, "train.iterations"));
  const fh_dataset *ds = run->data;
  h->C = ds->num_classes;
  h->dim = ds->dim;
  h->tr.epochs = (int)fh_cfg_int(cfg, "hetero.epochs");
  h->tr.batch = (int)fh_cfg_int(cfg, "train.batch_size");
  h->tr.opt.lr = (float)fh_cfg_real(cfg, "hetero.lr");
  h->tr.opt.momentum = (float)fh_cfg_real(cfg, "hetero.momentum");
  h->tr.opt.weight_decay = (float)fh_cfg_real(cfg, "hetero.weight_decay");
  h->tr.clip = fh_cfg_real(cfg, "hetero.clip_norm");
  h->tr.keep_momentum = strcmp(fh_cfg_str(cfg, "hetero.optimizer_state"), "client") == 0;
  const int evb = (int)fh_cfg_int(cfg, "run.eval_batch");
  const int max_batch = h->tr.batch > evb ? h->tr.batch : evb;
  h->max_batch = max_batch;

  h->narch = n;
  h->nets = fh_calloc((size_t)n, sizeof *h->nets);
  int *used = fh_calloc((size_t)n, sizeof(int));
  /* the architectures of the clients hosted here; all of them when any
   * client may run here (run.schedule = balanced, src/fl/schedule.h) */
  const int any = fh_cfg_enum(cfg, "run.schedule") == 1; /* static|balanced */
  for (int i = 0; i < (any ? n : run->nlocal); i++) used[any ? i : (run->first_client + i) % n] = 1;
  int rc = 0;
  h->d = -2;
  for (int a = 0; a < n && rc == 0; a++) {
    rc = fh_hnet_create(&h->nets[a], cfg, names[a], ds->c, ds->h, ds->w, ds->num_classes, max_batch, used[a]);
    if (rc) {
      fh_error_prefix("hetero.models entry %d: ", a + 1);
      break;
    }
    const fh_hnet *net = &h->nets[a];
    if (net->np > h->max_np) h->max_np = net->np;
    if (net->state_n > h->max_state) h->max_state = net->state_n;
    h->d = h->d == -2 || h->d == net->d ? net->d : -1;
  }
  free(used);
  FH_TRY(rc);
  h->xb = fh_malloc((size_t)h->tr.batch * h->dim * sizeof(float));
  h->yb = fh_malloc((size_t)h->tr.batch * sizeof(int32_t));
  return 0;
}

void fh_hetero_destroy(fh_hetero *h) {
  for (int a = 0; a < h->narch; a++) fh_hnet_destroy(&h->nets[a]);
  free(h->nets);
  free(h->xb);
  free(h->yb);
  free(h->order);
  free(h->mom_scratch);
  memset(h, 0, sizeof *h);
}

int fh_hetero_arch_index(const fh_hetero *h, int client) { return client % h->narch; }

fh_hnet *fh_hetero_net(fh_hetero *h, int client) {
  fh_hnet *n = &h->nets[client % h->narch];
  if (!n->ex) {
    fprintf(stderr, "fedhpc: internal error: client %d's architecture %s is not built on this rank\n", client,
            n->arch);
    abort();
  }
  return n;
}

int fh_hetero_need_common_d(const fh_hetero *h, const char *who) {
  if (h->d > 0) return 0;
  char list[512] = "";
  size_t used = 0;
  for (int a = 0; a < h->narch && used < sizeof list; a++)
    used += (size_t)snprintf(list + used, sizeof list - used, "%s%s %d", a ? ", " : "", h->nets[a].arch,
                             h->nets[a].d);
  return FH_FAIL(FH_ERR_CONFIG, "run.algorithm = %s needs every architecture of hetero.models to end in "
                                "features of one width, but they give %s",
                 who, list);
}

/* ---- state --------------------------------------------------------------------------- */

void fh_hnet_load(fh_hnet *n, const float *state) {
  memcpy(fh_model_params(n->ex), state, n->ex_np * sizeof(float));
  memcpy(n->head, state + n->ex_np, n->head_n * sizeof(float));
  if (n->ex_nb) memcpy(fh_model_buffers(n->ex), state + n->np, n->ex_nb * sizeof(float));
}

void fh_hnet_store(fh_hnet *n, float *state) {
  memcpy(state, fh_model_params(n->ex), n->ex_np * sizeof(float));
  memcpy(state + n->ex_np, n->head, n->head_n * sizeof(float));
  if (n->ex_nb) memcpy(state + n->np, fh_model_buffers(n->ex), n->ex_nb * sizeof(float));
}

void fh_hnet_init_state(fh_hnet *n, fh_rng *r, float *state) {
  fh_model_init(n->full, r);
  fh_model_store_state(n->full, state); /* params, then buffers: the layout of hetero.h */
}

void fh_hnet_init_client(fh_hnet *n, uint64_t seed, int client, float *state) {
  fh_rng r;
  fh_rng_init(&r, seed, FH_RNG_INIT, (uint32_t)client, FH_RNG_NONE);
  fh_hnet_init_state(n, &r, state);
}

/* ---- passes ------------------------------------------------------------------------- */

const float *fh_hnet_features(fh_hnet *n, const float *x, int B, int train) {
  return fh_model_forward(n->ex, x, B, train);
}

const float *fh_hnet_head_forward(fh_hnet *n, const float *feat, int B) {
  fh_linear_forward(n->logits, feat, n->head, n->head + (size_t)n->C * n->d, B, n->d, n->C);
  return n->logits;
}

void fh_hnet_head_backward(fh_hnet *n, const float *feat, const float *dlogits, float *dfeat, int B) {
  memset(n->head_grad, 0, n->head_n * sizeof(float)); /* the kernel accumulates */
  fh_linear_backward(dfeat, n->head_grad, n->head_grad + (size_t)n->C * n->d, dlogits, feat, n->head, B, n->d,
                     n->C);
}

void fh_hnet_features_backward(fh_hnet *n, const float *x, const float *dfeat, int B) {
  fh_model_backward(n->ex, x, dfeat, B);
}

const float *fh_hnet_forward(fh_hnet *n, const float *x, int B, int train) {
  return fh_hnet_head_forward(n, fh_hnet_features(n, x, B, train), B);
}

float fh_hnet_loss_grad(fh_hnet *n, const float *x, const int32_t *y, int B, const float *extra_dfeat) {
  const float *feat = fh_hnet_features(n, x, B, 1);
  const float *logits = fh_hnet_head_forward(n, feat, B);
  const double loss = fh_softmax_ce_forward(n->probs, logits, y, B, n->C);
  fh_softmax_ce_backward(n->dlogits, n->probs, y, B, n->C);
  fh_hnet_head_backward(n, feat, n->dlogits, n->dfeat, B);
  if (extra_dfeat)
    for (size_t i = 0; i < (size_t)B * n->d; i++) n->dfeat[i] += extra_dfeat[i];
  fh_hnet_features_backward(n, x, n->dfeat, B);
  return (float)loss;
}

double fh_hnet_score(fh_hnet *n, const float *logits, const int32_t *y, int B, double *correct) {
  const int C = n->C;
  const double loss = fh_softmax_ce_forward(n->probs, logits, y, B, C) * B;
  for (int b = 0; b < B; b++) {
    const float *z = logits + (size_t)b * C;
    int best = 0;
    for (int j = 1; j < C; j++)
      if (z[j] > z[best]) best = j;
    *correct += best == y[b];
  }
  return loss;
}

void fh_hnet_evaluate(fh_hnet *n, const fh_split *sp, double *correct, double *loss_sum) {
  const size_t dim = fh_model_input_size(n->ex);
  for (int s = 0; s < sp->n; s += n->max_batch) {
    const int B = sp->n - s < n->max_batch ? sp->n - s : n->max_batch;
    const float *logits = fh_hnet_forward(n, sp->x + (size_t)s * dim, B, 0);
    *loss_sum += fh_hnet_score(n, logits, sp->y + s, B, correct);
  }
}

void fh_hnet_prototypes(fh_hnet *n, const fh_split *sp, double *sums, double *counts) {
  const size_t dim = fh_model_input_size(n->ex);
  for (int s = 0; s < sp->n; s += n->max_batch) {
    const int B = sp->n - s < n->max_batch ? sp->n - s : n->max_batch;
    const float *h = fh_hnet_features(n, sp->x + (size_t)s * dim, B, 0);
    for (int b = 0; b < B; b++) {
      const int c = sp->y[s + b];
      double *row = sums + (size_t)c * n->d;
      for (int j = 0; j < n->d; j++) row[j] += h[(size_t)b * n->d + j];
      counts[c] += 1;
    }
  }
  fh_prof_count_flops(fh_hnet_flops_features(n, sp->n, 0));
}

double fh_hnet_flops_features(const fh_hnet *n, int B, int backward) {
  return backward ? fh_model_flops_backward(n->ex, B) : fh_model_flops_forward(n->ex, B);
}

double fh_hnet_flops_head(const fh_hnet *n, int B, int backward) {
  return (backward ? 4.0 : 2.0) * B * n->d * n->C; /* backward: dW and dx */
}

/* ---- optimiser steps --------------------------------------------------------------- */

double fh_hnet_clip(fh_hnet *n, double max_norm) {
  float *g = fh_model_grads(n->ex);
  double ss = 0.0;
  for (size_t i = 0; i < n->ex_np; i++) ss += (double)g[i] * g[i];
  for (size_t i = 0; i < n->head_n; i++) ss += (double)n->head_grad[i] * n->head_grad[i];
  const double norm = sqrt(ss);
  if (max_norm <= 0) return norm;
  /* as torch: scale by max_norm / (norm + 1e-6) when that is below one */
  const double coef = max_norm / (norm + 1e-6);
  if (coef < 1.0) {
    const float c = (float)coef;
    for (size_t i = 0; i < n->ex_np; i++) g[i] *= c;
    for (size_t i = 0; i < n->head_n; i++) n->head_grad[i] *= c;
  }
  return norm;
}

void fh_hnet_sgd_step(fh_hnet *n, const fh_sgd *opt, float *mom, long long *steps) {
  long long s = *steps; /* one step of both spans: the first sets the buffer to g */
  fh_sgd_step(opt, fh_model_params(n->ex), fh_model_grads(n->ex), mom, n->ex_np, &s);
  s = *steps;
  fh_sgd_step(opt, n->head, n->head_grad, mom ? mom + n->ex_np : NULL, n->head_n, &s);
  ++*steps;
}

/* ---- minibatches -------------------------------------------------------------------- */

void fh_hetero_shuffle(fh_hetero *h, const fh_split *sp, fh_rng *rng) {
  if (sp->n > h->max_n) {
    free(h->order);
    h->order = fh_malloc((size_t)sp->n * sizeof(int));
    h->max_n = sp->n;
  }
  fh_rng_permutation(rng, h->order, sp->n);
}

void fh_hetero_begin(fh_hetero *h, const fh_split *sp, const fh_rng *rng) {
  h->aug_split = sp;
  if (sp->augment) fh_rng_derive(&h->aug_rng, rng, FH_RNG_AUGMENT);
}

void fh_hetero_gather(fh_hetero *h, const fh_split *sp, int start, int B) {
  const size_t row = (size_t)h->dim * sizeof(float);
  for (int i = 0; i < B; i++) {
    const int s = h->order[start + i];
    memcpy(h->xb + (size_t)i * h->dim, sp->x + (size_t)s * h->dim, row);
    h->yb[i] = sp->y[s];
  }
  const fh_augment *aug = sp->augment;
  if (!aug) return;
  if (h->aug_split != sp) {
    fprintf(stderr, "fedhpc: internal error: an augmented split is gathered without fh_hetero_begin\n");
    abort();
  }
  fh_augment_batch(aug, h->xb, B, aug->c, aug->h, aug->w, &h->aug_rng);
}

int fh_hetero_train_ce(fh_hetero *h, fh_hnet *n, const fh_split *sp, fh_rng *rng, float *mom,
                       long long *steps, double *last_loss) {
  double epoch_loss = 0.0;
  fh_hetero_begin(h, sp, rng);
  const double flops_per_sample = fh_hnet_flops_features(n, 1, 0) + fh_hnet_flops_features(n, 1, 1) +
                                  fh_hnet_flops_head(n, 1, 0) + fh_hnet_flops_head(n, 1, 1);
  for (int e = 0; e < h->tr.epochs; e++) {
    fh_hetero_shuffle(h, sp, rng);
    epoch_loss = 0.0;
    for (int start = 0; start < sp->n; start += h->tr.batch) {
      const int B = sp->n - start < h->tr.batch ? sp->n - start : h->tr.batch;
      fh_hetero_gather(h, sp, start, B);
      const float loss = fh_hnet_loss_grad(n, h->xb, h->yb, B, NULL);
      fh_prof_count_flops(flops_per_sample * B);
      if (!isfinite(loss))
        return FH_FAIL(FH_ERR_DIVERGED, "training loss of %s became %s at local step %lld; lower hetero.lr "
                                        "(now %g)",
                       n->arch, isnan(loss) ? "NaN" : "infinite", *steps + 1, (double)h->tr.opt.lr);
      fh_hnet_clip(n, h->tr.clip);
      fh_hnet_sgd_step(n, &h->tr.opt, mom, steps);
      epoch_loss += (double)loss * B;
    }
  }
  *last_loss = sp->n > 0 ? epoch_loss / sp->n : 0.0;
  return 0;
}

/* ---- a client's own model in the store ------------------------------------------ */

int fh_hetero_declare(fh_hetero *h, fh_run *run, const char *prefix, fh_hetero_fields *f) {
  char name[64];
  snprintf(name, sizeof name, "%s.model", prefix);
  FH_TRY(fh_client_store_field(run->state, name, FH_STATE_F32, h->max_state, &f->model));
  f->mom = -1;
  if (h->tr.opt.momentum > 0 && h->tr.keep_momentum) {
    snprintf(name, sizeof name, "%s.momentum", prefix);
    FH_TRY(fh_client_store_field(run->state, name, FH_STATE_F32, h->max_np, &f->mom));
  } else if (h->tr.opt.momentum > 0 && !h->mom_scratch) {
    h->mom_scratch = fh_malloc(h->max_np * sizeof(float));
  }
  snprintf(name, sizeof name, "%s.steps", prefix);
  return fh_client_store_field(run->state, name, FH_STATE_F64, 1, &f->steps);
}

fh_hnet *fh_hetero_acquire(fh_hetero *h, fh_run *run, const fh_hetero_fields *f, int client,
                           int with_optimizer, fh_hetero_rows *r) {
  memset(r, 0, sizeof *r);
  fh_hnet *net = fh_hetero_net(h, client);
  r->model = fh_client_store_acquire(run->state, f->model, client, &r->fresh);
  if (r->fresh) fh_hnet_init_client(net, run->seed, client, r->model);
  fh_hnet_load(net, r->model);
  if (!with_optimizer) return net;
  int fresh;
  r->steps_row = fh_client_store_acquire(run->state, f->steps, client, &fresh);
  if (f->mom >= 0) {
    r->mom = fh_client_store_acquire(run->state, f->mom, client, &fresh);
    r->steps = (long long)r->steps_row[0];
  } else if (h->mom_scratch) {
    r->mom = memset(h->mom_scratch, 0, h->max_np * sizeof(float));
  }
  return net;
}

int fh_hetero_release(fh_hetero *h, fh_run *run, const fh_hetero_fields *f, int client, int trained,
                      fh_hetero_rows *r) {
  fh_hnet *net = fh_hetero_net(h, client);
  if (trained) fh_hnet_store(net, r->model);
  int rc = fh_client_store_release(run->state, f->model, client, trained || r->fresh);
  if (r->steps_row) {
    if (trained) r->steps_row[0] = (double)r->steps;
    int rc2 = fh_client_store_release(run->state, f->steps, client, trained);
    if (rc == 0) rc = rc2;
    if (f->mom >= 0) {
      rc2 = fh_client_store_release(run->state, f->mom, client, trained);
      if (rc == 0) rc = rc2;
    }
  }
  return rc;
}

double fh_hetero_client_bytes(const fh_hetero *h, const fh_hetero_fields *f) {
  return 4.0 * (double)h->max_state + (f->mom >= 0 ? 4.0 * (double)h->max_np : 0.0) + 8.0;
}

int fh_hetero_evaluate(fh_hetero *h, fh_run *run, const fh_hetero_fields *f, int client, const fh_split *sp,
                       double *correct, double *loss_sum) {
  fh_hetero_rows r;
  fh_hnet *net = fh_hetero_acquire(h, run, f, client, 0, &r);
  *correct = 0, *loss_sum = 0;
  fh_hnet_evaluate(net, sp, correct, loss_sum);
  return fh_hetero_release(h, run, f, client, 0, &r);
}

int fh_hetero_client_evaluate(fh_run *run, fh_client_ctx *c, const fh_split *sp, double *correct,
                              double *loss_sum) {
  fh_hetero_alg *a = run->alg_state;
  return fh_hetero_evaluate(&a->h, run, &a->f, c->id, sp, correct, loss_sum);
}
