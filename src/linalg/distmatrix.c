#include "linalg/distmatrix.h"

#include <stdlib.h>

#include "core/error.h"

int fh_distmatrix_create(const fh_grid *g, int m, int n, int mb, int nb,
                         fh_distmatrix **out) {
  *out = NULL;
  if (m < 0 || n < 0)
    return FH_FAIL(FH_ERR_RUNTIME, "distributed matrix: negative shape %d x %d", m, n);
  fh_distmatrix *a = fh_calloc(1, sizeof *a);
  a->grid = g;
  a->m = m;
  a->n = n;
  a->mb = mb > 0 ? mb : g->block;
  a->nb = nb > 0 ? nb : g->block;
  const int zero = 0;
  a->local_rows = numroc_(&a->m, &a->mb, &g->myrow, &zero, &g->nprow);
  a->local_cols = numroc_(&a->n, &a->nb, &g->mycol, &zero, &g->npcol);
  a->lld = a->local_rows > 1 ? a->local_rows : 1;
  int info = 0;
  descinit_(a->desc, &a->m, &a->n, &a->mb, &a->nb, &zero, &zero, &g->ctxt, &a->lld,
            &info);
  if (info != 0) {
    free(a);
    return FH_FAIL(FH_ERR_RUNTIME,
                   "descinit: argument %d is illegal for a %d x %d matrix in %d x %d "
                   "blocks on a %d x %d grid",
                   -info, m, n, mb, nb, g->nprow, g->npcol);
  }
  a->local = fh_calloc((size_t)a->lld * (size_t)a->local_cols, sizeof(double));
  *out = a;
  return 0;
}

void fh_distmatrix_destroy(fh_distmatrix *a) {
  if (!a) return;
  free(a->local);
  free(a);
}

/* Block-cyclic map with the first block on process 0: local block li / mb on
 * process row p is global block (li / mb) * nprow + p. */
int fh_distmatrix_global_row(const fh_distmatrix *a, int li) {
  return ((li / a->mb) * a->grid->nprow + a->grid->myrow) * a->mb + li % a->mb;
}

int fh_distmatrix_global_col(const fh_distmatrix *a, int lj) {
  return ((lj / a->nb) * a->grid->npcol + a->grid->mycol) * a->nb + lj % a->nb;
}

void fh_distmatrix_fill(fh_distmatrix *a, fh_entry_fn f, void *ctx) {
  for (int lj = 0; lj < a->local_cols; ++lj) {
    const int j = fh_distmatrix_global_col(a, lj);
    double *col = a->local + (size_t)lj * a->lld;
    for (int li = 0; li < a->local_rows; ++li) col[li] = f(fh_distmatrix_global_row(a, li), j, ctx);
  }
}

void fh_distmatrix_set(fh_distmatrix *a, double offdiag, double diag) {
  const int one = 1;
  pdlaset_("A", &a->m, &a->n, &offdiag, &diag, a->local, &one, &one, a->desc, 1);
}

/* Descriptor of the whole matrix held on rank 0 as one block; on the other ranks
 * its context is -1, which tells pdgemr2d they hold no part of it. */
static void rank0_descriptor(const fh_distmatrix *a, int ld, int desc[FH_DESC_LEN]) {
  desc[FH_DESC_DTYPE] = 1;
  desc[FH_DESC_CTXT] = a->grid->ctxt_root;
  desc[FH_DESC_M] = a->m;
  desc[FH_DESC_N] = a->n;
  desc[FH_DESC_MB] = a->m;
  desc[FH_DESC_NB] = a->n;
  desc[FH_DESC_RSRC] = 0;
  desc[FH_DESC_CSRC] = 0;
  desc[FH_DESC_LLD] = ld > 1 ? ld : 1;
}

void fh_distmatrix_scatter(fh_distmatrix *a, const double *full, int ld) {
  if (a->m == 0 || a->n == 0) return;
  int desc_full[FH_DESC_LEN];
  rank0_descriptor(a, ld, desc_full);
  double unused = 0.0;
  const int one = 1;
  pdgemr2d_(&a->m, &a->n, a->grid->rank == 0 ? full : &unused, &one, &one, desc_full,
            a->local, &one, &one, a->desc, &a->grid->ctxt);
}

void fh_distmatrix_gather(const fh_distmatrix *a, double *full, int ld) {
  if (a->m == 0 || a->n == 0) return;
  int desc_full[FH_DESC_LEN];
  rank0_descriptor(a, ld, desc_full);
  double unused = 0.0;
  const int one = 1;
  pdgemr2d_(&a->m, &a->n, a->local, &one, &one, a->desc,
            a->grid->rank == 0 ? full : &unused, &one, &one, desc_full, &a->grid->ctxt);
}

int fh_distmatrix_symmetrize_lower(fh_distmatrix *a) {
  if (a->m != a->n)
    return FH_FAIL(FH_ERR_RUNTIME, "symmetrize: matrix is %d x %d, not square", a->m, a->n);
  if (a->n < 2) return 0;
  fh_distmatrix *t = NULL;
  FH_TRY(fh_distmatrix_create(a->grid, a->m, a->n, a->mb, a->nb, &t));
  const int one = 1, two = 2, n1 = a->n - 1;
  const double d_one = 1.0, d_zero = 0.0;
  /* t := a^T, then the strict upper triangle of a (the upper triangle of the
   * (n-1) x (n-1) block starting at global (1, 2)) := that of t. */
  pdtran_(&a->n, &a->n, &d_one, a->local, &one, &one, a->desc, &d_zero, t->local, &one,
          &one, t->desc);
  pdlacpy_("U", &n1, &n1, t->local, &one, &two, t->desc, a->local, &one, &two, a->desc, 1);
  fh_distmatrix_destroy(t);
  return 0;
}
