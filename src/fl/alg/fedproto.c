/* FedProto (Tan et al., AAAI 2022, arXiv:2105.00243), model-heterogeneous:
 * clients of different architectures (hetero.models, one feature width d)
 * share class prototypes, the mean feature vector of each class, instead of
 * parameters.
 *
 *   client k:  E epochs of SGD (hetero.*) of its own model on
 *                CE(z, y) + lambda MSE(h, P_y)
 *              (h the features before its header, P_y the global prototype of
 *              the sample's class, for the classes that have one; MSE as
 *              torch's mean over the batch and d); then one pass over its
 *              train split in evaluation mode: per class c the feature sum
 *              S_kc [d] and count n_kc, which it sends
 *   server:    P_c = sum_k S_kc / sum_k n_kc (the count-weighted mean of the
 *              clients' prototypes), for every class some client holds
 *
 * Payload [P (C*d) | present (C)] down, [S (C*d) | n (C)] up (weight 1), one
 * reduction. Clients are scored as the authors' code scores them
 * (fedproto.eval = proto): a sample's prediction is the class whose global
 * prototype is nearest to its features under the client's extractor
 * (squared Euclidean distance; classes without a prototype are never
 * predicted, and before the first prototype arrives the header predicts);
 * fedproto.eval = local takes the client's own class means over its train
 * split (its model in evaluation mode) as the prototypes instead, and
 * fedproto.eval = model scores the client's whole model, header included.
 * The loss reported is the whole model's cross-entropy either way.
 * run->model is a Linear(d, C), the payload's shape; model.h5 holds the
 * nearest-prototype classifier of features as that layer: W_c = 2 P_c and
 * b_c = -|P_c|^2 (argmax of W h + b = argmin |h - P_c|^2), b_c = -1e30 for a
 * class without a prototype.
 * Client state: fedproto.model, fedproto.momentum, fedproto.steps. */
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

static const fh_key_spec fedproto_keys[] = {
    {"fedproto.lambda", FH_T_REAL, "1", 0, 1e6, NULL,
     "weight of the MSE between a sample's features and its class's global prototype"},
    {"fedproto.eval", FH_T_ENUM, "proto", 0, 0, "proto|local|model",
     "how a client's model predicts in evaluations: proto, the nearest global prototype to the sample's "
     "features (the authors' inference); local, the nearest of the client's own class means on its train "
     "split; model, its header"},
    FH_KEYS_END};

typedef struct {
  fh_hetero h;
  fh_hetero_fields f;
  float lambda;
  int C, d;
  int by_proto;          /* fedproto.eval: 1 proto, 2 local, 0 model */
  double *sums, *counts; /* [C*d], [C] a client's prototypes */
  float *contrib;        /* [payload_n] */
  float *classifier;     /* [C*d + C] model.h5's layer; the local prototypes */
} fedproto_state;

/* fh_hetero_client_evaluate reads the state as an fh_hetero_alg */
_Static_assert(offsetof(fedproto_state, h) == offsetof(fh_hetero_alg, h) && offsetof(fedproto_state, f) == offsetof(fh_hetero_alg, f),
               "the hetero part leads the state");

static int fedproto_setup(fh_run *run) {
  fedproto_state *s = fh_calloc(1, sizeof *s);
  run->alg_state = s;
  FH_TRY(fh_hetero_create(&s->h, run));
  FH_TRY(fh_hetero_need_common_d(&s->h, "fedproto"));
  FH_TRY(fh_hetero_declare(&s->h, run, "fedproto", &s->f));
  s->lambda = (float)fh_cfg_real(run->cfg, "fedproto.lambda");
  static const int by_proto[] = {1, 2, 0}; /* fedproto.eval = proto|local|model */
  s->by_proto = by_proto[fh_cfg_enum(run->cfg, "fedproto.eval")];
  s->C = s->h.C, s->d = s->h.d;
  fh_model *shape;
  FH_TRY(fh_model_create_mlp(&shape, s->d, NULL, 0, s->C, 1));
  fh_model_free(run->model);
  run->model = shape;
  run->model_n = run->payload_n = fh_model_state_len(shape); /* C*d + C */
  free(run->global);
  run->global = fh_calloc(run->payload_n, sizeof(float)); /* no prototype yet */
  s->sums = fh_malloc((size_t)s->C * s->d * sizeof(double));
  s->counts = fh_malloc((size_t)s->C * sizeof(double));
  s->contrib = fh_malloc(run->payload_n * sizeof(float));
  s->classifier = fh_malloc(run->payload_n * sizeof(float));
  if (run->rank == 0)
    fh_info("fedproto: class prototypes travel: %zu bytes each way per sampled client; client state up to "
            "%.1f MiB per client", run->payload_n * sizeof(float),
            fh_hetero_client_bytes(&s->h, &s->f) / 1048576.0);
  return 0;
}

