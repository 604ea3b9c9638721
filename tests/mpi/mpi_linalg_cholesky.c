/* SPD solves on the grid of all ranks against LAPACK on rank 0.
 *
 *   mpi_linalg_cholesky [n [block [nrhs]]]      (defaults 300 32 3)
 *
 * 1. rank-0 path: A = M^T M + n I (M uniform in [-1, 1) from a fixed seed) and B
 *    on rank 0, with padded leading dimensions, through fh_spd_solve_rank0.
 * 2. distributed path: A(i, j) = rho^|i - j| (Kac-Murdock-Szego, SPD for
 *    |rho| < 1) and B(i, j) = sin(...) filled by each rank locally, fh_spd_solve,
 *    X gathered to rank 0.
 * 3. sub-communicators (2 ranks or more): the ranks split by parity, each half
 *    builds its own grid (while the grid of all ranks still exists) and runs 2.
 *    with its own n; the odd half's rank 0 is not MPI_COMM_WORLD's rank 0.
 * Each: max |X - X_lapack| / max |X_lapack| < 1e-10 and
 * ||A X - B||_F / (||A||_F ||X||_F) < 1e-12. Exit 0 when every check passed. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <mpi.h>

#include "core/error.h"
#include "core/rng.h"
#include "linalg/distmatrix.h"
#include "linalg/grid.h"
#include "linalg/solve.h"
#include "mpi_linalg_check.h"

#define TOL_VS_LAPACK 1e-10
#define TOL_RESIDUAL 1e-12

static double kms_entry(int i, int j, void *ctx) {
  (void)ctx;
  return pow(0.6, abs(i - j));
}

static double rhs_entry(int i, int j, void *ctx) {
  (void)ctx;
  return sin(0.37 * (i + 1) + 1.3 * j);
}

/* Compares X with LAPACK on the full A and B; prints one line; 1 when passed. */
static int compare(const char *what, int n, int nrhs, const double *a, int lda,
                   const double *b, int ldb, const double *x, int ldx) {
  double *x_ref = fh_malloc((size_t)n * nrhs * sizeof *x_ref);
  int info = check_lapack_solve(n, nrhs, a, lda, b, ldb, x_ref);
  double err = check_max_rel_diff(n, nrhs, x, ldx, x_ref, n);
  double res = check_residual(n, nrhs, a, lda, x, ldx, b, ldb);
  free(x_ref);
  int ok = info == 0 && err < TOL_VS_LAPACK && res < TOL_RESIDUAL;
  printf("  %-14s max rel diff vs LAPACK %.2e (< %.0e), residual %.2e (< %.0e): %s\n", what,
         err, TOL_VS_LAPACK, res, TOL_RESIDUAL, ok ? "ok" : "FAILED");
  return ok;
}

static int rank0_path(const fh_grid *g, int n, int nrhs) {
  const int lda = n + 5, ldb = n + 2; /* padding: leading dimensions are honoured */
  double *a = NULL, *b = NULL, *a_keep = NULL, *b_keep = NULL;
  if (g->rank == 0) {
    double *m = fh_malloc((size_t)n * n * sizeof *m);
    fh_rng r;
    fh_rng_init(&r, 20240611, FH_RNG_TEST, FH_RNG_NONE, FH_RNG_NONE);
    for (size_t k = 0; k < (size_t)n * n; ++k) m[k] = 2.0 * fh_rng_uniform(&r) - 1.0;
    a = fh_calloc((size_t)lda * n, sizeof *a);
    cblas_dgemm(CblasColMajor, CblasTrans, CblasNoTrans, n, n, n, 1.0, m, n, m, n, 0.0, a,
                lda);
    for (int i = 0; i < n; ++i) a[i + (size_t)i * lda] += n;
    b = fh_calloc((size_t)ldb * nrhs, sizeof *b);
    for (int j = 0; j < nrhs; ++j)
      for (int i = 0; i < n; ++i) b[i + (size_t)j * ldb] = 2.0 * fh_rng_uniform(&r) - 1.0;
    a_keep = fh_malloc((size_t)lda * n * sizeof *a_keep);
    b_keep = fh_malloc((size_t)ldb * nrhs * sizeof *b_keep);
    memcpy(a_keep, a, (size_t)lda * n * sizeof *a);
    memcpy(b_keep, b, (size_t)ldb * nrhs * sizeof *b);
    free(m);
  }
  int rc = fh_spd_solve_rank0(g, n, nrhs, a, lda, b, ldb);
  int ok = rc == 0;
  if (rc != 0) fprintf(stderr, "rank %d: fh_spd_solve_rank0 failed: %s\n", g->rank, fh_error_msg());
  if (g->rank == 0 && ok) {
    ok = check_max_rel_diff(n, n, a, lda, a_keep, lda) == 0.0;
    if (!ok) printf("  rank-0 path: A was modified\n");
    ok = compare("rank-0 path", n, nrhs, a_keep, lda, b_keep, ldb, b, ldb) && ok;
  }
  free(a);
  free(b);
  free(a_keep);
  free(b_keep);
  return ok;
}

