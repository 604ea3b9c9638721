#include "linalg/solve.h"

#include "core/error.h"
#include "linalg/scalapack.h"

/* ScaLAPACK's INFO < 0: -(i * 100 + j) for entry j of array argument i, -i for
 * scalar argument i. Our checks below should make this unreachable. */
static int illegal_argument(const char *routine, int info) {
  const int code = -info;
  if (code >= 100)
    return FH_FAIL(FH_ERR_RUNTIME, "%s: entry %d of argument %d had an illegal value",
                   routine, code % 100, code / 100);
  return FH_FAIL(FH_ERR_RUNTIME, "%s: argument %d had an illegal value", routine, code);
}

static int not_positive_definite(const char *routine, int minor, int n) {
  return FH_FAIL(FH_ERR_RUNTIME,
                 "%s: matrix is not positive definite (leading minor %d of %d); the "
                 "system matrix must be symmetric positive definite, e.g. add a larger "
                 "multiple of the identity",
                 routine, minor, n);
}

static int check_shapes(const fh_distmatrix *a, const fh_distmatrix *b) {
  if (a->grid != b->grid)
    return FH_FAIL(FH_ERR_RUNTIME, "SPD solve: A and B live on different grids");
  if (a->m != a->n)
    return FH_FAIL(FH_ERR_RUNTIME, "SPD solve: A is %d x %d, not square", a->m, a->n);
  if (b->m != a->n)
    return FH_FAIL(FH_ERR_RUNTIME, "SPD solve: A is %d x %d but B has %d rows", a->m,
                   a->n, b->m);
  if (a->mb != a->nb)
    return FH_FAIL(FH_ERR_RUNTIME, "SPD solve: A needs square blocks, has %d x %d",
                   a->mb, a->nb);
  if (b->mb != a->mb)
    return FH_FAIL(FH_ERR_RUNTIME,
                   "SPD solve: B's row block (%d) must equal A's block (%d)", b->mb, a->mb);
  return 0;
}

static int solve_lapack(fh_distmatrix *a, fh_distmatrix *b) {
  int info = 0;
  dpotrf_("L", &a->n, a->local, &a->lld, &info, 1);
  if (info > 0) return not_positive_definite("dpotrf", info, a->n);
  if (info < 0) return illegal_argument("dpotrf", info);
  dpotrs_("L", &a->n, &b->n, a->local, &a->lld, b->local, &b->lld, &info, 1);
  if (info < 0) return illegal_argument("dpotrs", info);
  return 0;
}

static int solve_scalapack(fh_distmatrix *a, fh_distmatrix *b) {
  const int one = 1;
  int info = 0;
  pdpotrf_("L", &a->n, a->local, &one, &one, a->desc, &info, 1);
  if (info > 0) return not_positive_definite("pdpotrf", info, a->n);
  if (info < 0) return illegal_argument("pdpotrf", info);
  pdpotrs_("L", &a->n, &b->n, a->local, &one, &one, a->desc, b->local, &one, &one,
           b->desc, &info, 1);
  if (info < 0) return illegal_argument("pdpotrs", info);
  return 0;
}

int fh_spd_solve(fh_distmatrix *a, fh_distmatrix *b) {
  FH_TRY(check_shapes(a, b));
  if (a->n == 0) return 0;
  return a->grid->size == 1 ? solve_lapack(a, b) : solve_scalapack(a, b);
}

int fh_spd_solve_rank0(const fh_grid *g, int n, int nrhs, const double *a, int lda,
                       double *b, int ldb) {
  int rc = 0;
  if (n < 0 || nrhs < 0)
    rc = FH_FAIL(FH_ERR_RUNTIME, "SPD solve: negative size n = %d, nrhs = %d", n, nrhs);
  else if (g->rank == 0 && (!a || !b || lda < (n > 1 ? n : 1) || ldb < (n > 1 ? n : 1)))
    rc = FH_FAIL(FH_ERR_RUNTIME,
                 "SPD solve: rank 0 must pass A and B with leading dimensions >= n = %d "
                 "(got lda = %d, ldb = %d)", n, lda, ldb);
  /* The leading dimensions are known on rank 0 only: agree before any collective. */
  FH_TRY(fh_error_agree(g->comm, rc));

  fh_distmatrix *da = NULL, *db = NULL;
  FH_TRY(fh_distmatrix_create(g, n, n, 0, 0, &da));
  rc = fh_distmatrix_create(g, n, nrhs, 0, 0, &db);
  if (rc == 0) {
    fh_distmatrix_scatter(da, a, lda);
    fh_distmatrix_scatter(db, b, ldb);
    rc = fh_spd_solve(da, db);
    if (rc == 0) fh_distmatrix_gather(db, b, ldb);
  }
  fh_distmatrix_destroy(db);
  fh_distmatrix_destroy(da);
  return rc;
}
