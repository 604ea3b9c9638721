/* Synthetic(alpha, beta) of Li et al., "Federated Optimization in Heterogeneous
 * Networks" (FedProx, MLSys 2020), as the authors' generator draws it, where
 * alpha and beta are standard deviations (numpy's normal(loc, scale)):
 *
 *   u_k ~ N(0, alpha^2)     W_k [C, d] ~ N(u_k, 1)    b_k [C] ~ N(u_k, 1)
 *   B_k ~ N(0, beta^2)      v_k [d],  v_kj ~ N(B_k, 1)
 *   x ~ N(v_k, Sigma),      Sigma = diag(j^-1.2), j = 1..d
 *   y = argmax(W_k x + b_k)   (the first maximum on ties)
 *   n_k = floor(lognormal(mu, sigma)) + min_samples, capped at max_samples > 0
 *
 * Client k draws all of it from its own stream (seed, FH_RNG_DATA, k), in this
 * order: n_k, u_k, B_k, v_k, W_k (row by row), b_k, then the n_k samples' x
 * (sample by sample, feature by feature). So its samples do not depend on the
 * rank that generates them or on the other clients. Its train/test split is a
 * permutation p of 0..n_k-1 from (seed, FH_RNG_SPLIT, k): generated samples
 * p[0..t) are its test set and p[t..n_k) its train set, in that order, with
 * t = fh_test_count(n_k, data.test_fraction).
 *
 * As in the reference, W_k and b_k share the mean u_k, which adds
 * u_k (sum(x) + 1) to every class's logit alike: alpha changes no feature and,
 * up to float rounding, no label. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/error.h"
#include "core/progress.h"
#include "core/rng.h"
#include "data/dataset_build.h"
#include "data/partition.h"

/* A client's features must fit one buffer of 2^31 - 1 floats (8 GiB). */
#define SYNTH_MAX_VALUES 2147483647.0
/* Rows per label product [rows, d] x [d, C]: bounds the logits scratch. */
#define LABEL_CHUNK 256

typedef struct {
  double alpha, beta, mu, sigma, test_fraction;
  int dim, classes;
  long long min_samples, max_samples;
} synth_params;

static int read_params(const fh_config *cfg, synth_params *p) {
  p->alpha = fh_cfg_real(cfg, "data.synthetic_alpha");
  p->beta = fh_cfg_real(cfg, "data.synthetic_beta");
  p->mu = fh_cfg_real(cfg, "data.synthetic_size_mu");
  p->sigma = fh_cfg_real(cfg, "data.synthetic_size_sigma");
  p->test_fraction = fh_cfg_real(cfg, "data.test_fraction");
  p->dim = (int)fh_cfg_int(cfg, "data.synthetic_dim");
  p->classes = (int)fh_cfg_int(cfg, "data.synthetic_classes");
  p->min_samples = fh_cfg_int(cfg, "data.synthetic_min_samples");
  p->max_samples = fh_cfg_int(cfg, "data.synthetic_max_samples");
  if (p->max_samples > 0 && p->max_samples < p->min_samples)
    return FH_FAIL(FH_ERR_CONFIG,
                   "data.synthetic_max_samples = %lld is below data.synthetic_min_samples = %lld; "
                   "raise it, or set 0 for no cap",
                   p->max_samples, p->min_samples);
  return 0;
}

/* The first draw of client k's stream: its number of samples. */
static int client_size(const synth_params *p, fh_rng *r, int k, int *n) {
  double total = floor(fh_rng_lognormal(r, p->mu, p->sigma)) + (double)p->min_samples;
  if (p->max_samples > 0 && total > (double)p->max_samples) total = (double)p->max_samples;
  if (total * p->dim > SYNTH_MAX_VALUES)
    return FH_FAIL(FH_ERR_CONFIG,
                   "synthetic client %d draws %.0f samples of %d features (lognormal(%g, %g) + %lld), "
                   "more than one client can hold (2^31 values); set data.synthetic_max_samples "
                   "or lower data.synthetic_size_mu / data.synthetic_size_sigma",
                   k, total, p->dim, p->mu, p->sigma, p->min_samples);
  *n = (int)total;
  return 0;
}

static int split_sizes(const synth_params *p, uint64_t seed, int k, int *train_n, int *test_n) {
  fh_rng r;
  fh_rng_init(&r, seed, FH_RNG_DATA, (uint32_t)k, FH_RNG_NONE);
  int n = 0;
  FH_TRY(client_size(p, &r, k, &n));
  *test_n = fh_test_count(n, p->test_fraction);
  *train_n = n - *test_n;
  return 0;
}

int fh_synthetic_sizes(const fh_config *cfg, uint64_t seed, int K, int *train_n, int *test_n) {
  synth_params p;
  FH_TRY(read_params(cfg, &p));
  for (int k = 0; k < K; k++) FH_TRY(split_sizes(&p, seed, k, &train_n[k], &test_n[k]));
  return 0;
}

/* Scratch shared by all local clients, allocated once. */
typedef struct {
  float *W;      /* [C, d] */
  float *b;      /* [C]    */
  float *v;      /* [d]    */
  float *sd;     /* [d], sqrt(Sigma_jj) = j^-0.6 */
  float *logits; /* [LABEL_CHUNK, C] */
  int *perm;     /* [max n] */
  int *slot;     /* [max n]: where generated sample s is stored */
} synth_scratch;

