/* FST-CBDG (Yan and Guo 2024, arXiv:2404.11046): unsupervised federated
 * learning of a linear classifier on the features of a frozen pretrained
 * encoder, by self-training from zero-shot pseudo-labels with class-balanced
 * data generation in feature space.
 *
 * Data: data.source = features (docs/features.md). Every client holds the
 * L2-normalised encoder features z [n_k, d] of its unlabelled samples; the
 * file's class embeddings t_c [C, d] (normalised) and logit scale s give the
 * zero-shot classifier. The model is the linear head itself (model.arch =
 * mlp, model.hidden empty: one Linear(d, C), payload W [C, d] then b [C]), so
 * C x (d + 1) floats travel each way and nothing else.
 *
 *   init     W = s [t_1; ...; t_C], b = 0: round 0 is the zero-shot classifier exactly
 *   client   q_i = softmax(l s T z_i) the first time it is sampled (per-client
 *            state "fstcbdg.q" [n_max, C] in the client store: checkpointed,
 *            the same on any rank count); each round it draws M features per
 *            class z~ ~ N(t_c, sigma^2 I), re-normalised, label c, from its
 *            own stream (seed, FH_RNG_ALGORITHM, client, round): balanced
 *            whatever the client's label skew; E epochs of minibatch SGD
 *            (train.*) from the global (W, b) on
 *                mean_i CE(q_i, softmax(W z_i + b)) + mu mean_j CE(c_j, softmax(W z~_j + b))
 *            where each step takes train.batch_size real rows and the matching
 *            share of the generated rows (one epoch visits both sets once);
 *            then q_i <- beta q_i + (1 - beta) softmax(W z_i + b) with its
 *            trained head; sends (W, b) with weight n_k
 *   server   FedAvg of (W, b)
 *
 * The first pseudo-labels are the zero-shot logits s T z_i sharpened by l =
 * fstcbdg.label_scale, by default l = s: ALGORITHMS.md's softmax(s W z_i)
 * with W = s T. They must differ from the head's own softmax(s T z_i): soft
 * targets equal to the model's predictions have a zero gradient, and
 * self-training would never move. Variants in the same
 * framework (fstcbdg.variant): selftrain (no generation, mu = 0), zeroshot (no
 * training: the head stays the zero-shot classifier), supervised (FedAvg of
 * the same head from the same start with the true labels /train/y and hard
 * CE, no generation: the upper bound). The optional pseudo covariance
 * extension (fstcbdg.covariance = pseudo) draws z~ with each class's
 * covariance estimated from the client's confidently pseudo-labelled
 * features, shrunk towards sigma^2 I (fl/alg/fstcbdg.h). */
#include "fl/alg/fstcbdg.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/log.h"
#include "data/features.h"
#include "fl/algorithm.h"
#include "fl/client_state.h"
#include "fl/run.h"
#include "nn/layer.h"
#include "nn/loss.h"
#include "nn/optim.h"

static const fh_key_spec fst_keys[] = {
    {"fstcbdg.variant", FH_T_ENUM, "cbdg", 0, 0, "cbdg|selftrain|zeroshot|supervised",
     "cbdg: self-training with class-balanced generation; selftrain: without generation; zeroshot: no "
     "training; supervised: the same head trained with the true labels (upper bound)"},
    {"fstcbdg.samples_per_class", FH_T_INT, "32", 1, 1e7, NULL,
     "M: generated features per class and client each round (our choice: not published)"},
    {"fstcbdg.sigma", FH_T_REAL, "0.1", 0, 100, NULL,
     "std of each coordinate of the generated features around the class embedding, before re-normalising "
     "(their cosine to it is about 1 / sqrt(1 + sigma^2 d); our choice: not published)"},
    {"fstcbdg.mu", FH_T_REAL, "1", 0, 1e6, NULL, "weight of the generated features' cross-entropy (our choice: not published)"},
    {"fstcbdg.beta", FH_T_REAL, "0.9", 0, 1, NULL,
     "pseudo-label moving average: q <- beta q + (1 - beta) softmax(W z + b) after each local round (our "
     "choice: not published)"},
    {"fstcbdg.label_scale", FH_T_REAL, "0", 0, 1e6, NULL,
     "initial pseudo-labels q = softmax(label_scale * s T z), the zero-shot logits sharpened; 0 = s (the logit "
     "scale: softmax(s W z) with W = s T; our reading: at s = 100 these labels are one-hot)"},
    {"fstcbdg.covariance", FH_T_ENUM, "isotropic", 0, 0, "isotropic|pseudo",
     "spread of the generated features: sigma^2 I, or each class's covariance from the client's confidently "
     "pseudo-labelled features shrunk towards sigma^2 I (extension)"},
    {"fstcbdg.confidence", FH_T_REAL, "0.8", 0, 1, NULL,
     "pseudo covariance: a feature counts for its arg-max class when that pseudo-label probability is at least this"},
    {"fstcbdg.cov_prior", FH_T_REAL, "16", 0, 1e9, NULL,
     "pseudo covariance: shrinkage kappa, the weight of sigma^2 I is kappa / (members + kappa)"},
    FH_KEYS_END};

