/* FD, federated distillation (Jeong et al. 2018, arXiv:1811.11479), a
 * baseline of pFedAFM's comparisons, model-heterogeneous: clients of any
 * architectures (hetero.models; the feature widths may differ) share per-class
 * mean logits instead of parameters, as PFLlib implements it
 * (TsingZ0/PFLlib, system/flcore/clients/clientfd.py and
 * servers/serverfd.py):
 *
 *   client k:  E epochs of SGD (hetero.*) of its own model on
 *                CE(z, y) + lambda CE(z, softmax(L_y))
 *              (L_y the global mean logits of the sample's class; a sample
 *              of a class without them takes its own softmax(z) as target,
 *              which adds no gradient, as PFLlib's copy of the output does;
 *              both means over the batch); while training it sums the
 *              logits z of every sample it trains on per class (every epoch,
 *              before the step) and sends, per class it saw, the mean
 *              M_kc [C] and a flag
 *   server:    L_c = the mean of M_kc over the round's clients that saw c
 *              (every client counts once, whatever its row count); a class
 *              nobody saw this round has no global logits in the next
 *
 * Payload [L (C*C) | present (C)] down, [M (C*C) | seen (C)] up (weight 1),
 * one reduction: C*C + C floats each way. Clients are scored with their own
 * models (personal). run->model is a Linear(C, C), the payload's shape;
 * model.h5 holds the global mean logits as its weight (row c: class c's) and
 * the presence flags as its bias. Client state: fd.model, fd.momentum,
 * fd.steps. */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/log.h"
#include "core/profile.h"
#include "core/rng.h"
#include "fl/algorithm.h"
#include "fl/blocks/hetero.h"
#include "fl/payload.h"
#include "fl/run.h"
#include "nn/loss.h"

static const fh_key_spec fd_keys[] = {
    {"fd.lambda", FH_T_REAL, "1", 0, 1e6, NULL,
     "weight of the cross-entropy between a sample's logits and the softmax of its class's global mean logits"},
    FH_KEYS_END};

typedef struct {
  fh_hetero h;
  fh_hetero_fields f;
  float lambda;
  int C;
  double *sums, *counts; /* [C*C], [C]: a client's logits per class */
  float *target, *probs, *dsoft; /* [max_batch, C] */
  float *contrib;        /* [payload_n] */
} fd_state;

/* fh_hetero_client_evaluate reads the state as an fh_hetero_alg */
_Static_assert(offsetof(fd_state, h) == offsetof(fh_hetero_alg, h) && offsetof(fd_state, f) == offsetof(fh_hetero_alg, f),
               "the hetero part leads the state");

static int fd_setup(fh_run *run) {
  fd_state *s = fh_calloc(1, sizeof *s);
  run->alg_state = s;
  FH_TRY(fh_hetero_create(&s->h, run));
  FH_TRY(fh_hetero_declare(&s->h, run, "fd", &s->f));
  s->lambda = (float)fh_cfg_real(run->cfg, "fd.lambda");
  const int C = s->C = s->h.C;
  fh_model *shape;
  FH_TRY(fh_model_create_mlp(&shape, C, NULL, 0, C, 1));
  fh_model_free(run->model);
  run->model = shape;
  run->model_n = run->payload_n = fh_model_state_len(shape); /* C*C + C */
  free(run->global);
  run->global = fh_calloc(run->payload_n, sizeof(float)); /* no global logits yet */
  s->sums = fh_malloc((size_t)C * C * sizeof(double));
  s->counts = fh_malloc((size_t)C * sizeof(double));
  const size_t bc = (size_t)s->h.max_batch * C;
  s->target = fh_malloc(bc * sizeof(float));
  s->probs = fh_malloc(bc * sizeof(float));
  s->dsoft = fh_malloc(bc * sizeof(float));
  s->contrib = fh_malloc(run->payload_n * sizeof(float));
  if (run->rank == 0)
    fh_info("fd: per-class mean logits travel: %zu bytes each way per sampled client; client state up to "
            "%.1f MiB per client", run->payload_n * sizeof(float), fh_hetero_client_bytes(&s->h, &s->f) / 1048576.0);
  return 0;
}

/* softmax of z [C] into p */
static void softmax_row(float *p, const float *z, int C) {
  float mx = z[0];
  for (int j = 1; j < C; j++) mx = z[j] > mx ? z[j] : mx;
  double sum = 0;
  for (int j = 0; j < C; j++) sum += exp((double)z[j] - mx);
  for (int j = 0; j < C; j++) p[j] = (float)(exp((double)z[j] - mx) / sum);
}

/* E epochs of CE + lambda CE(z, softmax(L_y)); s->sums, s->counts collect the
 * logits of every sample trained on. */
