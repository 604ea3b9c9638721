/* FedGC's generator: PCA of the rows, then a Gaussian mixture per class in
 * the PCA space (see generator.h). */
#include "data/generator.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "linalg/distmatrix.h"
#include "linalg/eig.h"
#include "linalg/grid.h"

/* Rounding of the basis entries: multiples of 2^-BASIS_BITS. */
#define BASIS_BITS 16

/* ---- Gaussian mixture ---------------------------------------------------------- */

/* In-place lower Cholesky factor of a [q, q] (row-major, lower triangle read
 * and written, upper zeroed). Returns 0, or -1 when a is not positive definite. */
static int cholesky(double *a, int q) {
  for (int j = 0; j < q; j++) {
    double d = a[j * q + j];
    for (int k = 0; k < j; k++) d -= a[j * q + k] * a[j * q + k];
    if (!(d > 0)) return -1;
    d = sqrt(d);
    a[j * q + j] = d;
    for (int i = j + 1; i < q; i++) {
      double s = a[i * q + j];
      for (int k = 0; k < j; k++) s -= a[i * q + k] * a[j * q + k];
      a[i * q + j] = s / d;
    }
    for (int k = j + 1; k < q; k++) a[j * q + k] = 0;
  }
  return 0;
}

/* chol [q, q] := the Cholesky factor of cov, with cov's diagonal raised by
 * floor_ until it is positive definite (a few doublings at most). A cov that
 * no bump repairs (non-finite entries) gets the factor of diag(floor_), so a
 * bad fit degrades to narrow isotropic components instead of looping. */
static void factor(const double *cov, const double *floor_, int q, double *chol) {
  double bump = 0;
  for (int tries = 0; tries < 80; tries++, bump = bump > 0 ? 2 * bump : 1) {
    memcpy(chol, cov, (size_t)q * q * sizeof(double));
    for (int j = 0; j < q; j++) chol[j * q + j] += bump * floor_[j];
    if (cholesky(chol, q) == 0) return;
  }
  memset(chol, 0, (size_t)q * q * sizeof(double));
  for (int j = 0; j < q; j++) chol[j * q + j] = sqrt(floor_[j] > 0 ? floor_[j] : 1e-12);
}

/* k-means++ seeding of the k means mu [k, q]: each next center drawn with
 * probability ~ squared distance to the nearest center chosen so far. */
static void kmeanspp_seed(const double *z, int n, int q, int k, fh_rng *r, double *mu) {
  double *d2 = fh_malloc((size_t)n * sizeof(double));
  int first = (int)fh_rng_below(r, (uint32_t)n);
  memcpy(mu, z + (size_t)first * q, (size_t)q * sizeof(double));
  for (int i = 0; i < n; i++) d2[i] = INFINITY;
  for (int c = 1; c < k; c++) {
    double total = 0;
    for (int i = 0; i < n; i++) {
      double s = 0;
      for (int j = 0; j < q; j++) {
        const double e = z[(size_t)i * q + j] - mu[(size_t)(c - 1) * q + j];
        s += e * e;
      }
      if (s < d2[i]) d2[i] = s;
      total += d2[i];
    }
    int pick = n - 1;
    const double u = fh_rng_uniform(r) * total;
    if (total > 0) {
      double acc = 0;
      for (int i = 0; i < n; i++) {
        acc += d2[i];
        if (u < acc) {
          pick = i;
          break;
        }
      }
    } else {
      pick = (int)fh_rng_below(r, (uint32_t)n);
    }
    memcpy(mu + (size_t)c * q, z + (size_t)pick * q, (size_t)q * sizeof(double));
  }
  free(d2);
}

/* EM's E step: resp [n, k] the responsibilities of the k components (weights
 * w, means mu, covariances cov [k, q, q] factored into chol with floor_) for
 * every row. log N(z; mu, L L^T) = -(q log 2 pi + 2 sum log L_jj + |L^-1 (z - mu)|^2) / 2.
 * Scratch: logc [k], e [q]. */