/* y[i] = argmax_c (W x_i + b)_c for x [n, d]. */
static void label_rows(const synth_params *p, synth_scratch *s, const float *x, int n, int32_t *y) {
  const int d = p->dim, C = p->classes;
  for (int r0 = 0; r0 < n; r0 += LABEL_CHUNK) {
    int m = n - r0 < LABEL_CHUNK ? n - r0 : LABEL_CHUNK;
    /* logits [m, C] = x [m, d] * W^T [d, C] */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, C, d, 1.0f, x + (size_t)r0 * d, d, s->W, d,
                0.0f, s->logits, C);
    for (int i = 0; i < m; i++) {
      const float *l = s->logits + (size_t)i * C;
      int best = 0;
      float best_v = l[0] + s->b[0];
      for (int c = 1; c < C; c++) {
        float v = l[c] + s->b[c];
        if (v > best_v) {
          best_v = v;
          best = c;
        }
      }
      y[r0 + i] = best;
    }
  }
}

static int generate_client(const synth_params *p, uint64_t seed, synth_scratch *s, fh_client_data *cd) {
  const int d = p->dim, C = p->classes, k = cd->id;
  fh_rng r;
  fh_rng_init(&r, seed, FH_RNG_DATA, (uint32_t)k, FH_RNG_NONE);
  int n = 0;
  FH_TRY(client_size(p, &r, k, &n));
  const int n_test = cd->test.n;

  float u = (float)(p->alpha * fh_rng_normal(&r));
  float B = (float)(p->beta * fh_rng_normal(&r));
  fh_rng_normal_fill(&r, s->v, (size_t)d, B, 1.0f);
  fh_rng_normal_fill(&r, s->W, (size_t)C * d, u, 1.0f);
  fh_rng_normal_fill(&r, s->b, (size_t)C, u, 1.0f);

  fh_rng split;
  fh_rng_init(&split, seed, FH_RNG_SPLIT, (uint32_t)k, FH_RNG_NONE);
  fh_rng_permutation(&split, s->perm, n);
  for (int j = 0; j < n; j++) s->slot[s->perm[j]] = j;

  for (int i = 0; i < n; i++) {
    int j = s->slot[i];
    float *x = j < n_test ? cd->test.x + (size_t)j * d : cd->train.x + (size_t)(j - n_test) * d;
    for (int f = 0; f < d; f++) x[f] = s->v[f] + s->sd[f] * (float)fh_rng_normal(&r);
  }
  label_rows(p, s, cd->train.x, cd->train.n, cd->train.y);
  label_rows(p, s, cd->test.x, cd->test.n, cd->test.y);
  return 0;
}

int fh_synthetic_load(fh_dataset *ds, const fh_config *cfg, uint64_t seed) {
  synth_params p;
  FH_TRY(read_params(cfg, &p));
  snprintf(ds->name, sizeof ds->name, "synthetic(%g,%g)", p.alpha, p.beta);
  ds->num_classes = p.classes;
  ds->c = p.dim;
  ds->h = ds->w = 1;
  ds->dim = p.dim;

  const int nl = ds->nlocal;
  int *train_n = fh_malloc(sizeof(int) * (size_t)(nl > 0 ? nl : 1));
  int *test_n = fh_malloc(sizeof(int) * (size_t)(nl > 0 ? nl : 1));
  int rc = 0, max_n = 1;
  for (int i = 0; i < nl && rc == 0; i++) {
    rc = split_sizes(&p, seed, ds->first_client + i, &train_n[i], &test_n[i]);
    if (rc == 0 && train_n[i] + test_n[i] > max_n) max_n = train_n[i] + test_n[i];
  }
  if (rc == 0) rc = fh_dataset_alloc_rows(ds, train_n, test_n);
  free(train_n);
  free(test_n);
  if (rc != 0) return rc;

  synth_scratch s;
  s.W = fh_malloc(sizeof(float) * (size_t)p.classes * p.dim);
  s.b = fh_malloc(sizeof(float) * (size_t)p.classes);
  s.v = fh_malloc(sizeof(float) * (size_t)p.dim);
  s.sd = fh_malloc(sizeof(float) * (size_t)p.dim);
  s.logits = fh_malloc(sizeof(float) * (size_t)LABEL_CHUNK * p.classes);
  s.perm = fh_malloc(sizeof(int) * (size_t)max_n);
  s.slot = fh_malloc(sizeof(int) * (size_t)max_n);
  for (int j = 0; j < p.dim; j++) s.sd[j] = (float)pow(j + 1, -0.6);

  fh_progress pr;
  fh_progress_begin(&pr, "data: generating the clients of rank 0", nl);
  for (int i = 0; i < nl && rc == 0; i++) {
    rc = generate_client(&p, seed, &s, &ds->clients[i]);
    fh_progress_step(&pr, i + 1);
  }
  fh_progress_end(&pr);

  free(s.W);
  free(s.b);
  free(s.v);
  free(s.sd);
  free(s.logits);
  free(s.perm);
  free(s.slot);
  return rc;
}
