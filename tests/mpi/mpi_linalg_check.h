/* Reference computations and comparisons shared by the mpi_linalg_* programs.
 * Everything here runs on rank 0 on full column-major matrices. */
#ifndef MPI_LINALG_CHECK_H
#define MPI_LINALG_CHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "core/error.h"
#include "linalg/scalapack.h"

/* max |x - y| / max |y| over an m x n block (leading dimensions ldx, ldy). */
static inline double check_max_rel_diff(int m, int n, const double *x, int ldx,
                                        const double *y, int ldy) {
  double diff = 0.0, scale = 0.0;
  for (int j = 0; j < n; ++j)
    for (int i = 0; i < m; ++i) {
      diff = fmax(diff, fabs(x[i + (size_t)j * ldx] - y[i + (size_t)j * ldy]));
      scale = fmax(scale, fabs(y[i + (size_t)j * ldy]));
    }
  return scale > 0.0 ? diff / scale : diff;
}

static inline double check_frobenius(int m, int n, const double *x, int ldx) {
  double s = 0.0;
  for (int j = 0; j < n; ++j)
    for (int i = 0; i < m; ++i) s += x[i + (size_t)j * ldx] * x[i + (size_t)j * ldx];
  return sqrt(s);
}

/* ||A X - B||_F / (||A||_F ||X||_F) for a full symmetric A [n, n]. */
static inline double check_residual(int n, int nrhs, const double *a, int lda,
                                    const double *x, int ldx, const double *b, int ldb) {
  double *r = fh_malloc((size_t)n * nrhs * sizeof *r);
  for (int j = 0; j < nrhs; ++j) memcpy(r + (size_t)j * n, b + (size_t)j * ldb, n * sizeof *r);
  cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, n, nrhs, n, 1.0, a, lda, x, ldx,
              -1.0, r, n);
  double res = check_frobenius(n, nrhs, r, n) /
               (check_frobenius(n, n, a, lda) * check_frobenius(n, nrhs, x, ldx));
  free(r);
  return res;
}

/* X [n, nrhs] := A^{-1} B with LAPACK on copies (lower triangle of A read).
 * Returns LAPACK's INFO. */
static inline int check_lapack_solve(int n, int nrhs, const double *a, int lda,
                                     const double *b, int ldb, double *x) {
  double *l = fh_malloc((size_t)n * n * sizeof *l);
  for (int j = 0; j < n; ++j) memcpy(l + (size_t)j * n, a + (size_t)j * lda, n * sizeof *l);
  for (int j = 0; j < nrhs; ++j) memcpy(x + (size_t)j * n, b + (size_t)j * ldb, n * sizeof *x);
  int info = 0;
  dpotrf_("L", &n, l, &n, &info, 1);
  if (info == 0) dpotrs_("L", &n, &nrhs, l, &n, x, &n, &info, 1);
  free(l);
  return info;
}

/* Collective: every rank learns whether all ranks passed, rank 0 says so, and
 * the exit status (0 or 1) is returned on every rank. */
static inline int check_all_passed(MPI_Comm comm, int ok) {
  int all = 0, rank = 0, size = 0;
  MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, comm);
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  if (rank == 0) {
    if (all) printf("passed on all %d ranks\n", size);
    else printf("FAILED (messages above name the failing ranks)\n");
  }
  return all ? 0 : 1;
}

#endif