static void gmm_e_step(const double *z, int n, int q, int k, const double *w, const double *mu, const double *cov,
                       const double *floor_, double *chol, double *logc, double *e, double *resp) {
  const size_t qq = (size_t)q * q;
  for (int c = 0; c < k; c++) {
    factor(cov + c * qq, floor_, q, chol + c * qq);
    double s = q * log(2 * M_PI);
    for (int j = 0; j < q; j++) s += 2 * log(chol[c * qq + (size_t)j * q + j]);
    logc[c] = (w[c] > 0 ? log(w[c]) : -INFINITY) - 0.5 * s;
  }
  for (int i = 0; i < n; i++) {
    double *ri = resp + (size_t)i * k, best = -INFINITY;
    for (int c = 0; c < k; c++) {
      const double *L = chol + c * qq;
      double s = 0;
      for (int j = 0; j < q; j++) { /* forward substitution L e = z - mu */
        double t = z[(size_t)i * q + j] - mu[(size_t)c * q + j];
        for (int l = 0; l < j; l++) t -= L[(size_t)j * q + l] * e[l];
        e[j] = t / L[(size_t)j * q + j];
        s += e[j] * e[j];
      }
      ri[c] = logc[c] - 0.5 * s;
      if (ri[c] > best) best = ri[c];
    }
    double tot = 0;
    for (int c = 0; c < k; c++) tot += ri[c] = exp(ri[c] - best);
    for (int c = 0; c < k; c++) ri[c] /= tot;
  }
}

/* EM's M step: weights, means and (full or diagonal) covariances from resp,
 * each variance at least floor_; an empty component keeps its place. */
static void gmm_m_step(const double *z, int n, int q, int k, int full, const double *resp, const double *floor_,
                       double *w, double *mu, double *cov, double *e) {
  const size_t qq = (size_t)q * q;
  for (int c = 0; c < k; c++) {
    double nc = 0;
    for (int i = 0; i < n; i++) nc += resp[(size_t)i * k + c];
    w[c] = nc / n;
    if (nc < 1e-10) continue;
    double *m = mu + (size_t)c * q, *v = cov + c * qq;
    for (int j = 0; j < q; j++) m[j] = 0;
    for (int i = 0; i < n; i++) {
      const double a = resp[(size_t)i * k + c];
      for (int j = 0; j < q; j++) m[j] += a * z[(size_t)i * q + j];
    }
    for (int j = 0; j < q; j++) m[j] /= nc;
    memset(v, 0, qq * sizeof(double));
    for (int i = 0; i < n; i++) {
      const double a = resp[(size_t)i * k + c];
      for (int j = 0; j < q; j++) e[j] = z[(size_t)i * q + j] - m[j];
      for (int j = 0; j < q; j++)
        for (int l = full ? 0 : j; l <= j; l++) v[(size_t)j * q + l] += a * e[j] * e[l];
    }
    for (int j = 0; j < q; j++) {
      for (int l = 0; l <= j; l++) v[(size_t)j * q + l] /= nc;
      for (int l = 0; l < j; l++) v[(size_t)l * q + j] = v[(size_t)j * q + l];
      if (v[(size_t)j * q + j] < floor_[j]) v[(size_t)j * q + j] = floor_[j];
    }
  }
}