enum { V_CBDG, V_SELFTRAIN, V_ZEROSHOT, V_SUPERVISED };
static const char *const VARIANTS[] = {"cbdg", "selftrain", "zeroshot", "supervised"};

typedef struct {
  int variant, C, d, M, cov_pseudo;
  float s, sigma, mu, beta, confidence, kappa, label_scale;
  float *W0;         /* [C, d] s * T: the zero-shot head            */
  float *T;          /* [C, d] normalised class embeddings          */
  int field;         /* "fstcbdg.q" [maxn, C], or -1                */
  int maxn;          /* largest train split of any client           */
  size_t np;         /* C * (d + 1)                                 */
  int epochs, batch;
  fh_sgd opt;
  /* scratch, sized once */
  float *params, *grads, *mom; /* [np]                                */
  int rows;                    /* max(batch, generated rows)            */
  float *logits, *probs, *dl;  /* [rows, C]                             */
  float *xb, *tb;              /* [batch, d], [batch, C]                */
  int32_t *yb;                 /* [rows]                                */
  float *gx, *gxb;             /* [G, d]: generated, and one batch of it */
  int32_t *gy;                 /* [G]                                   */
  int *order, *gorder;         /* [maxn], [G]                           */
  int *members, *moff;         /* [maxn], [C + 1]: pseudo covariance     */
  float *gscratch;             /* [d]                                   */
} fst_state;

/* ---- feature-space generation (fl/alg/fstcbdg.h) --------------------------------- */

static void normalise_row(float *x, int d) {
  double ss = 0;
  for (int j = 0; j < d; j++) ss += (double)x[j] * x[j];
  if (ss > 0) {
    const double inv = 1.0 / sqrt(ss);
    for (int j = 0; j < d; j++) x[j] = (float)(x[j] * inv);
  }
}

void fh_fst_generate(const float *T, int C, int d, int M, float sigma, int normalise, fh_rng *r, float *x,
                     int32_t *y) {
  for (int c = 0; c < C; c++)
    for (int m = 0; m < M; m++) {
      float *row = x + ((size_t)c * M + m) * (size_t)d;
      const float *t = T + (size_t)c * d;
      for (int j = 0; j < d; j++) row[j] = t[j] + sigma * (float)fh_rng_normal(r);
      if (normalise) normalise_row(row, d);
      y[(size_t)c * M + m] = c;
    }
}

