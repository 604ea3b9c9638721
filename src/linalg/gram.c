#include "linalg/gram.h"

#include <cblas.h>

#include "core/error.h"
#include "linalg/scalapack.h"

int fh_dist_gram(double alpha, const fh_distmatrix *a, double beta, fh_distmatrix *c) {
  /* PBLAS aborts the whole run on a bad argument, so everything it would check
   * is checked here first (all of it is global, so every rank agrees). */
  if (a->grid != c->grid)
    return FH_FAIL(FH_ERR_RUNTIME, "Gram matrix: A and C live on different grids");
  if (c->m != c->n || c->n != a->n)
    return FH_FAIL(FH_ERR_RUNTIME, "Gram matrix: A is %d x %d, so C must be %d x %d, not %d x %d",
                   a->m, a->n, a->n, a->n, c->m, c->n);
  if (c->n == 0) return 0;
  if (a->grid->size == 1) {
    /* One rank: the local arrays are the whole matrices, and one dsyrk call runs
     * about twice as fast as PBLAS's block-by-block loop over them. */
    cblas_dsyrk(CblasColMajor, CblasLower, CblasTrans, c->n, a->m, alpha, a->local, a->lld,
                beta, c->local, c->lld);
    return 0;
  }
  const int one = 1;
  pdsyrk_("L", "T", &c->n, &a->m, &alpha, a->local, &one, &one, a->desc, &beta, c->local,
          &one, &one, c->desc, 1, 1);
  return 0;
}