int fh_gmm_fit(const double *z, int n, int q, int K, int iters, double var_floor, int full, fh_rng *r, double *w,
               double *mu, double *cov) {
  if (n <= 0 || K <= 0) return 0;
  const int k = K < n ? K : n;
  const size_t qq = (size_t)q * q;
  double *dmean = fh_calloc((size_t)q, sizeof(double)), *floor_ = fh_calloc((size_t)q, sizeof(double));
  for (int i = 0; i < n; i++)
    for (int j = 0; j < q; j++) dmean[j] += z[(size_t)i * q + j];
  for (int j = 0; j < q; j++) dmean[j] /= n;
  for (int i = 0; i < n; i++)
    for (int j = 0; j < q; j++) {
      const double e = z[(size_t)i * q + j] - dmean[j];
      floor_[j] += e * e;
    }
  memset(cov, 0, (size_t)k * qq * sizeof(double));
  for (int j = 0; j < q; j++) {
    const double v = floor_[j] / n;
    floor_[j] = var_floor * v > 1e-12 ? var_floor * v : 1e-12;
    for (int c = 0; c < k; c++) cov[c * qq + (size_t)j * q + j] = v > floor_[j] ? v : floor_[j];
  }
  kmeanspp_seed(z, n, q, k, r, mu);
  for (int c = 0; c < k; c++) w[c] = 1.0 / k;
  double *resp = fh_malloc((size_t)n * (size_t)k * sizeof(double));
  double *logc = fh_malloc((size_t)k * sizeof(double)), *chol = fh_malloc((size_t)k * qq * sizeof(double));
  double *e = fh_malloc((size_t)q * sizeof(double));
  for (int it = 0; it < iters; it++) {
    gmm_e_step(z, n, q, k, w, mu, cov, floor_, chol, logc, e, resp);
    gmm_m_step(z, n, q, k, full, resp, floor_, w, mu, cov, e);
  }
  free(resp);
  free(logc);
  free(chol);
  free(e);
  free(dmean);
  free(floor_);
  return k;
}

/* ---- PCA ------------------------------------------------------------------------- */

/* 2^e with bound * 2^e <= 2^61: no sum of values up to bound overflows int64. */
static double fixed_scale(double bound) {
  if (!(bound > 0)) bound = 1;
  return ldexp(1.0, 61 - (int)ceil(log2(bound)) - 1);
}

static void sum_fixed(int64_t *acc, const double *v, size_t n, double scale) {
  for (size_t i = 0; i < n; i++) acc[i] += llround(v[i] * scale);
}

/* mean [d] and the lower triangle of the covariance cov [d, d] (column-major)
 * of all ranks' rows, the same bits on any rank count. */
static void moments(MPI_Comm comm, int d, const float *x, int64_t N, const int *part_end, int nparts, double *mean,
                    double *cov) {
  double mx = 0;
  const int n = nparts > 0 ? part_end[nparts - 1] : 0;
  for (size_t i = 0; i < (size_t)n * d; i++)
    if (fabs(x[i]) > mx) mx = fabs(x[i]);
  MPI_Allreduce(MPI_IN_PLACE, &mx, 1, MPI_DOUBLE, MPI_MAX, comm);
  const size_t dd = (size_t)d * d;
  int64_t *acc = fh_calloc(dd, sizeof(int64_t));
  double *part = fh_malloc(dd * sizeof(double));
  /* pass 1: the mean */
  const double s1 = fixed_scale((double)N * mx);
  for (int p = 0, b = 0; p < nparts; b = part_end[p++]) {
    memset(part, 0, (size_t)d * sizeof(double));
    for (int i = b; i < part_end[p]; i++)
      for (int j = 0; j < d; j++) part[j] += x[(size_t)i * d + j];
    sum_fixed(acc, part, (size_t)d, s1);
  }
  MPI_Allreduce(MPI_IN_PLACE, acc, d, MPI_INT64_T, MPI_SUM, comm);
  for (int j = 0; j < d; j++) mean[j] = (double)acc[j] / s1 / (double)N;
  /* pass 2: the centred Gram matrix, lower triangle */
  memset(acc, 0, dd * sizeof(int64_t));
  const double s2 = fixed_scale((double)N * 4 * mx * mx);
  int maxrows = 0;
  for (int p = 0, b = 0; p < nparts; b = part_end[p++])
    if (part_end[p] - b > maxrows) maxrows = part_end[p] - b;
  double *xc = fh_malloc((size_t)(maxrows ? maxrows : 1) * d * sizeof(double));
  for (int p = 0, b = 0; p < nparts; b = part_end[p++]) {
    const int m = part_end[p] - b;
    for (int i = 0; i < m; i++)
      for (int j = 0; j < d; j++) xc[(size_t)i * d + j] = x[(size_t)(b + i) * d + j] - mean[j];
    memset(part, 0, dd * sizeof(double));
    /* xc is [d, m] column-major: part = xc xc^T */
    if (m > 0) cblas_dsyrk(CblasColMajor, CblasLower, CblasNoTrans, d, m, 1.0, xc, d, 0.0, part, d);
    for (int j = 0; j < d; j++) sum_fixed(acc + (size_t)j * d + j, part + (size_t)j * d + j, (size_t)(d - j), s2);
  }
  /* MPI counts are int: reduce in column chunks */
  const size_t chunk = (size_t)1 << 26;
  for (size_t off = 0; off < dd; off += chunk)
    MPI_Allreduce(MPI_IN_PLACE, acc + off, (int)(dd - off < chunk ? dd - off : chunk), MPI_INT64_T, MPI_SUM, comm);
  for (size_t i = 0; i < dd; i++) cov[i] = (double)acc[i] / s2 / (double)N;
  free(xc);
  free(part);
  free(acc);
}