/* E epochs of CE + lambda MSE(h, P_y). */
static int train(fedproto_state *s, const float *global, fh_hnet *n, const fh_split *tr, fh_rng *rng, float *mom,
                 long long *steps, double *last_loss) {
  fh_hetero *h = &s->h;
  const int C = s->C, d = s->d;
  const float *P = global, *present = global + (size_t)C * d;
  const double flops = fh_hnet_flops_features(n, 1, 0) + fh_hnet_flops_features(n, 1, 1) +
                       fh_hnet_flops_head(n, 1, 0) + fh_hnet_flops_head(n, 1, 1);
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
      double loss = fh_softmax_ce_forward(n->probs, z, h->yb, B, C);
      fh_softmax_ce_backward(n->dlogits, n->probs, h->yb, B, C);
      fh_hnet_head_backward(n, feat, n->dlogits, n->dfeat, B);
      /* lambda mean over B*d of (h - P_y)^2, rows of classes without a
       * prototype counting as zeros (torch's MSE against h itself) */
      const float k = (float)(2.0 * s->lambda / ((double)B * d));
      double mse = 0;
      for (int b = 0; b < B; b++) {
        const int c = h->yb[b];
        if (present[c] == 0.0f) continue;
        for (int j = 0; j < d; j++) {
          const float diff = feat[(size_t)b * d + j] - P[(size_t)c * d + j];
          mse += (double)diff * diff;
          n->dfeat[(size_t)b * d + j] += k * diff;
        }
      }
      loss += s->lambda * mse / ((double)B * d);
      fh_hnet_features_backward(n, h->xb, n->dfeat, B);
      fh_prof_count_flops(flops * B);
      if (!isfinite(loss))
        return FH_FAIL(FH_ERR_DIVERGED, "fedproto: the loss of %s became %s at local step %lld; lower hetero.lr "
                                        "(now %g) or fedproto.lambda",
                       n->arch, isnan(loss) ? "NaN" : "infinite", *steps + 1, (double)h->tr.opt.lr);
      fh_hnet_clip(n, h->tr.clip);
      fh_hnet_sgd_step(n, &h->tr.opt, mom, steps);
      epoch_loss += loss * B;
    }
  }
  *last_loss = tr->n ? epoch_loss / tr->n : 0.0;
  return 0;
}

static int fedproto_client_update(fh_run *run, fh_client_ctx *c, fh_accum *acc, fh_client_report *rep) {
  fedproto_state *s = run->alg_state;
  fh_hetero_rows r;
  fh_hnet *net = fh_hetero_acquire(&s->h, run, &s->f, c->id, 1, &r);
  fh_rng rng;
  fh_rng_init(&rng, run->seed, FH_RNG_SHUFFLE, (uint32_t)c->id, (uint32_t)c->round);
  int rc = train(s, run->global, net, &c->data->train, &rng, r.mom, &r.steps, &rep->train_loss);
  rep->weight = (double)c->data->train.n;
  if (rc == 0) {
    const size_t cd = (size_t)s->C * s->d;
    memset(s->sums, 0, cd * sizeof(double));
    memset(s->counts, 0, (size_t)s->C * sizeof(double));
    fh_hnet_prototypes(net, &c->data->train, s->sums, s->counts);
    for (size_t i = 0; i < cd; i++) s->contrib[i] = (float)s->sums[i];
    for (int k = 0; k < s->C; k++) s->contrib[cd + k] = (float)s->counts[k];
    rc = fh_accum_add(acc, s->contrib, 1.0);
  }
  int rc_r = fh_hetero_release(&s->h, run, &s->f, c->id, rc == 0, &r);
  FH_TRY(rc);
  return rc_r;
}

static int fedproto_server_step(fh_run *run, const fh_accum *acc) {
  fedproto_state *s = run->alg_state;
  const int C = s->C, d = s->d;
  const size_t cd = (size_t)C * d;
  for (int k = 0; k < C; k++) {
    const double n = (double)acc->sum[cd + k] / acc->scale;
    if (n < 0.5) continue; /* nobody held the class this round: its prototype stays */
    for (int j = 0; j < d; j++)
      run->global[(size_t)k * d + j] = (float)((double)acc->sum[(size_t)k * d + j] / acc->scale / n);
    run->global[cd + k] = 1.0f;
  }
  return 0;
}

/* Client c's model on sp, predicting by the nearest prototype of protos
 * [P (C*d) | present (C)]: the class c with a prototype P_c minimising
 * |h - P_c|^2 (the lowest index on ties); *loss_sum gets the whole model's
 * summed cross-entropy. */
