/* Contrastive representation distillation: embeddings, the NCE loss against
 * memory banks and its gradient, the negatives' draw, the memory step
 * (fl/blocks/crd.h). */
#include "fl/blocks/crd.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "nn/layer.h"

#define CRD_EPS 1e-7 /* the CRD code's eps in the NCE ratios */

size_t fh_crd_head_n(int ds, int dt, int D) { return (size_t)D * (ds + 1) + (size_t)D * (dt + 1); }

void fh_crd_create(fh_crd *c, int ds, int dt, int D, int K, float T, float mom, int64_t N, int maxB) {
  memset(c, 0, sizeof *c);
  c->ds = ds, c->dt = dt, c->D = D, c->K = K, c->T = T, c->mom = mom, c->N = N, c->maxB = maxB;
  const size_t bd = (size_t)(maxB > 0 ? maxB : 1) * D * sizeof(float);
  c->es = fh_malloc(bd), c->et = fh_malloc(bd), c->vs = fh_malloc(bd), c->vt = fh_malloc(bd);
  c->dv = fh_malloc(bd), c->de = fh_malloc(bd);
  c->coef = fh_malloc((size_t)(K + 1) * sizeof(double));
  /* dense: the two [B, N] products cost 2 B N D multiply-adds at the sgemm
   * rate against 2 B (K + 1) D gathered ones, which run 10-20x slower */
  c->dense = N <= (int64_t)FH_CRD_DENSE_RATIO * (K + 1);
  if (c->dense) {
    const size_t bn = (size_t)(maxB > 0 ? maxB : 1) * (size_t)N * sizeof(float);
    c->S = fh_malloc(bn), c->C = fh_malloc(bn);
  }
}

void fh_crd_free(fh_crd *c) {
  free(c->es), free(c->et), free(c->vs), free(c->vt), free(c->dv), free(c->de), free(c->coef);
  free(c->S), free(c->C);
  memset(c, 0, sizeof *c);
}

void fh_crd_init_state(fh_crd *c, fh_rng *r) {
  const int D = c->D;
  float *p = c->head;
  const int in[2] = {c->ds, c->dt};
  for (int side = 0; side < 2; side++) {
    const double bound = 1.0 / sqrt((double)in[side]);
    for (size_t i = 0; i < (size_t)D * (in[side] + 1); i++) *p++ = (float)((2.0 * fh_rng_uniform(r) - 1.0) * bound);
  }
  const double s = 1.0 / sqrt(D / 3.0);
  for (size_t i = 0; i < (size_t)c->N * D; i++) c->mem_s[i] = (float)((2.0 * fh_rng_uniform(r) - 1.0) * s);
  for (size_t i = 0; i < (size_t)c->N * D; i++) c->mem_t[i] = (float)((2.0 * fh_rng_uniform(r) - 1.0) * s);
  c->Z[0] = c->Z[1] = -1.0f;
}

void fh_crd_draw(fh_rng *r, int64_t row, int y, const int32_t *by_class, const int64_t *cls_off, int64_t N,
                 int K, int32_t *idx) {
  /* the rows of other classes: by_class without its block [cls_off[y], cls_off[y + 1]) */
  const int64_t lo = cls_off[y], ny = cls_off[y + 1] - lo, nother = N - ny;
  idx[0] = (int32_t)row;
  for (int k = 1; k <= K; k++) {
    int64_t j = (int64_t)fh_rng_below(r, (uint32_t)nother);
    if (j >= lo) j += ny;
    idx[k] = by_class[j];
  }
}

/* a . b over n floats, eight partial sums in a fixed order (vectorisable, and
 * the same bits on every rank) */
static float dot8(const float *a, const float *b, int n) {
  float acc[8] = {0};
  int i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; l++) acc[l] += a[i + l] * b[i + l];
  for (; i < n; i++) acc[i & 7] += a[i] * b[i];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