typedef struct {
  const double *cov;
  int d;
} cov_ctx;

static double cov_entry(int i, int j, void *ctx) {
  const cov_ctx *c = ctx;
  return i >= j ? c->cov[i + (size_t)j * c->d] : c->cov[j + (size_t)i * c->d];
}

/* The basis V [q, d] (every rank) from the covariance (every rank). */
static int pca_basis(fh_generator *g, MPI_Comm comm, const double *cov) {
  const int d = g->d, q = g->q;
  int rank;
  MPI_Comm_rank(comm, &rank);
  fh_grid *grid = NULL;
  FH_TRY(fh_grid_create(comm, 0, &grid));
  g->nprow = grid->nprow, g->npcol = grid->npcol;
  fh_distmatrix *a = NULL, *z = NULL;
  int rc = fh_distmatrix_create(grid, d, d, 0, 0, &a);
  if (rc == 0) rc = fh_distmatrix_create(grid, d, d, 0, 0, &z);
  double *w = fh_malloc((size_t)d * sizeof(double));
  double *top = rank == 0 ? fh_malloc((size_t)d * q * sizeof(double)) : NULL;
  if (rc == 0) {
    cov_ctx cc = {cov, d};
    fh_distmatrix_fill(a, cov_entry, &cc);
    MPI_Barrier(comm);
    const double t0 = MPI_Wtime();
    rc = fh_sym_eig(a, w, z);
    g->eig_seconds = MPI_Wtime() - t0;
  }
  if (rc == 0) fh_distmatrix_gather_cols(z, d - q, q, top, d);
  fh_distmatrix_destroy(a);
  fh_distmatrix_destroy(z);
  fh_grid_destroy(grid);
  if (rc == 0 && rank == 0) {
    double kept = 0, total = 0;
    for (int j = 0; j < d; j++) total += w[j] > 0 ? w[j] : 0;
    for (int j = d - q; j < d; j++) kept += w[j] > 0 ? w[j] : 0;
    g->explained = total > 0 ? kept / total : 0;
    for (int j = 0; j < q; j++) {
      const double *src = top + (size_t)(q - 1 - j) * d; /* ascending -> decreasing */
      double *v = g->basis + (size_t)j * d;
      int imax = 0;
      for (int i = 1; i < d; i++)
        if (fabs(src[i]) > fabs(src[imax])) imax = i;
      const double sign = src[imax] < 0 ? -1.0 : 1.0;
      for (int i = 0; i < d; i++) v[i] = ldexp(nearbyint(ldexp(sign * src[i], BASIS_BITS)), -BASIS_BITS);
      /* modified Gram-Schmidt against the directions before it */
      for (int k = 0; k < j; k++) {
        const double dot = cblas_ddot(d, v, 1, g->basis + (size_t)k * d, 1);
        cblas_daxpy(d, -dot, g->basis + (size_t)k * d, 1, v, 1);
      }
      const double nrm = cblas_dnrm2(d, v, 1);
      if (!(nrm > 0)) {
        rc = FH_FAIL(FH_ERR_DATA, "fedgc: principal direction %d of the server rows vanished after rounding; the "
                                  "rows span fewer than %d dimensions: lower fedgc.pca_dims", j + 1, q);
        break;
      }
      cblas_dscal(d, 1.0 / nrm, v, 1);
    }
  }
  free(w);
  free(top);
  FH_TRY(fh_error_agree(comm, rc));
  MPI_Bcast(g->basis, d * q, MPI_DOUBLE, 0, comm);
  MPI_Bcast(&g->explained, 1, MPI_DOUBLE, 0, comm);
  MPI_Bcast(&g->eig_seconds, 1, MPI_DOUBLE, 0, comm);
  return 0;
}