void fh_fst_generate_cov(const float *T, int C, int d, int M, float sigma, float kappa, const float *Z,
                         const int *members, const int *offsets, int normalise, fh_rng *r, float *scratch,
                         float *x, int32_t *y) {
  for (int c = 0; c < C; c++) {
    const int m_c = offsets[c + 1] - offsets[c];
    const int *mem = members + offsets[c];
    /* zbar_c into scratch */
    for (int j = 0; j < d; j++) scratch[j] = 0;
    for (int i = 0; i < m_c; i++) {
      const float *z = Z + (size_t)mem[i] * d;
      for (int j = 0; j < d; j++) scratch[j] += z[j];
    }
    for (int j = 0; m_c > 0 && j < d; j++) scratch[j] /= (float)m_c;
    const double lam = m_c >= 2 ? kappa / (m_c + (double)kappa) : 1.0;
    const float a = m_c >= 2 ? (float)sqrt((1.0 - lam) / (m_c - 1)) : 0.0f, b = (float)sqrt(lam) * sigma;
    for (int m = 0; m < M; m++) {
      float *row = x + ((size_t)c * M + m) * (size_t)d;
      const float *t = T + (size_t)c * d;
      for (int j = 0; j < d; j++) row[j] = t[j] + b * (float)fh_rng_normal(r);
      for (int i = 0; i < m_c && a > 0; i++) {
        const float g = a * (float)fh_rng_normal(r);
        const float *z = Z + (size_t)mem[i] * d;
        for (int j = 0; j < d; j++) row[j] += g * (z[j] - scratch[j]);
      }
      if (normalise) normalise_row(row, d);
      y[(size_t)c * M + m] = c;
    }
  }
}

/* ---- small pieces ------------------------------------------------------------- */

/* p [n, C] = softmax of logits [n, C] row by row (sums in double). */
static void softmax_rows(float *p, const float *logits, int n, int C) {
  for (int i = 0; i < n; i++) {
    const float *z = logits + (size_t)i * C;
    float *o = p + (size_t)i * C;
    float mx = z[0];
    for (int j = 1; j < C; j++) mx = z[j] > mx ? z[j] : mx;
    double sum = 0;
    for (int j = 0; j < C; j++) sum += exp((double)z[j] - mx);
    for (int j = 0; j < C; j++) o[j] = (float)(exp((double)z[j] - mx) / sum);
  }
}

/* The first pseudo-labels of a client, q [n, C] = softmax(label_scale * W0 z)
 * over its rows Z [n, d], in chunks of s->rows. */
static void zero_shot_labels(fst_state *s, const float *Z, int n, float *q) {
  for (int i0 = 0; i0 < n; i0 += s->rows) {
    const int B = n - i0 < s->rows ? n - i0 : s->rows;
    fh_linear_forward(s->logits, Z + (size_t)i0 * s->d, s->W0, NULL, B, s->d, s->C);
    for (size_t k = 0; k < (size_t)B * s->C; k++) s->logits[k] *= s->label_scale;
    softmax_rows(q + (size_t)i0 * s->C, s->logits, B, s->C);
  }
}

/* ---- setup --------------------------------------------------------------------- */

/* The buffers of local training: batches of real rows and G generated ones. */
static void alloc_scratch(fst_state *s, int G) {
  const int C = s->C, d = s->d;
  s->rows = s->batch > G ? s->batch : G;
  if (s->rows < 1) s->rows = 1;
  s->params = fh_malloc(sizeof(float) * s->np);
  s->grads = fh_malloc(sizeof(float) * s->np);
  s->mom = fh_malloc(sizeof(float) * s->np);
  s->logits = fh_malloc(sizeof(float) * (size_t)s->rows * C);
  s->probs = fh_malloc(sizeof(float) * (size_t)s->rows * C);
  s->dl = fh_malloc(sizeof(float) * (size_t)s->rows * C);
  s->xb = fh_malloc(sizeof(float) * (size_t)s->batch * d);
  s->tb = fh_malloc(sizeof(float) * (size_t)s->batch * C);
  s->yb = fh_malloc(sizeof(int32_t) * (size_t)s->rows);
  s->order = fh_malloc(sizeof(int) * (size_t)s->maxn);
  if (G > 0) {
    s->gx = fh_malloc(sizeof(float) * (size_t)G * d);
    s->gxb = fh_malloc(sizeof(float) * (size_t)G * d);
    s->gy = fh_malloc(sizeof(int32_t) * (size_t)G);
    s->gorder = fh_malloc(sizeof(int) * (size_t)G);
  }
  if (s->cov_pseudo && G > 0) {
    s->members = fh_malloc(sizeof(int) * (size_t)s->maxn);
    s->moff = fh_malloc(sizeof(int) * (size_t)(C + 1));
    s->gscratch = fh_malloc(sizeof(float) * (size_t)d);
  }
}

