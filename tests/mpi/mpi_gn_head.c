/* AugFL's second-order server step (fl/blocks/gn_head.h) on the grid of all ranks
 * against LAPACK on rank 0 solving the same system built densely:
 *
 *   mpi_gn_head [samples [d [C [chunk]]]]          (defaults 157 13 5 16)
 *
 * Sample s (global index) has features f_s ~ U[-1, 1)^d and two distributions
 * p_s, q_s (softmaxes of normal draws), all from (seed, sample). Rank 0 forms
 * J with 2C rows per sample as gn_head.h defines it, A = sigma I + lam J^T J
 * and x = A^{-1} rhs by dpotrf/dpotrs. The distributed solve runs twice: with
 * the samples in near-equal blocks over ranks, and all on the last rank (the
 * others hold none). Each: max |x - x_lapack| / max |x_lapack| < 1e-10. The
 * chunk is small so that the Jacobian takes several chunks and the last one
 * is padded. Exit 0 when every check passed. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "core/error.h"
#include "core/rng.h"
#include "data/partition.h"
#include "fl/blocks/gn_head.h"
#include "linalg/grid.h"
#include "mpi_linalg_check.h"

#define TOL_VS_LAPACK 1e-10

static int S = 157, D = 13, C = 5, CHUNK = 16;

/* [f | p | q] of sample s */
static void sample(int s, float *row) {
  fh_rng r;
  fh_rng_init(&r, 42, FH_RNG_TEST, (uint32_t)s, 0);
  for (int j = 0; j < D; j++) row[j] = (float)(2.0 * fh_rng_uniform(&r) - 1.0);
  for (int t = 0; t < 2; t++) {
    float *p = row + D + t * C;
    double sum = 0;
    for (int c = 0; c < C; c++) sum += (p[c] = (float)exp(1.5 * fh_rng_normal(&r)));
    for (int c = 0; c < C; c++) p[c] = (float)(p[c] / sum);
  }
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  if (argc > 1) S = atoi(argv[1]);
  if (argc > 2) D = atoi(argv[2]);
  if (argc > 3) C = atoi(argv[3]);
  if (argc > 4) CHUNK = atoi(argv[4]);
  int rank, size;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const int w = D + 2 * C, n = C * (D + 1);
  const double cp = sqrt(0.7 / S), cq = sqrt(1.3 / S), sigma = 2.8, lam = 5.0;

  /* the reference on rank 0 */
  double *x_ref = NULL, *rhs0 = NULL;
  if (rank == 0) {
    const int rows = 2 * C * S;
    double *J = fh_calloc((size_t)rows * n, sizeof(double)); /* column-major [rows, n] */
    float *row = fh_malloc((size_t)w * sizeof(float));
    for (int s = 0; s < S; s++) {
      sample(s, row);
      for (int t = 0; t < 2 * C; t++) {
        const float *pr = row + D + (t < C ? 0 : C);
        const int k = t % C;
        const double sc = (t < C ? cp : cq) * sqrt((double)pr[k]);
        const int i = s * 2 * C + t;
        for (int c = 0; c < C; c++) {
          const double coef = sc * ((c == k) - (double)pr[c]);
          for (int j = 0; j < D; j++) J[i + (size_t)(c * D + j) * rows] = coef * row[j];
          J[i + (size_t)(C * D + c) * rows] = coef;
        }
      }
    }
    double *A = fh_calloc((size_t)n * n, sizeof(double));
    cblas_dsyrk(CblasColMajor, CblasLower, CblasTrans, n, rows, lam, J, rows, 0.0, A, n);
    for (int i = 0; i < n; i++) A[i + (size_t)i * n] += sigma;
    rhs0 = fh_malloc((size_t)n * sizeof(double));
    for (int i = 0; i < n; i++) rhs0[i] = sin(0.37 * (i + 1));
    x_ref = fh_malloc((size_t)n * sizeof(double));
    if (check_lapack_solve(n, 1, A, n, rhs0, n, x_ref) != 0) {
      fprintf(stderr, "reference: LAPACK failed\n");
      MPI_Abort(MPI_COMM_WORLD, 1);
    }
    free(J);
    free(A);
    free(row);
  }

  fh_gn_head *g = NULL;
  if (fh_gn_head_create(&g, MPI_COMM_WORLD, D, C, CHUNK) != 0) {
    fprintf(stderr, "gn_head_create: %s\n", fh_error_msg());
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  int ok = fh_gn_head_size(g) == n;
  for (int layout = 0; layout < 2; layout++) {
    int64_t b, e;
    if (layout == 0) fh_block_range(S, size, rank, &b, &e);
    else b = rank == size - 1 ? 0 : S, e = S;
    const int mine = (int)(e - b);
    float *rows = fh_malloc((size_t)(mine ? mine : 1) * w * sizeof(float));
    for (int s = 0; s < mine; s++) sample((int)b + s, rows + (size_t)s * w);
    double *x = fh_malloc((size_t)n * sizeof(double));
    if (rank == 0) memcpy(x, rhs0, (size_t)n * sizeof(double));
    int rc = fh_gn_head_solve(g, mine, rows, cp, cq, sigma, lam, x);
    if (rank == 0) {
      double err = rc == 0 ? check_max_rel_diff(n, 1, x, n, x_ref, n) : INFINITY;
      int pass = rc == 0 && err < TOL_VS_LAPACK;
      printf("  %d ranks, samples %s: %d unknowns, max rel diff vs LAPACK %.2e (< %.0e): %s\n", size,
             layout == 0 ? "in blocks" : "on the last rank", n, err, TOL_VS_LAPACK, pass ? "ok" : "FAILED");
      if (rc) printf("  error: %s\n", fh_error_msg());
      ok &= pass;
    }
    free(rows);
    free(x);
  }
  fh_gn_head_free(g);
  MPI_Bcast(&ok, 1, MPI_INT, 0, MPI_COMM_WORLD);
  free(x_ref);
  free(rhs0);
  fh_linalg_finalize();
  MPI_Finalize();
  return ok ? 0 : 1;
}