/* ---- the whole fit ----------------------------------------------------------------- */

/* Rank 0: each class's mixture from all codes z [N, q] and labels [N]. */
static int fit_classes(fh_generator *g, const double *z, const int32_t *y, int64_t N, const fh_generator_params *p) {
  const int q = g->q, K = g->K;
  int64_t *count = fh_calloc((size_t)g->C, sizeof(int64_t));
  for (int64_t i = 0; i < N; i++) count[y[i]]++;
  int rc = 0;
  for (int j = 0; j < q; j++) {
    double m = 0, v = 0;
    for (int64_t i = 0; i < N; i++) m += z[i * q + j];
    m /= (double)N;
    for (int64_t i = 0; i < N; i++) v += (z[i * q + j] - m) * (z[i * q + j] - m);
    g->code_var[j] = v / (double)N;
  }
  double *zc = NULL;
  for (int c = 0; c < g->C && rc == 0; c++) {
    g->class_freq[c] = (double)count[c] / (double)N;
    if (count[c] == 0) {
      rc = FH_FAIL(FH_ERR_DATA, "fedgc: class %d has no row among the %lld server rows, so the generator cannot "
                                "learn it; raise data.server_fraction", c, (long long)N);
      break;
    }
    zc = realloc(zc, (size_t)count[c] * q * sizeof(double));
    int64_t m = 0;
    for (int64_t i = 0; i < N; i++)
      if (y[i] == c) memcpy(zc + (size_t)(m++) * q, z + i * q, (size_t)q * sizeof(double));
    fh_rng r;
    fh_rng_init(&r, p->seed, FH_RNG_GENERATE, FH_RNG_NONE, (uint32_t)c);
    const size_t qq = (size_t)q * q;
    g->ncomp[c] = fh_gmm_fit(zc, (int)m, q, K, p->em_iters, p->var_floor, p->full, &r, g->weight + (size_t)c * K,
                             g->mu + (size_t)c * K * q, g->cov + (size_t)c * K * qq);
    double *fl = fh_malloc((size_t)q * sizeof(double));
    for (int j = 0; j < q; j++) fl[j] = 1e-12 + 1e-9 * g->code_var[j];
    for (int k = 0; k < g->ncomp[c]; k++)
      factor(g->cov + ((size_t)c * K + k) * qq, fl, q, g->chol + ((size_t)c * K + k) * qq);
    free(fl);
  }
  free(zc);
  free(count);
  return rc;
}