/* Long on purpose: the setup in order (keys and refusals, the linear-head
 * check, the zero-shot head W = s T, the variant's settings, the pseudo-label
 * field, scratch), each step commented and sharing the state it fills. */
static int fst_setup(fh_run *run) {
  fst_state *s = fh_calloc(1, sizeof *s);
  run->alg_state = s;
  s->field = -1;
  const fh_config *cfg = run->cfg;
  s->variant = fh_cfg_enum(cfg, "fstcbdg.variant"); /* the order of VARIANTS */
  if (strcmp(fh_cfg_str(cfg, "data.source"), "features") != 0)
    return FH_FAIL(FH_ERR_CONFIG, "run.algorithm = fstcbdg learns on encoder features: set data.source = features and "
                                  "data.path to a feature file (docs/features.md; fedhpc encode makes one)");
  fh_features_meta meta;
  FH_TRY(fh_features_meta_read(fh_cfg_str(cfg, "data.path"), &meta));
  s->C = meta.num_classes;
  s->d = meta.dim;
  s->s = (float)meta.logit_scale;
  s->T = meta.class_emb;
  meta.class_emb = NULL;
  const int labelled = meta.train_labelled;
  fh_features_meta_free(&meta);
  const int C = s->C, d = s->d;
  s->np = (size_t)C * (size_t)(d + 1);

  /* The model must be the linear head: W [C, d] then b [C], nothing else. */
  fh_model *m = run->model;
  const fh_param_view *w = fh_model_nviews(m) == 2 ? fh_model_view(m, 0) : NULL;
  const fh_param_view *bv = fh_model_nviews(m) == 2 ? fh_model_view(m, 1) : NULL;
  if (!w || w->ndim != 2 || w->shape[0] != C || w->shape[1] != d || bv->ndim != 1 || bv->shape[0] != C ||
      bv->offset != (size_t)C * d || fh_model_nbuffers(m) != 0 || run->model_n != s->np)
    return FH_FAIL(FH_ERR_CONFIG, "run.algorithm = fstcbdg trains one linear layer on the %d-dimensional features "
                                  "(%d classes), but the model is %s with %zu parameters; set model.arch = mlp and "
                                  "an empty model.hidden (softmax regression, %zu parameters)",
                   d, C, fh_model_arch(m), fh_model_nparams(m), s->np);
  if (run->payload_n != run->model_n)
    return FH_FAIL(FH_ERR_RUNTIME, "fstcbdg: the payload has %zu floats beyond the head",
                   run->payload_n - run->model_n);
  if (s->variant == V_SUPERVISED && !labelled)
    return FH_FAIL(FH_ERR_CONFIG, "fstcbdg.variant = supervised trains with the true labels, but %s has no "
                                  "/train/y; add them or choose another variant",
                   fh_cfg_str(cfg, "data.path"));

  /* W^0 = s T, b^0 = 0 on every rank (theta^0 from the seed is replaced). */
  s->W0 = fh_malloc(sizeof(float) * (size_t)C * d);
  for (size_t i = 0; i < (size_t)C * d; i++) s->W0[i] = s->s * s->T[i];
  memcpy(run->global, s->W0, sizeof(float) * (size_t)C * d);
  memset(run->global + (size_t)C * d, 0, sizeof(float) * (size_t)C);

  s->M = (int)fh_cfg_int(cfg, "fstcbdg.samples_per_class");
  s->sigma = (float)fh_cfg_real(cfg, "fstcbdg.sigma");
  s->mu = (float)fh_cfg_real(cfg, "fstcbdg.mu");
  s->beta = (float)fh_cfg_real(cfg, "fstcbdg.beta");
  s->cov_pseudo = fh_cfg_enum(cfg, "fstcbdg.covariance") == 1; /* isotropic|pseudo */
  s->confidence = (float)fh_cfg_real(cfg, "fstcbdg.confidence");
  s->kappa = (float)fh_cfg_real(cfg, "fstcbdg.cov_prior");
  s->label_scale = (float)fh_cfg_real(cfg, "fstcbdg.label_scale");
  if (s->label_scale == 0) s->label_scale = s->s;
  if (s->variant != V_CBDG) s->mu = 0; /* no generation */
  if (fh_cfg_int(cfg, "train.iterations") > 0)
    return FH_FAIL(FH_ERR_CONFIG, "run.algorithm = fstcbdg trains train.epochs passes over real and generated rows "
                                  "together; train.iterations = %lld is not honoured: remove it",
                   fh_cfg_int(cfg, "train.iterations"));
  s->epochs = (int)fh_cfg_int(cfg, "train.epochs");
  s->batch = (int)fh_cfg_int(cfg, "train.batch_size");
  s->opt.lr = (float)fh_cfg_real(cfg, "train.lr");
  s->opt.momentum = (float)fh_cfg_real(cfg, "train.momentum");
  s->opt.weight_decay = (float)fh_cfg_real(cfg, "train.weight_decay");
  s->opt.nesterov = fh_cfg_bool(cfg, "train.nesterov");
  if ((double)C * s->M > 1e8 || (double)C * s->M * d > 4e9)
    return FH_FAIL(FH_ERR_CONFIG, "fstcbdg.samples_per_class = %d makes %.0f generated features of %d floats per "
                                  "client; lower it", s->M, (double)C * s->M, d);
  const int G = s->mu > 0 ? C * s->M : 0;

  /* Pseudo-labels: one [maxn, C] vector per client, maxn over all clients. */
  int local_max = 1;
  for (int i = 0; i < run->nlocal; i++)
    if (run->data->clients[i].train.n > local_max) local_max = run->data->clients[i].train.n;
  MPI_Allreduce(&local_max, &s->maxn, 1, MPI_INT, MPI_MAX, run->comm);
  if (s->variant == V_CBDG || s->variant == V_SELFTRAIN)
    FH_TRY(fh_client_store_field(run->state, "fstcbdg.q", FH_STATE_F32, (size_t)s->maxn * C, &s->field));

  alloc_scratch(s, G);
  fh_info("fstcbdg (%s): linear head on %d-dimensional features, %d classes, logit scale %g; %zu floats travel "
          "each way per client", VARIANTS[s->variant], d, C, (double)s->s, s->np);
  if (s->variant == V_CBDG)
    fh_info("fstcbdg: M = %d generated features per class (%s, sigma = %g), mu = %g, beta = %g", s->M,
            s->cov_pseudo ? "pseudo-label covariance" : "isotropic", (double)s->sigma, (double)s->mu,
            (double)s->beta);
  else if (s->variant == V_SELFTRAIN)
    fh_info("fstcbdg: self-training without generation, beta = %g", (double)s->beta);
  return 0;
}

