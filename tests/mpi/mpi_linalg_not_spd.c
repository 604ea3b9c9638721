/* A matrix that is not positive definite must fail the same way on every rank,
 * with no rank left waiting, and leave the grid usable.
 *
 *   mpi_linalg_not_spd [n [block]]      (defaults 200 32)
 *
 * A = n I + 0.1 (i + j mod 7 - 3) / n off the diagonal, except A(100, 100) = -1
 * (0-based): the leading 100 x 100 block is diagonally dominant, so the first
 * minor that is not positive is the 101st, found away from rank 0 (n > 100).
 * Both fh_spd_solve (distributed fill) and fh_spd_solve_rank0 must return
 * FH_ERR_RUNTIME with
 *   "pdpotrf: matrix is not positive definite (leading minor 101 of n" (grid)
 *   "dpotrf: matrix is not positive definite (leading minor 101 of n"  (one rank)
 * on every rank; then an SPD solve on the same grid must succeed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "core/error.h"
#include "linalg/distmatrix.h"
#include "linalg/grid.h"
#include "linalg/solve.h"
#include "mpi_linalg_check.h"

#define BAD_INDEX 100 /* in block 3: owned by process (1, 1) on a 2 x 2 grid */

static double indefinite_entry(int i, int j, void *ctx) {
  const int n = *(const int *)ctx;
  if (i == j) return i == BAD_INDEX ? -1.0 : (double)n;
  return 0.1 * ((i + j) % 7 - 3) / n;
}

static double spd_entry(int i, int j, void *ctx) {
  const int n = *(const int *)ctx;
  return i == j ? (double)n : 0.1 * ((i + j) % 7 - 3) / n;
}

static double ones(int i, int j, void *ctx) {
  (void)i, (void)j, (void)ctx;
  return 1.0;
}

/* 1 when rc and the recorded message are the expected failure. */
static int expect_failure(const fh_grid *g, const char *what, int rc, const char *want) {
  int ok = rc == FH_ERR_RUNTIME && strstr(fh_error_msg(), want) != NULL;
  if (!ok)
    fprintf(stderr, "rank %d: %s: expected code %d and \"%s...\", got code %d and \"%s\"\n",
            g->rank, what, FH_ERR_RUNTIME, want, rc, fh_error_msg());
  else if (g->rank == 0)
    printf("  %-12s code %d: %s\n", what, rc, fh_error_msg());
  fh_error_clear();
  return ok;
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int n = argc > 1 ? atoi(argv[1]) : 200;
  const int block = argc > 2 ? atoi(argv[2]) : 32;
  if (n <= BAD_INDEX) {
    fprintf(stderr, "usage: mpi_linalg_not_spd [n > %d [block]]\n", BAD_INDEX);
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  fh_grid *g = NULL;
  if (fh_grid_create(MPI_COMM_WORLD, block, &g) != 0) {
    fprintf(stderr, "grid: %s\n", fh_error_msg());
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  if (g->rank == 0)
    printf("not-SPD matrix n=%d block=%d on a %d x %d grid\n", n, g->block, g->nprow, g->npcol);
  char want[128];
  snprintf(want, sizeof want, "%s: matrix is not positive definite (leading minor %d of %d)",
           g->size == 1 ? "dpotrf" : "pdpotrf", BAD_INDEX + 1, n);

  /* distributed path */
  fh_distmatrix *a = NULL, *b = NULL;
  if (fh_distmatrix_create(g, n, n, 0, 0, &a) || fh_distmatrix_create(g, n, 2, 0, 0, &b))
    MPI_Abort(MPI_COMM_WORLD, 1);
  fh_distmatrix_fill(a, indefinite_entry, &n);
  fh_distmatrix_fill(b, ones, NULL);
  int ok = expect_failure(g, "distributed", fh_spd_solve(a, b), want);

  /* rank-0 path */
  double *full_a = NULL, *full_b = NULL;
  if (g->rank == 0) {
    full_a = fh_malloc((size_t)n * n * sizeof *full_a);
    full_b = fh_malloc((size_t)n * sizeof *full_b);
    for (int j = 0; j < n; ++j)
      for (int i = 0; i < n; ++i) full_a[i + (size_t)j * n] = indefinite_entry(i, j, &n);
    for (int i = 0; i < n; ++i) full_b[i] = 1.0;
  }
  ok = expect_failure(g, "rank-0 path", fh_spd_solve_rank0(g, n, 1, full_a, n, full_b, n), want) &&
       ok;

  /* the grid still works: an SPD matrix now solves, and A x = 1 holds */
  fh_distmatrix_fill(a, spd_entry, &n);
  fh_distmatrix_fill(b, ones, NULL);
  int rc = fh_spd_solve(a, b);
  if (rc != 0) fprintf(stderr, "rank %d: SPD solve after the failure: %s\n", g->rank, fh_error_msg());
  ok = ok && rc == 0;
  if (rc == 0) {
    double *x = g->rank == 0 ? fh_malloc((size_t)n * 2 * sizeof *x) : NULL;
    fh_distmatrix_gather(b, x, n);
    if (g->rank == 0) {
      for (int j = 0; j < n; ++j)
        for (int i = 0; i < n; ++i) full_a[i + (size_t)j * n] = spd_entry(i, j, &n);
      double *one = fh_malloc((size_t)n * 2 * sizeof *one);
      for (int i = 0; i < 2 * n; ++i) one[i] = 1.0;
      double res = check_residual(n, 2, full_a, n, x, n, one, n);
      printf("  %-12s SPD solve on the same grid afterwards: residual %.2e (< 1e-12)\n", "recovery",
             res);
      ok = ok && res < 1e-12;
      free(one);
    }
    free(x);
  }

  free(full_a);
  free(full_b);
  fh_distmatrix_destroy(b);
  fh_distmatrix_destroy(a);
  int status = check_all_passed(g->comm, ok);
  fh_grid_destroy(g);
  fh_linalg_finalize();
  MPI_Finalize();
  return status;
}