int fh_generator_fit(fh_generator *g, MPI_Comm comm, int d, int C, const float *x, const int32_t *y, int n,
                     const int *part_end, int nparts, const fh_generator_params *p) {
  memset(g, 0, sizeof *g);
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  const int q = p->q, K = p->K;
  g->d = d, g->q = q, g->C = C, g->K = K;
  long long N = n;
  MPI_Allreduce(MPI_IN_PLACE, &N, 1, MPI_LONG_LONG, MPI_SUM, comm);
  int rc = 0;
  if (q < 1 || q > d)
    rc = FH_FAIL(FH_ERR_CONFIG, "fedgc.pca_dims = %d: must be between 1 and the sample size %d", q, d);
  else if (N < 2 || q > N)
    rc = FH_FAIL(FH_ERR_CONFIG, "fedgc.pca_dims = %d with %lld server rows: the generator needs more rows than "
                                "dimensions; raise data.server_fraction or lower fedgc.pca_dims", q, N);
  else if (N * (long long)q > 0x7fffffffLL)
    rc = FH_FAIL(FH_ERR_CONFIG, "fedgc: %lld server rows x %d dimensions of codes exceed 2^31 numbers; lower "
                                "data.server_fraction or fedgc.pca_dims", N, q);
  FH_TRY(fh_error_agree(comm, rc));
  g->mean = fh_malloc((size_t)d * sizeof(double));
  g->basis = fh_malloc((size_t)d * q * sizeof(double));
  g->code_var = fh_calloc((size_t)q, sizeof(double));
  g->ncomp = fh_calloc((size_t)C, sizeof(int));
  g->weight = fh_calloc((size_t)C * K, sizeof(double));
  g->mu = fh_calloc((size_t)C * K * q, sizeof(double));
  g->cov = fh_calloc((size_t)C * K * q * q, sizeof(double));
  g->chol = fh_calloc((size_t)C * K * q * q, sizeof(double));
  g->class_freq = fh_calloc((size_t)C, sizeof(double));

  double *cov = fh_malloc((size_t)d * d * sizeof(double));
  moments(comm, d, x, N, part_end, nparts, g->mean, cov);
  rc = pca_basis(g, comm, cov);
  free(cov);
  if (rc) return rc;

  /* codes of this rank's rows, part by part */
  double *z = fh_malloc((size_t)(n ? n : 1) * q * sizeof(double));
  double *xc = fh_malloc((size_t)(n ? n : 1) * d * sizeof(double));
  for (int i = 0; i < n; i++)
    for (int j = 0; j < d; j++) xc[(size_t)i * d + j] = x[(size_t)i * d + j] - g->mean[j];
  for (int pp = 0, b = 0; pp < nparts; b = part_end[pp++]) {
    const int m = part_end[pp] - b;
    if (m > 0)
      cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, q, d, 1.0, xc + (size_t)b * d, d, g->basis, d, 0.0,
                  z + (size_t)b * q, q);
  }
  free(xc);
  /* all codes and labels to rank 0, in rank (= row) order */
  int *counts = rank == 0 ? fh_malloc((size_t)size * sizeof(int)) : NULL;
  int *displs = rank == 0 ? fh_malloc((size_t)size * sizeof(int)) : NULL;
  MPI_Gather(&n, 1, MPI_INT, counts, 1, MPI_INT, 0, comm);
  double *zall = NULL;
  int32_t *yall = NULL;
  if (rank == 0) {
    zall = fh_malloc((size_t)N * q * sizeof(double));
    yall = fh_malloc((size_t)N * sizeof(int32_t));
    for (int r = 0, at = 0; r < size; at += counts[r++]) displs[r] = at;
  }
  MPI_Gatherv(y, n, MPI_INT32_T, yall, counts, displs, MPI_INT32_T, 0, comm);
  if (rank == 0)
    for (int r = 0; r < size; r++) counts[r] *= q, displs[r] *= q;
  MPI_Gatherv(z, n * q, MPI_DOUBLE, zall, counts, displs, MPI_DOUBLE, 0, comm);
  free(z);
  if (rank == 0) rc = fit_classes(g, zall, yall, N, p);
  free(zall);
  free(yall);
  free(counts);
  free(displs);
  FH_TRY(fh_error_agree(comm, rc));
  MPI_Bcast(g->code_var, q, MPI_DOUBLE, 0, comm);
  MPI_Bcast(g->ncomp, C, MPI_INT, 0, comm);
  MPI_Bcast(g->weight, C * K, MPI_DOUBLE, 0, comm);
  MPI_Bcast(g->mu, C * K * q, MPI_DOUBLE, 0, comm);
  MPI_Bcast(g->cov, C * K * q * q, MPI_DOUBLE, 0, comm);
  MPI_Bcast(g->chol, C * K * q * q, MPI_DOUBLE, 0, comm);
  MPI_Bcast(g->class_freq, C, MPI_DOUBLE, 0, comm);
  return 0;
}

