/* Gram matrices on the grid against cblas on rank 0, and the Gauss-Newton shape
 * H = J^T J + lambda I solved on the grid against LAPACK.
 *
 *   mpi_linalg_gram [k [n [block]]]      (defaults 257 150 32)
 *
 * A [k, n] has entries uniform in [-1, 1) from a counter-based hash of (i, j), so
 * each rank fills its own part; C0 [n, n] is symmetric.
 * 1. C = alpha A^T A + beta C0 (fh_dist_gram): lower triangle vs cblas_dsyrk,
 *    strict upper triangle untouched; after fh_distmatrix_symmetrize_lower the
 *    whole of C vs cblas_dgemm. Relative max difference < 1e-13.
 * 2. The same with A in blocks other than C's (20 x 24 against 32 x 32).
 * 3. H = A^T A + 0.1 I built with fh_distmatrix_set + fh_dist_gram, solved with
 *    fh_spd_solve: vs LAPACK < 1e-10, residual < 1e-12. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <mpi.h>

#include "core/error.h"
#include "core/rng.h"
#include "linalg/distmatrix.h"
#include "linalg/gram.h"
#include "linalg/grid.h"
#include "linalg/solve.h"
#include "mpi_linalg_check.h"

#define ALPHA 0.7
#define BETA 0.3
#define LAMBDA 0.1
#define TOL_PRODUCT 1e-13

static double hash_entry(int i, int j, void *ctx) {
  (void)ctx;
  const uint32_t ctr[4] = {(uint32_t)i, (uint32_t)j, 0, 0}, key[2] = {0x5eed, 0};
  uint32_t out[4];
  fh_philox4x32_10(ctr, key, out);
  return out[0] * (2.0 / 4294967296.0) - 1.0;
}

static double c0_entry(int i, int j, void *ctx) {
  (void)ctx;
  return cos(0.05 * (i + j)) + (i == j ? 2.0 : 0.0);
}

static double rhs_entry(int i, int j, void *ctx) {
  (void)ctx;
  return sin(0.3 * i - 0.8 * j);
}

static double *full_from(int m, int n, fh_entry_fn f) {
  double *x = fh_malloc((size_t)m * n * sizeof *x);
  for (int j = 0; j < n; ++j)
    for (int i = 0; i < m; ++i) x[i + (size_t)j * m] = f(i, j, NULL);
  return x;
}

/* max relative difference over the lower (lower = 1) or strict upper triangle. */
static double triangle_diff(int n, const double *x, const double *y, int lower) {
  double diff = 0.0, scale = 0.0;
  for (int j = 0; j < n; ++j)
    for (int i = lower ? j : 0; i < (lower ? n : j); ++i) {
      diff = fmax(diff, fabs(x[i + (size_t)j * n] - y[i + (size_t)j * n]));
      scale = fmax(scale, fabs(y[i + (size_t)j * n]));
    }
  return scale > 0.0 ? diff / scale : diff;
}

static int gram_case(const fh_grid *g, int k, int n, int a_mb, int a_nb) {
  fh_distmatrix *a = NULL, *c = NULL;
  if (fh_distmatrix_create(g, k, n, a_mb, a_nb, &a) || fh_distmatrix_create(g, n, n, 0, 0, &c))
    return 0;
  fh_distmatrix_fill(a, hash_entry, NULL);
  fh_distmatrix_fill(c, c0_entry, NULL);
  int rc = fh_dist_gram(ALPHA, a, BETA, c);
  if (rc != 0) fprintf(stderr, "rank %d: fh_dist_gram: %s\n", g->rank, fh_error_msg());
  double *got = g->rank == 0 ? fh_malloc((size_t)n * n * sizeof *got) : NULL;
  double *sym = g->rank == 0 ? fh_malloc((size_t)n * n * sizeof *sym) : NULL;
  fh_distmatrix_gather(c, got, n);
  if (fh_distmatrix_symmetrize_lower(c) != 0) rc = 1;
  fh_distmatrix_gather(c, sym, n);
  int ok = rc == 0;
  if (g->rank == 0) {
    double *full_a = full_from(k, n, hash_entry);
    double *c0 = full_from(n, n, c0_entry);
    double *syrk = full_from(n, n, c0_entry), *gemm = full_from(n, n, c0_entry);
    cblas_dsyrk(CblasColMajor, CblasLower, CblasTrans, n, k, ALPHA, full_a, k, BETA, syrk, n);
    cblas_dgemm(CblasColMajor, CblasTrans, CblasNoTrans, n, n, k, ALPHA, full_a, k, full_a, k,
                BETA, gemm, n);
    double d_lower = triangle_diff(n, got, syrk, 1);
    double d_upper = triangle_diff(n, got, c0, 0);
    double d_full = check_max_rel_diff(n, n, sym, n, gemm, n);
    ok = ok && d_lower < TOL_PRODUCT && d_upper == 0.0 && d_full < TOL_PRODUCT;
    printf("  A %d x %d in %d x %d blocks, C in %d x %d: lower vs dsyrk %.2e, upper kept %s, "
           "symmetrized vs dgemm %.2e (< %.0e): %s\n",
           k, n, a->mb, a->nb, c->mb, c->nb, d_lower, d_upper == 0.0 ? "exactly" : "NO",
           d_full, TOL_PRODUCT, ok ? "ok" : "FAILED");
    free(full_a);
    free(c0);
    free(syrk);
    free(gemm);
  }
  free(got);
  free(sym);
  fh_distmatrix_destroy(c);
  fh_distmatrix_destroy(a);
  return ok;
}