static int distributed_path(const fh_grid *g, int n, int nrhs, const char *label) {
  fh_distmatrix *da = NULL, *db = NULL;
  if (fh_distmatrix_create(g, n, n, 0, 0, &da) || fh_distmatrix_create(g, n, nrhs, 0, 0, &db)) {
    fprintf(stderr, "rank %d: %s\n", g->rank, fh_error_msg());
    return 0;
  }
  fh_distmatrix_fill(da, kms_entry, NULL);
  fh_distmatrix_fill(db, rhs_entry, NULL);
  int rc = fh_spd_solve(da, db);
  if (rc != 0) fprintf(stderr, "rank %d: fh_spd_solve failed: %s\n", g->rank, fh_error_msg());
  double *x = g->rank == 0 ? fh_malloc((size_t)n * nrhs * sizeof *x) : NULL;
  if (rc == 0) fh_distmatrix_gather(db, x, n);
  int ok = rc == 0;
  if (g->rank == 0 && ok) {
    double *a = fh_malloc((size_t)n * n * sizeof *a);
    double *b = fh_malloc((size_t)n * nrhs * sizeof *b);
    for (int j = 0; j < n; ++j)
      for (int i = 0; i < n; ++i) a[i + (size_t)j * n] = kms_entry(i, j, NULL);
    for (int j = 0; j < nrhs; ++j)
      for (int i = 0; i < n; ++i) b[i + (size_t)j * n] = rhs_entry(i, j, NULL);
    ok = compare(label, n, nrhs, a, n, b, n, x, n);
    free(a);
    free(b);
  }
  free(x);
  fh_distmatrix_destroy(db);
  fh_distmatrix_destroy(da);
  return ok;
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  const int n = argc > 1 ? atoi(argv[1]) : 300;
  const int block = argc > 2 ? atoi(argv[2]) : 32;
  const int nrhs = argc > 3 ? atoi(argv[3]) : 3;
  fh_grid *g = NULL;
  if (fh_grid_create(MPI_COMM_WORLD, block, &g) != 0) {
    fprintf(stderr, "grid: %s\n", fh_error_msg());
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  if (g->rank == 0)
    printf("SPD solve n=%d block=%d nrhs=%d on a %d x %d grid (%s)\n", n, g->block, nrhs,
           g->nprow, g->npcol, g->size == 1 ? "LAPACK" : "ScaLAPACK");
  int ok = rank0_path(g, n, nrhs);
  ok = distributed_path(g, n, nrhs, "distributed") && ok;

  if (g->size >= 2) {
    const int parity = g->rank % 2;
    MPI_Comm half;
    MPI_Comm_split(MPI_COMM_WORLD, parity, g->rank, &half);
    fh_grid *hg = NULL;
    if (fh_grid_create(half, block, &hg) != 0) {
      fprintf(stderr, "rank %d: half grid: %s\n", g->rank, fh_error_msg());
      ok = 0;
    } else {
      char label[32];
      snprintf(label, sizeof label, "%s half %dx%d", parity ? "odd" : "even", hg->nprow,
               hg->npcol);
      ok = distributed_path(hg, n - 37 * parity, nrhs, label) && ok;
      fh_grid_destroy(hg);
    }
    MPI_Comm_free(&half);
  }
  int status = check_all_passed(g->comm, ok);
  fh_grid_destroy(g);
  fh_linalg_finalize();
  MPI_Finalize();
  return status;
}