/* ---- one client ----------------------------------------------------------------- */

/* The generated set of this client and round into gx, gy (G rows). */
static void generate(fst_state *s, const fh_split *tr, const float *q, fh_rng *r) {
  if (!s->cov_pseudo) {
    fh_fst_generate(s->T, s->C, s->d, s->M, s->sigma, 1, r, s->gx, s->gy);
    return;
  }
  /* members of class c: rows whose pseudo-label puts at least `confidence` on c */
  const int C = s->C, n = tr->n;
  int *cls = s->order; /* scratch: the class of each row, or -1 */
  memset(s->moff, 0, sizeof(int) * (size_t)(C + 1));
  for (int i = 0; i < n; i++) {
    const float *qi = q + (size_t)i * C;
    int a = 0;
    for (int j = 1; j < C; j++)
      if (qi[j] > qi[a]) a = j;
    cls[i] = qi[a] >= s->confidence ? a : -1;
    if (cls[i] >= 0) s->moff[a + 1]++;
  }
  for (int c = 0; c < C; c++) s->moff[c + 1] += s->moff[c];
  int *fill = s->gorder; /* scratch [C] (G >= C) */
  memcpy(fill, s->moff, sizeof(int) * (size_t)C);
  for (int i = 0; i < n; i++)
    if (cls[i] >= 0) s->members[fill[cls[i]]++] = i;
  fh_fst_generate_cov(s->T, C, s->d, s->M, s->sigma, s->kappa, tr->x, s->members, s->moff, 1, r, s->gscratch,
                      s->gx, s->gy);
}