static int train(fd_state *s, const float *global, fh_hnet *n, const fh_split *tr, fh_rng *rng, float *mom,
                 long long *steps, double *last_loss) {
  fh_hetero *h = &s->h;
  const int C = s->C;
  const float *L = global, *present = global + (size_t)C * C;
  int any = 0;
  for (int c = 0; c < C; c++) any |= present[c] != 0.0f;
  const int distil = any && s->lambda > 0;
  const double flops = fh_hnet_flops_features(n, 1, 0) + fh_hnet_flops_features(n, 1, 1) +
                       fh_hnet_flops_head(n, 1, 0) + fh_hnet_flops_head(n, 1, 1);
  memset(s->sums, 0, (size_t)C * C * sizeof(double));
  memset(s->counts, 0, (size_t)C * sizeof(double));
  double epoch_loss = 0;
  fh_hetero_begin(h, tr, rng);
  for (int e = 0; e < h->tr.epochs; e++) {
    fh_hetero_shuffle(h, tr, rng);
    epoch_loss = 0;
    for (int b0 = 0; b0 < tr->n; b0 += h->tr.batch) {
      const int B = tr->n - b0 < h->tr.batch ? tr->n - b0 : h->tr.batch;
      fh_hetero_gather(h, tr, b0, B);
      const float *feat = fh_hnet_features(n, h->xb, B, 1);
      const float *z = fh_hnet_head_forward(n, feat, B);
      for (int b = 0; b < B; b++) {
        double *row = s->sums + (size_t)h->yb[b] * C;
        for (int j = 0; j < C; j++) row[j] += z[(size_t)b * C + j];
        s->counts[h->yb[b]] += 1;
      }
      double loss = fh_softmax_ce_forward(n->probs, z, h->yb, B, C);
      fh_softmax_ce_backward(n->dlogits, n->probs, h->yb, B, C);
      if (distil) {
        for (int b = 0; b < B; b++) {
          const int c = h->yb[b];
          float *t = s->target + (size_t)b * C;
          if (present[c] != 0.0f) softmax_row(t, L + (size_t)c * C, C);
          else memcpy(t, n->probs + (size_t)b * C, (size_t)C * sizeof(float)); /* its own: no gradient */
        }
        loss += s->lambda * fh_softmax_ce_soft_forward(s->probs, z, s->target, B, C);
        fh_softmax_ce_soft_backward(s->dsoft, s->probs, s->target, B, C);
        for (int b = 0; b < B; b++) /* own target: exactly no gradient (not p * sum(p) - p) */
          if (present[h->yb[b]] == 0.0f) memset(s->dsoft + (size_t)b * C, 0, (size_t)C * sizeof(float));
        for (size_t i = 0; i < (size_t)B * C; i++) n->dlogits[i] += s->lambda * s->dsoft[i];
      }
      fh_hnet_head_backward(n, feat, n->dlogits, n->dfeat, B);
      fh_hnet_features_backward(n, h->xb, n->dfeat, B);
      fh_prof_count_flops(flops * B);
      if (!isfinite(loss))
        return FH_FAIL(FH_ERR_DIVERGED, "fd: the loss of %s became %s at local step %lld; lower hetero.lr (now %g) "
                                        "or fd.lambda",
                       n->arch, isnan(loss) ? "NaN" : "infinite", *steps + 1, (double)h->tr.opt.lr);
      fh_hnet_clip(n, h->tr.clip);
      fh_hnet_sgd_step(n, &h->tr.opt, mom, steps);
      epoch_loss += loss * B;
    }
  }
  *last_loss = tr->n ? epoch_loss / tr->n : 0.0;
  return 0;
}

static int fd_client_update(fh_run *run, fh_client_ctx *c, fh_accum *acc, fh_client_report *rep) {
  fd_state *s = run->alg_state;
  const int C = s->C;
  fh_hetero_rows r;
  fh_hnet *net = fh_hetero_acquire(&s->h, run, &s->f, c->id, 1, &r);
  fh_rng rng;
  fh_rng_init(&rng, run->seed, FH_RNG_SHUFFLE, (uint32_t)c->id, (uint32_t)c->round);
  int rc = train(s, run->global, net, &c->data->train, &rng, r.mom, &r.steps, &rep->train_loss);
  rep->weight = (double)c->data->train.n;
  if (rc == 0) {
    const size_t cc = (size_t)C * C;
    for (int k = 0; k < C; k++) {
      const double n = s->counts[k];
      for (int j = 0; j < C; j++) s->contrib[(size_t)k * C + j] = n > 0 ? (float)(s->sums[(size_t)k * C + j] / n) : 0.0f;
      s->contrib[cc + k] = n > 0 ? 1.0f : 0.0f;
    }
    rc = fh_accum_add(acc, s->contrib, 1.0);
  }
  int rc_r = fh_hetero_release(&s->h, run, &s->f, c->id, rc == 0, &r);
  FH_TRY(rc);
  return rc_r;
}

static int fd_server_step(fh_run *run, const fh_accum *acc) {
  fd_state *s = run->alg_state;
  const int C = s->C;
  const size_t cc = (size_t)C * C;
  for (int k = 0; k < C; k++) {
    const double m = (double)acc->sum[cc + k] / acc->scale; /* clients that saw class k */
    const int on = m > 0.5;
    for (int j = 0; j < C; j++)
      run->global[(size_t)k * C + j] = on ? (float)((double)acc->sum[(size_t)k * C + j] / acc->scale / m) : 0.0f;
    run->global[cc + k] = on ? 1.0f : 0.0f;
  }
  return 0;
}

static void fd_destroy(fh_run *run) {
  fd_state *s = run->alg_state;
  fh_hetero_destroy(&s->h);
  free(s->sums);
  free(s->counts);
  free(s->target);
  free(s->probs);
  free(s->dsoft);
  free(s->contrib);
  free(s);
  run->alg_state = NULL;
}

/* Tests: heterogeneous MLPs ending in 16 features take the deck's vectors. */
static const fh_test_case fd_tests[] = {
    {"fd", FH_TEST_RESUME_SHORT | FH_TEST_DECK, FH_HETERO_TEST_SETTINGS, "", NULL},
    {NULL, 0, NULL, NULL, NULL}};

const fh_algorithm fh_alg_fd = {
    .name = "fd",
    .summary = "FD: heterogeneous clients share per-class mean logits and distil towards them",
    .keys = fd_keys,
    .setup = fd_setup,
    .client_update = fd_client_update,
    .server_step = fd_server_step,
    .destroy = fd_destroy,
    .client_evaluate = fh_hetero_client_evaluate,
    .flags = FH_ALG_NO_GLOBAL_MODEL,
    .tests = fd_tests,
};