void fh_generator_free(fh_generator *g) {
  if (!g) return;
  free(g->mean);
  free(g->basis);
  free(g->code_var);
  free(g->ncomp);
  free(g->weight);
  free(g->mu);
  free(g->cov);
  free(g->chol);
  free(g->class_freq);
  memset(g, 0, sizeof *g);
}

/* ---- sampling -------------------------------------------------------------------- */

void fh_generator_sample(const fh_generator *g, const fh_gen_options *o, int c, const float *anchor,
                         int32_t anchor_y, fh_rng *r, double *zbuf, float *x, int32_t *y) {
  const int q = g->q, d = g->d, K = g->K, nc = g->ncomp[c];
  const double *w = g->weight + (size_t)c * K;
  const double u_comp = fh_rng_uniform(r), u_temp = fh_rng_uniform(r);
  int comp = 0;
  if (o->design == FH_GEN_SINGLE) {
    for (int k = 1; k < nc; k++)
      if (w[k] > w[comp]) comp = k;
  } else if (o->design == FH_GEN_MULTI) {
    double acc = 0;
    comp = nc - 1;
    for (int k = 0; k < nc; k++) {
      acc += w[k];
      if (u_comp < acc) {
        comp = k;
        break;
      }
    }
  } else {
    comp = (int)(u_comp * nc);
    if (comp >= nc) comp = nc - 1;
  }
  const double temp = o->design == FH_GEN_DIVERSE ? o->tmin + (o->tmax - o->tmin) * u_temp : 1.0;
  double *zp = zbuf, *zr = zbuf + q, *z = zbuf + 2 * q;
  const double *m = g->mu + ((size_t)c * K + comp) * q, *L = g->chol + ((size_t)c * K + comp) * q * q;
  for (int j = 0; j < q; j++) z[j] = fh_rng_normal(r);
  for (int j = 0; j < q; j++) { /* z_p = mu + temp L e */
    double t = 0;
    for (int l = 0; l <= j; l++) t += L[(size_t)j * q + l] * z[l];
    zp[j] = m[j] + temp * t;
  }
  for (int j = 0; j < q; j++) zr[j] = o->noise * sqrt(g->code_var[j]) * fh_rng_normal(r);
  const double *pick = zp;
  *y = c;
  if (anchor && o->guidance != FH_GEN_PROMPT) {
    for (int j = 0; j < q; j++) {
      const double *b = g->basis + (size_t)j * d;
      double s = 0;
      for (int i = 0; i < d; i++) s += b[i] * ((double)anchor[i] - g->mean[i]);
      zr[j] += s;
    }
    if (o->guidance == FH_GEN_REAL) {
      pick = zr;
      *y = anchor_y;
    } else {
      const double s = o->strength;
      for (int j = 0; j < q; j++) z[j] = (1.0 - s) * zr[j] + s * zp[j];
      pick = z;
    }
  }
  double *acc = zbuf + 3 * q;
  memcpy(acc, g->mean, (size_t)d * sizeof(double));
  for (int j = 0; j < q; j++) cblas_daxpy(d, pick[j], g->basis + (size_t)j * d, 1, acc, 1);
  for (int i = 0; i < d; i++) x[i] = (float)acc[i];
}
