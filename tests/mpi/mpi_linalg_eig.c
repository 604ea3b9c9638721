/* The symmetric eigensolver on the grid (fh_sym_eig: pdsyevd, dsyevd on one
 * rank) against LAPACK's dsyevd on rank 0, and the top columns gathered to
 * rank 0 (fh_distmatrix_gather_cols).
 *
 *   mpi_linalg_eig [n [block]]        (defaults 200 32)
 *   mpi_linalg_eig n block time       times the solve only (nothing checked)
 *
 * A [n, n] symmetric with entries uniform in [-1, 1) from a counter-based hash
 * of (min(i, j), max(i, j)), so each rank fills its own part. Checks:
 * eigenvalues vs LAPACK, relative to max |w|, < 1e-12; every eigenvector vs
 * LAPACK's up to its sign < 1e-8 (a random matrix of this size has no
 * eigenvalue cluster that would make its eigenvectors ill-defined);
 * ||A Z - Z diag(w)||_F / ||A||_F < 1e-12 and ||Z^T Z - I||_F < 1e-12; the
 * gathered last 7 columns equal the same columns of the whole Z. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <mpi.h>

#include "core/error.h"
#include "core/rng.h"
#include "linalg/distmatrix.h"
#include "linalg/eig.h"
#include "linalg/grid.h"
#include "mpi_linalg_check.h"

static double sym_entry(int i, int j, void *ctx) {
  (void)ctx;
  const uint32_t ctr[4] = {(uint32_t)(i < j ? i : j), (uint32_t)(i < j ? j : i), 7, 0}, key[2] = {0xe16, 0};
  uint32_t out[4];
  fh_philox4x32_10(ctr, key, out);
  return out[0] * (2.0 / 4294967296.0) - 1.0;
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  const int n = argc > 1 ? atoi(argv[1]) : 200;
  const int block = argc > 2 ? atoi(argv[2]) : 32;
  const int timing = argc > 3 && strcmp(argv[3], "time") == 0;
  fh_grid *g = NULL;
  if (fh_grid_create(MPI_COMM_WORLD, block, &g) != 0) {
    fprintf(stderr, "grid: %s\n", fh_error_msg());
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  fh_distmatrix *a = NULL, *z = NULL;
  if (fh_distmatrix_create(g, n, n, 0, 0, &a) || fh_distmatrix_create(g, n, n, 0, 0, &z)) MPI_Abort(MPI_COMM_WORLD, 1);
  fh_distmatrix_fill(a, sym_entry, NULL);
  double *w = fh_malloc((size_t)n * sizeof *w);
  MPI_Barrier(MPI_COMM_WORLD);
  double t0 = MPI_Wtime();
  int rc = fh_sym_eig(a, w, z);
  double t = MPI_Wtime() - t0;
  if (rc != 0) fprintf(stderr, "rank %d: fh_sym_eig: %s\n", g->rank, fh_error_msg());
  int ok = rc == 0;
  if (timing) {
    if (g->rank == 0) printf("eigendecomposition of %d x %d on a %d x %d grid (block %d): %.3f s\n", n, n, g->nprow,
                             g->npcol, block, t);
    fh_distmatrix_destroy(a);
    fh_distmatrix_destroy(z);
    free(w);
    int status = check_all_passed(g->comm, ok);
    fh_grid_destroy(g);
    fh_linalg_finalize();
    MPI_Finalize();
    return status;
  }
  const int nc = n < 7 ? n : 7;
  double *zf = g->rank == 0 ? fh_malloc((size_t)n * n * sizeof *zf) : NULL;
  double *top = g->rank == 0 ? fh_malloc((size_t)n * nc * sizeof *top) : NULL;
  fh_distmatrix_gather(z, zf, n);
  fh_distmatrix_gather_cols(z, n - nc, nc, top, n);
  if (g->rank == 0) {
    double *af = fh_malloc((size_t)n * n * sizeof *af), *ref = fh_malloc((size_t)n * n * sizeof *ref);
    for (int j = 0; j < n; j++)
      for (int i = 0; i < n; i++) af[i + (size_t)j * n] = ref[i + (size_t)j * n] = sym_entry(i, j, NULL);
    double *wref = fh_malloc((size_t)n * sizeof *wref), wq = 0;
    int info = 0, qry = -1, liwork = 0;
    dsyevd_("V", "L", &n, ref, &n, wref, &wq, &qry, &liwork, &qry, &info, 1, 1);
    int lwork = (int)wq + 1;
    double *work = fh_malloc((size_t)lwork * sizeof *work);
    int *iwork = fh_malloc((size_t)liwork * sizeof *iwork);
    dsyevd_("V", "L", &n, ref, &n, wref, work, &lwork, iwork, &liwork, &info, 1, 1);
    double dw = 0, wmax = 0, dv = 0;
    for (int j = 0; j < n; j++) {
      dw = fmax(dw, fabs(w[j] - wref[j]));
      wmax = fmax(wmax, fabs(wref[j]));
      double dot = cblas_ddot(n, zf + (size_t)j * n, 1, ref + (size_t)j * n, 1), s = dot < 0 ? -1 : 1;
      for (int i = 0; i < n; i++) dv = fmax(dv, fabs(zf[i + (size_t)j * n] - s * ref[i + (size_t)j * n]));
    }
    dw /= wmax;
    /* residual A Z - Z diag(w), orthogonality Z^T Z - I */
    double *r = fh_malloc((size_t)n * n * sizeof *r), *o = fh_malloc((size_t)n * n * sizeof *o);
    cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0, af, n, zf, n, 0.0, r, n);
    for (int j = 0; j < n; j++)
      for (int i = 0; i < n; i++) r[i + (size_t)j * n] -= w[j] * zf[i + (size_t)j * n];
    cblas_dgemm(CblasColMajor, CblasTrans, CblasNoTrans, n, n, n, 1.0, zf, n, zf, n, 0.0, o, n);
    for (int i = 0; i < n; i++) o[i + (size_t)i * n] -= 1.0;
    double res = check_frobenius(n, n, r, n) / check_frobenius(n, n, af, n), orth = check_frobenius(n, n, o, n);
    int same_top = memcmp(top, zf + (size_t)(n - nc) * n, (size_t)n * nc * sizeof *top) == 0;
    ok = ok && info == 0 && dw < 1e-12 && dv < 1e-8 && res < 1e-12 && orth < 1e-12 && same_top;
    printf("  A %d x %d on a %d x %d grid (block %d), %.3f s: eigenvalues vs dsyevd %.2e (< 1e-12), "
           "eigenvectors up to sign %.2e (< 1e-8), residual %.2e, orthogonality %.2e (< 1e-12), "
           "top %d columns gathered %s: %s\n",
           n, n, g->nprow, g->npcol, block, t, dw, dv, res, orth, nc, same_top ? "equal" : "DIFFER",
           ok ? "ok" : "FAILED");
    free(af), free(ref), free(wref), free(work), free(iwork), free(r), free(o);
  }
  free(zf);
  free(top);
  free(w);
  fh_distmatrix_destroy(a);
  fh_distmatrix_destroy(z);
  int status = check_all_passed(g->comm, ok);
  fh_grid_destroy(g);
  fh_linalg_finalize();
  MPI_Finalize();
  return status;
}