static void evaluate_by_prototype(fedproto_state *s, const float *protos, fh_hnet *n, const fh_split *sp,
                                  double *correct, double *loss_sum) {
  const int C = s->C, d = s->d;
  const float *P = protos, *present = protos + (size_t)C * d;
  const size_t dim = fh_model_input_size(n->ex);
  for (int i0 = 0; i0 < sp->n; i0 += n->max_batch) {
    const int B = sp->n - i0 < n->max_batch ? sp->n - i0 : n->max_batch;
    const float *h = fh_hnet_features(n, sp->x + (size_t)i0 * dim, B, 0);
    double ignored = 0;
    *loss_sum += fh_hnet_score(n, fh_hnet_head_forward(n, h, B), sp->y + i0, B, &ignored);
    for (int b = 0; b < B; b++) {
      int best = -1;
      double best_d = 0;
      for (int c = 0; c < C; c++) {
        if (present[c] == 0.0f) continue;
        double dist = 0;
        for (int j = 0; j < d; j++) {
          const double diff = (double)h[(size_t)b * d + j] - P[(size_t)c * d + j];
          dist += diff * diff;
        }
        if (best < 0 || dist < best_d) best = c, best_d = dist;
      }
      *correct += best == sp->y[i0 + b];
    }
  }
  fh_prof_count_flops(fh_hnet_flops_features(n, sp->n, 0) + fh_hnet_flops_head(n, sp->n, 0) +
                      3.0 * sp->n * C * d);
}

static int fedproto_client_evaluate(fh_run *run, fh_client_ctx *c, const fh_split *sp, double *correct,
                                    double *loss_sum) {
  fedproto_state *s = run->alg_state;
  int any = 0;
  for (int k = 0; k < s->C; k++) any |= run->global[(size_t)s->C * s->d + k] != 0.0f;
  if (!s->by_proto || (s->by_proto == 1 && !any)) return fh_hetero_client_evaluate(run, c, sp, correct, loss_sum);
  fh_hetero_rows r;
  fh_hnet *net = fh_hetero_acquire(&s->h, run, &s->f, c->id, 0, &r);
  *correct = 0, *loss_sum = 0;
  const float *protos = run->global;
  if (s->by_proto == 2) { /* the client's own class means */
    const size_t cd = (size_t)s->C * s->d;
    memset(s->sums, 0, cd * sizeof(double));
    memset(s->counts, 0, (size_t)s->C * sizeof(double));
    fh_hnet_prototypes(net, &c->data->train, s->sums, s->counts);
    float *own = s->classifier;
    for (int k = 0; k < s->C; k++) {
      own[cd + k] = s->counts[k] > 0 ? 1.0f : 0.0f;
      for (int j = 0; j < s->d; j++)
        own[(size_t)k * s->d + j] = s->counts[k] > 0 ? (float)(s->sums[(size_t)k * s->d + j] / s->counts[k]) : 0.0f;
    }
    protos = own;
  }
  evaluate_by_prototype(s, protos, net, sp, correct, loss_sum);
  return fh_hetero_release(&s->h, run, &s->f, c->id, 0, &r);
}

/* model.h5: the nearest-prototype classifier as a Linear(d, C). */
static const float *fedproto_global_model(fh_run *run) {
  fedproto_state *s = run->alg_state;
  const int C = s->C, d = s->d;
  const float *P = run->global, *present = run->global + (size_t)C * d;
  float *W = s->classifier, *b = s->classifier + (size_t)C * d;
  for (int c = 0; c < C; c++) {
    double sq = 0;
    for (int j = 0; j < d; j++) {
      const float p = present[c] != 0.0f ? P[(size_t)c * d + j] : 0.0f;
      W[(size_t)c * d + j] = 2.0f * p;
      sq += (double)p * p;
    }
    b[c] = present[c] != 0.0f ? (float)-sq : -1e30f;
  }
  return s->classifier;
}

static void fedproto_destroy(fh_run *run) {
  fedproto_state *s = run->alg_state;
  fh_hetero_destroy(&s->h);
  free(s->sums);
  free(s->counts);
  free(s->contrib);
  free(s->classifier);
  free(s);
  run->alg_state = NULL;
}

static const fh_test_case fedproto_tests[] = {
    {"fedproto", FH_TEST_RESUME_SHORT | FH_TEST_DECK, FH_HETERO_TEST_SETTINGS, "", NULL},
    {NULL, 0, NULL, NULL, NULL}};

const fh_algorithm fh_alg_fedproto = {
    .name = "fedproto",
    .summary = "FedProto: heterogeneous clients share class prototypes and pull their features towards them",
    .keys = fedproto_keys,
    .setup = fedproto_setup,
    .client_update = fedproto_client_update,
    .server_step = fedproto_server_step,
    .destroy = fedproto_destroy,
    .client_evaluate = fedproto_client_evaluate,
    .global_model = fedproto_global_model,
    .flags = FH_ALG_NO_GLOBAL_MODEL,
    .tests = fedproto_tests,
};
