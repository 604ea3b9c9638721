/* Symmetric eigendecomposition: dsyevd on one rank, pdsyevd on a grid. */
#include "linalg/eig.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "linalg/scalapack.h"

static int check_shapes(const fh_distmatrix *a, const fh_distmatrix *z) {
  if (a->grid != z->grid) return FH_FAIL(FH_ERR_RUNTIME, "eigensolver: A and Z live on different grids");
  if (a->m != a->n) return FH_FAIL(FH_ERR_RUNTIME, "eigensolver: A is %d x %d, not square", a->m, a->n);
  if (z->m != a->n || z->n != a->n)
    return FH_FAIL(FH_ERR_RUNTIME, "eigensolver: A is %d x %d but Z is %d x %d", a->n, a->n, z->m, z->n);
  if (a->mb != a->nb || z->mb != a->mb || z->nb != a->nb)
    return FH_FAIL(FH_ERR_RUNTIME, "eigensolver: A and Z need the same square blocks (A %d x %d, Z %d x %d)",
                   a->mb, a->nb, z->mb, z->nb);
  return 0;
}

static int info_error(const char *routine, int info, int n) {
  if (info < 0) return FH_FAIL(FH_ERR_RUNTIME, "%s: argument %d had an illegal value", routine, -info);
  return FH_FAIL(FH_ERR_RUNTIME, "%s: failed to converge on the %d x %d matrix (info %d)", routine, n, n, info);
}

static int eig_lapack(fh_distmatrix *a, double *w, fh_distmatrix *z) {
  const int n = a->n, qry = -1;
  int info = 0, liwork = 0;
  double wq = 0;
  dsyevd_("V", "L", &n, a->local, &a->lld, w, &wq, &qry, &liwork, &qry, &info, 1, 1);
  if (info != 0) return info_error("dsyevd", info, n);
  int lwork = (int)wq + 1;
  double *work = fh_malloc((size_t)lwork * sizeof *work);
  int *iwork = fh_malloc((size_t)(liwork > 1 ? liwork : 1) * sizeof *iwork);
  dsyevd_("V", "L", &n, a->local, &a->lld, w, work, &lwork, iwork, &liwork, &info, 1, 1);
  free(work);
  free(iwork);
  if (info != 0) return info_error("dsyevd", info, n);
  /* one rank: the local arrays are the whole matrices */
  for (int j = 0; j < n; j++)
    memcpy(z->local + (size_t)j * z->lld, a->local + (size_t)j * a->lld, (size_t)n * sizeof(double));
  return 0;
}

static int eig_scalapack(fh_distmatrix *a, double *w, fh_distmatrix *z) {
  const int n = a->n, one = 1, qry = -1;
  int info = 0, iq = 0;
  double wq = 0;
  pdsyevd_("V", "L", &n, a->local, &one, &one, a->desc, w, z->local, &one, &one, z->desc, &wq, &qry, &iq, &qry,
           &info, 1, 1);
  if (info != 0) return info_error("pdsyevd", info, n);
  /* The query comes out short on some grids (a 64 x 64 matrix in one block
   * on 1 x 2 ranks: PDORMTR then refuses its LWORK on one rank, leaves wrong
   * eigenvectors, or the ranks part ways and hang). Take twice the query or
   * the documented minimum with the largest local share, whichever is more:
   *   LWORK >= max(1 + 6N + 2 NP NQ, TRILWMIN) + 2N,
   *   TRILWMIN = 3N + max(NB (NP + 1), 3 NB),  LIWORK >= 7N + 8 NPCOL + 2. */
  const int nprow = a->grid->nprow, npcol = a->grid->npcol, nb = a->nb, zero = 0;
  const int nn = n > nb ? (n > 2 ? n : 2) : (nb > 2 ? nb : 2);
  const double np0 = numroc_(&nn, &nb, &zero, &zero, &nprow), nq0 = numroc_(&nn, &nb, &zero, &zero, &npcol);
  const double tri = 3.0 * n + fmax(nb * (np0 + 1), 3.0 * nb);
  const double documented = fmax(1 + 6.0 * n + 2 * np0 * nq0, tri) + 2.0 * n;
  int liwork = 7 * n + 8 * npcol + 2;
  if (iq > liwork) liwork = iq;
  const double lw = fmax(2 * wq, documented) + 1024.0;
  if (lw > 2147483647.0)
    return FH_FAIL(FH_ERR_RUNTIME, "pdsyevd: the %d x %d matrix needs a workspace over 2^31 doubles per rank; "
                                   "use more ranks", n, n);
  int lwork = (int)lw;
  double *work = fh_malloc((size_t)lwork * sizeof *work);
  int *iwork = fh_malloc((size_t)liwork * sizeof *iwork);
  pdsyevd_("V", "L", &n, a->local, &one, &one, a->desc, w, z->local, &one, &one, z->desc, work, &lwork, iwork,
           &liwork, &info, 1, 1);
  free(work);
  free(iwork);
  if (info != 0) return info_error("pdsyevd", info, n);
  return 0;
}

int fh_sym_eig(fh_distmatrix *a, double *w, fh_distmatrix *z) {
  FH_TRY(check_shapes(a, z));
  if (a->n == 0) return 0;
  return a->grid->size == 1 ? eig_lapack(a, w, z) : eig_scalapack(a, w, z);
}

void fh_distmatrix_gather_cols(const fh_distmatrix *z, int j0, int ncols, double *out, int ld) {
  if (z->m == 0 || ncols <= 0) return;
  int desc[FH_DESC_LEN] = {1, z->grid->ctxt_root, z->m, ncols, z->m, ncols, 0, 0, ld > 1 ? ld : 1};
  double unused = 0.0;
  const int one = 1, ja = j0 + 1;
  pdgemr2d_(&z->m, &ncols, z->local, &one, &ja, z->desc, z->grid->rank == 0 ? out : &unused, &one, &one, desc,
            &z->grid->ctxt);
}