/* e [B, D] -> v = e / |e| row by row */
static void normalise(float *v, const float *e, int B, int D) {
  for (int b = 0; b < B; b++) {
    double s = 0;
    for (int d = 0; d < D; d++) s += (double)e[(size_t)b * D + d] * e[(size_t)b * D + d];
    const double inv = 1.0 / sqrt(s);
    for (int d = 0; d < D; d++) v[(size_t)b * D + d] = (float)(e[(size_t)b * D + d] * inv);
  }
}

/* de = (dv - v (v . dv)) / |e|: the backward of e -> e / |e| */
static void normalise_backward(float *de, const float *dv, const float *v, const float *e, int B, int D) {
  for (int b = 0; b < B; b++) {
    const float *vb = v + (size_t)b * D, *gb = dv + (size_t)b * D, *eb = e + (size_t)b * D;
    double vg = 0, s = 0;
    for (int d = 0; d < D; d++) vg += (double)vb[d] * gb[d], s += (double)eb[d] * eb[d];
    const double inv = 1.0 / sqrt(s);
    for (int d = 0; d < D; d++) de[(size_t)b * D + d] = (float)(((double)gb[d] - vb[d] * vg) * inv);
  }
}

/* N times the mean of exp(M[j] . v / T) over the B rows' K + 1 draws */
static double z_of(const fh_crd *c, const float *M, const float *v, const int32_t *idx, int B) {
  const int D = c->D, K1 = c->K + 1;
  double s = 0;
  for (int b = 0; b < B; b++)
    for (int j = 0; j < K1; j++)
      s += exp((double)dot8(M + (size_t)idx[(size_t)b * K1 + j] * D, v + (size_t)b * D, D) / c->T);
  return s / ((double)B * K1) * (double)c->N;
}

/* The loss's logarithm, taken once of the product of its factors: each
 * draw's term is the log of a factor (P / (P + ce) for the positive,
 * cn / (P + ce) for a negative), so L = -log(prod of factors). The product
 * is kept as mantissa * 2^e, renormalised (frexp, exact) every 4 factors, so
 * it cannot underflow while factors stay above 1e-70 (P below 1e70: at any
 * temperature over 0.007); the loss only, the gradient has no log. The order
 * is fixed, so every rank gets the same bits. */
typedef struct {
  double prod;
  long long e;
  int n;
} log_sum;

static void log_add(log_sum *a, double factor) {
  a->prod *= factor;
  if (++a->n == 4) {
    int e;
    a->prod = frexp(a->prod, &e);
    a->e += e, a->n = 0;
  }
}

static double log_total(const log_sum *a) { return log(a->prod) + (double)a->e * M_LN2; }

/* Draw j of a row with score s (= M[idx_j] . v): its factor of the loss's
 * exp (L = -sum log of them) into *ls, returns d/ds of the row's loss (over
 * T, as the exp's argument is s / T). */
static double nce_term(double s, int j, double Z, double T, double cn, double ce, log_sum *ls) {
  const double P = exp(s / T) / Z;
  if (j == 0) {
    log_add(ls, P / (P + ce));
    return -ce / (P + ce) / T; /* d(-log(P/(P+ce)))/dP * dP/ds */
  }
  log_add(ls, cn / (P + ce));
  return P / (P + ce) / T;
}

/* One side: sum over the rows of L(v; M) with normaliser Z; dv [B, D] =
 * scale d/dv of that sum. */