static int gauss_newton_case(const fh_grid *g, int k, int n) {
  const int nrhs = 2;
  fh_distmatrix *j = NULL, *h = NULL, *b = NULL;
  if (fh_distmatrix_create(g, k, n, 0, 0, &j) || fh_distmatrix_create(g, n, n, 0, 0, &h) ||
      fh_distmatrix_create(g, n, nrhs, 0, 0, &b))
    return 0;
  fh_distmatrix_fill(j, hash_entry, NULL);
  fh_distmatrix_set(h, 0.0, LAMBDA);
  fh_distmatrix_fill(b, rhs_entry, NULL);
  int rc = fh_dist_gram(1.0, j, 1.0, h);
  if (rc == 0) rc = fh_spd_solve(h, b);
  if (rc != 0) fprintf(stderr, "rank %d: Gauss-Newton solve: %s\n", g->rank, fh_error_msg());
  double *x = g->rank == 0 ? fh_malloc((size_t)n * nrhs * sizeof *x) : NULL;
  fh_distmatrix_gather(b, x, n);
  int ok = rc == 0;
  if (g->rank == 0) {
    double *full_j = full_from(k, n, hash_entry), *full_b = full_from(n, nrhs, rhs_entry);
    double *full_h = fh_calloc((size_t)n * n, sizeof *full_h), *x_ref = fh_malloc((size_t)n * nrhs * sizeof *x_ref);
    for (int i = 0; i < n; ++i) full_h[i + (size_t)i * n] = LAMBDA;
    cblas_dgemm(CblasColMajor, CblasTrans, CblasNoTrans, n, n, k, 1.0, full_j, k, full_j, k,
                1.0, full_h, n);
    int info = check_lapack_solve(n, nrhs, full_h, n, full_b, n, x_ref);
    double err = check_max_rel_diff(n, nrhs, x, n, x_ref, n);
    double res = check_residual(n, nrhs, full_h, n, x, n, full_b, n);
    ok = ok && info == 0 && err < 1e-10 && res < 1e-12;
    printf("  H = J^T J + %.1f I, J %d x %d: solve vs LAPACK %.2e (< 1e-10), residual %.2e "
           "(< 1e-12): %s\n", LAMBDA, k, n, err, res, ok ? "ok" : "FAILED");
    free(full_j);
    free(full_b);
    free(full_h);
    free(x_ref);
  }
  free(x);
  fh_distmatrix_destroy(b);
  fh_distmatrix_destroy(h);
  fh_distmatrix_destroy(j);
  return ok;
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  const int k = argc > 1 ? atoi(argv[1]) : 257;
  const int n = argc > 2 ? atoi(argv[2]) : 150;
  const int block = argc > 3 ? atoi(argv[3]) : 32;
  fh_grid *g = NULL;
  if (fh_grid_create(MPI_COMM_WORLD, block, &g) != 0) {
    fprintf(stderr, "grid: %s\n", fh_error_msg());
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  if (g->rank == 0) printf("Gram matrices on a %d x %d grid\n", g->nprow, g->npcol);
  int ok = gram_case(g, k, n, 0, 0);
  ok = gram_case(g, k, n, 20, 24) && ok;
  ok = gauss_newton_case(g, k, n) && ok;

  /* shapes that do not fit are refused before PBLAS sees them */
  fh_distmatrix *a = NULL, *c = NULL;
  if (fh_distmatrix_create(g, k, n, 0, 0, &a) || fh_distmatrix_create(g, n + 1, n + 1, 0, 0, &c))
    MPI_Abort(MPI_COMM_WORLD, 1);
  int rc = fh_dist_gram(1.0, a, 0.0, c);
  if (rc != FH_ERR_RUNTIME || !strstr(fh_error_msg(), "C must be")) {
    fprintf(stderr, "rank %d: mismatched Gram shapes gave %d \"%s\"\n", g->rank, rc, fh_error_msg());
    ok = 0;
  } else if (g->rank == 0) {
    printf("  mismatched shapes refused: %s\n", fh_error_msg());
  }
  fh_error_clear();
  fh_distmatrix_destroy(c);
  fh_distmatrix_destroy(a);

  int status = check_all_passed(g->comm, ok);
  fh_grid_destroy(g);
  fh_linalg_finalize();
  MPI_Finalize();
  return status;
}