/* E epochs of minibatch SGD on params from the global head. q [n, C]: soft
 * targets (NULL: the true labels). *loss: the last epoch's mean objective. */
static int local_train(fst_state *s, fh_run *run, const fh_client_ctx *c, const float *q, double *loss) {
  const fh_split *tr = &c->data->train;
  const int n = tr->n, C = s->C, d = s->d, B = s->batch;
  const int G = s->mu > 0 ? C * s->M : 0;
  const size_t wn = (size_t)C * d;
  fh_rng shuf, gen;
  fh_rng_init(&shuf, run->seed, FH_RNG_SHUFFLE, (uint32_t)c->id, (uint32_t)c->round);
  fh_rng_init(&gen, run->seed, FH_RNG_ALGORITHM, (uint32_t)c->id, (uint32_t)c->round);
  if (G > 0) generate(s, tr, q, &gen);
  memcpy(s->params, run->global, sizeof(float) * s->np);
  long long steps = 0;
  const int S = (n + B - 1) / B; /* steps per epoch */
  *loss = 0;
  for (int e = 0; e < s->epochs; e++) {
    fh_rng_permutation(&shuf, s->order, n);
    if (G > 0) fh_rng_permutation(&gen, s->gorder, G);
    double esum = 0;
    for (int j = 0; j < S; j++) {
      const int i0 = j * B, Br = n - i0 < B ? n - i0 : B;
      float *W = s->params, *b = s->params + wn;
      memset(s->grads, 0, sizeof(float) * s->np);
      /* real rows: soft pseudo-labels (or true labels) */
      for (int i = 0; i < Br; i++) {
        const int r = s->order[i0 + i];
        memcpy(s->xb + (size_t)i * d, tr->x + (size_t)r * d, sizeof(float) * (size_t)d);
        if (q) memcpy(s->tb + (size_t)i * C, q + (size_t)r * C, sizeof(float) * (size_t)C);
        else s->yb[i] = tr->y[r];
      }
      fh_linear_forward(s->logits, s->xb, W, b, Br, d, C);
      double l;
      if (q) {
        l = fh_softmax_ce_soft_forward(s->probs, s->logits, s->tb, Br, C);
        fh_softmax_ce_soft_backward(s->dl, s->probs, s->tb, Br, C);
      } else {
        l = fh_softmax_ce_forward(s->probs, s->logits, s->yb, Br, C);
        fh_softmax_ce_backward(s->dl, s->probs, s->yb, Br, C);
      }
      fh_linear_backward(NULL, s->grads, s->grads + wn, s->dl, s->xb, W, Br, d, C);
      /* this step's share of the generated rows, weighted by mu */
      const int g0 = (int)((long long)j * G / S), g1 = (int)((long long)(j + 1) * G / S), Bg = g1 - g0;
      double lg = 0;
      if (Bg > 0) {
        for (int i = 0; i < Bg; i++) {
          const int r = s->gorder[g0 + i];
          memcpy(s->gxb + (size_t)i * d, s->gx + (size_t)r * d, sizeof(float) * (size_t)d);
          s->yb[i] = s->gy[r];
        }
        fh_linear_forward(s->logits, s->gxb, W, b, Bg, d, C);
        lg = fh_softmax_ce_forward(s->probs, s->logits, s->yb, Bg, C);
        fh_softmax_ce_backward(s->dl, s->probs, s->yb, Bg, C);
        for (size_t k = 0; k < (size_t)Bg * C; k++) s->dl[k] *= s->mu;
        fh_linear_backward(NULL, s->grads, s->grads + wn, s->dl, s->gxb, W, Bg, d, C);
      }
      const double step_loss = l + s->mu * lg;
      if (!isfinite(step_loss))
        return FH_FAIL(FH_ERR_DIVERGED, "fstcbdg: the local loss is %g at epoch %d, step %d; lower train.lr",
                       step_loss, e + 1, j + 1);
      esum += step_loss * Br;
      fh_sgd_step(&s->opt, s->params, s->grads, s->mom, s->np, &steps);
    }
    *loss = esum / n;
  }
  return 0;
}