static double side_loss(fh_crd *c, const float *M, const float *v, const int32_t *idx, int B, double Z,
                        double scale, float *dv) {
  const int D = c->D, K1 = c->K + 1;
  const double cn = (double)c->K / (double)c->N, ce = cn + CRD_EPS, T = c->T;
  log_sum ls = {1.0, 0, 0};
  if (c->dense) { /* S = v M^T [B, N]; C [B, N] the draws' coefficients; dv = C M */
    const int N = (int)c->N;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, N, D, 1.0f, v, D, M, D, 0.0f, c->S, N);
    memset(c->C, 0, (size_t)B * N * sizeof(float));
    for (int b = 0; b < B; b++) {
      const int32_t *ib = idx + (size_t)b * K1;
      const float *Sb = c->S + (size_t)b * N;
      float *Cb = c->C + (size_t)b * N;
      for (int j = 0; j < K1; j++) Cb[ib[j]] += (float)(scale * nce_term(Sb[ib[j]], j, Z, T, cn, ce, &ls));
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, D, N, 1.0f, c->C, N, M, D, 0.0f, dv, D);
    return -log_total(&ls);
  }
  for (int b = 0; b < B; b++) {
    const int32_t *ib = idx + (size_t)b * K1;
    const float *vb = v + (size_t)b * D;
    for (int j = 0; j < K1; j++)
      c->coef[j] = nce_term(dot8(M + (size_t)ib[j] * D, vb, D), j, Z, T, cn, ce, &ls);
    float *g = dv + (size_t)b * D;
    memset(g, 0, (size_t)D * sizeof(float));
    for (int j = 0; j < K1; j++) {
      const float a = (float)(scale * c->coef[j]);
      const float *m = M + (size_t)ib[j] * D;
      for (int d = 0; d < D; d++) g[d] += a * m[d];
    }
  }
  return -log_total(&ls);
}

double fh_crd_loss(fh_crd *c, const float *fs, const float *ft, const int32_t *idx, int B, float weight,
                   float *dfs, float *ghead) {
  const int D = c->D, ds = c->ds, dt = c->dt;
  const float *Ws = c->head, *bs = Ws + (size_t)D * ds, *Wt = bs + D, *bt = Wt + (size_t)D * dt;
  fh_linear_forward(c->es, fs, Ws, bs, B, ds, D);
  fh_linear_forward(c->et, ft, Wt, bt, B, dt, D);
  normalise(c->vs, c->es, B, D);
  normalise(c->vt, c->et, B, D);
  if (c->Z[0] < 0) c->Z[0] = (float)z_of(c, c->mem_t, c->vs, idx, B);
  if (c->Z[1] < 0) c->Z[1] = (float)z_of(c, c->mem_s, c->vt, idx, B);
  const double scale = (double)weight / B;
  /* the student's anchor against the PM's bank: gradient to f_s and (W_s, b_s) */
  double L = side_loss(c, c->mem_t, c->vs, idx, B, c->Z[0], scale, c->dv);
  normalise_backward(c->de, c->dv, c->vs, c->es, B, D);
  float *g = ghead;
  if (dfs || g) fh_linear_backward(dfs, g ? g : NULL, g ? g + (size_t)D * ds : NULL, c->de, fs, Ws, B, ds, D);
  /* the PM's anchor against the student's bank: gradient to (W_t, b_t) only */
  L += side_loss(c, c->mem_s, c->vt, idx, B, c->Z[1], scale, c->dv);
  if (g) {
    normalise_backward(c->de, c->dv, c->vt, c->et, B, D);
    float *gt = g + (size_t)D * (ds + 1);
    fh_linear_backward(NULL, gt, gt + (size_t)D * dt, c->de, ft, Wt, B, dt, D);
  }
  return L / B;
}

void fh_crd_memory_rows(const fh_crd *c, const float *bank, const float *v, int64_t row0, int B, float *out) {
  const int D = c->D;
  const double m = c->mom;
  for (int b = 0; b < B; b++) {
    const float *old = bank + (size_t)(row0 + b) * D, *vb = v + (size_t)b * D;
    float *o = out + (size_t)b * D;
    double s = 0;
    for (int d = 0; d < D; d++) {
      o[d] = (float)(m * old[d] + (1.0 - m) * vb[d]);
      s += (double)o[d] * o[d];
    }
    const double inv = 1.0 / sqrt(s);
    for (int d = 0; d < D; d++) o[d] = (float)(o[d] * inv);
  }
}