static int fst_client_update(fh_run *run, fh_client_ctx *c, fh_accum *acc, fh_client_report *rep) {
  fst_state *s = run->alg_state;
  const fh_split *tr = &c->data->train;
  const int C = s->C;
  rep->weight = (double)tr->n;
  if (s->variant == V_ZEROSHOT || tr->n == 0) { /* nothing to learn, nothing sent */
    rep->train_loss = NAN;
    rep->weight = 0;
    return 0;
  }
  float *q = NULL;
  int fresh = 0;
  if (s->field >= 0) {
    q = fh_client_store_acquire(run->state, s->field, c->id, &fresh);
    if (fresh) zero_shot_labels(s, tr->x, tr->n, q);
  }
  int rc = local_train(s, run, c, q, &rep->train_loss);
  if (rc == 0 && q) {
    /* q <- beta q + (1 - beta) softmax(W z + b) with the trained head, in
     * chunks of s->rows rows. */
    const size_t wn = (size_t)C * s->d;
    for (int i0 = 0; i0 < tr->n; i0 += s->rows) {
      const int B = tr->n - i0 < s->rows ? tr->n - i0 : s->rows;
      fh_linear_forward(s->logits, tr->x + (size_t)i0 * s->d, s->params, s->params + wn, B, s->d, C);
      softmax_rows(s->probs, s->logits, B, C);
      float *qi = q + (size_t)i0 * C;
      for (size_t k = 0; k < (size_t)B * C; k++) qi[k] = s->beta * qi[k] + (1.0f - s->beta) * s->probs[k];
    }
  }
  int rc_r = q ? fh_client_store_release(run->state, s->field, c->id, rc == 0 || fresh) : 0;
  FH_TRY(rc);
  FH_TRY(rc_r);
  return fh_accum_add(acc, s->params, rep->weight);
}

static int fst_server_step(fh_run *run, const fh_accum *acc) {
  fh_accum_mean(acc, run->global); /* no contribution (zeroshot): unchanged */
  return 0;
}

static void fst_destroy(fh_run *run) {
  fst_state *s = run->alg_state;
  free(s->W0);
  free(s->T);
  free(s->params);
  free(s->grads);
  free(s->mom);
  free(s->logits);
  free(s->probs);
  free(s->dl);
  free(s->xb);
  free(s->tb);
  free(s->yb);
  free(s->gx);
  free(s->gxb);
  free(s->gy);
  free(s->order);
  free(s->gorder);
  free(s->members);
  free(s->moff);
  free(s->gscratch);
  free(s);
  run->alg_state = NULL;
}

/* Tests: a linear head on the tests' feature file, its pseudo-labels in the
 * client store, enough generated features per round that a run lasts long
 * enough to be signalled. */
static const fh_test_case fstcbdg_tests[] = {
    {"fstcbdg", FH_TEST_RESUME | FH_TEST_DECK, "data.source=features data.path=@SRC_DIR@/tests/fixtures/features_small.h5 model.hidden= partition.method=dirichlet train.lr=1 fstcbdg.samples_per_class=1000", "", NULL},
    {NULL, 0, NULL, NULL, NULL}};

const fh_algorithm fh_alg_fstcbdg = {
    .name = "fstcbdg",
    .summary = "FST-CBDG: self-trained linear head on frozen encoder features with class-balanced generation",
    .keys = fst_keys,
    .setup = fst_setup,
    .client_update = fst_client_update,
    .server_step = fst_server_step,
    .destroy = fst_destroy,
    .tests = fstcbdg_tests,
};
