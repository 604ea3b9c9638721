/* A dense m x n matrix of doubles distributed 2-D block-cyclically over a grid
 * (ScaLAPACK's layout): global block (I, J) of size mb x nb lives on process
 * (I mod nprow, J mod npcol), blocks stored column-major in a local array
 * local [lld, local_cols]. The first block sits on process (0, 0).
 *
 * A matrix is made on every rank of the grid (collective); a big one need never
 * exist whole on any rank: fill it with fh_distmatrix_fill, where each rank
 * evaluates only its own entries. Small ones can come from and go to rank 0 with
 * scatter / gather. Indices in this API are 0-based. */
#ifndef FH_LINALG_DISTMATRIX_H
#define FH_LINALG_DISTMATRIX_H

#include "linalg/grid.h"
#include "linalg/scalapack.h"

typedef struct fh_distmatrix {
  const fh_grid *grid;
  int m, n;                   /* global shape                                    */
  int mb, nb;                 /* block shape                                     */
  int local_rows, local_cols; /* this rank's share                               */
  int lld;                    /* leading dimension of local, >= max(1, local_rows) */
  int desc[FH_DESC_LEN];      /* ScaLAPACK descriptor                            */
  double *local;              /* [lld, local_cols], column-major, zeroed at create */
} fh_distmatrix;

/* Collective over the grid. mb, nb <= 0 take the grid's block. m, n >= 0. */
int fh_distmatrix_create(const fh_grid *g, int m, int n, int mb, int nb,
                         fh_distmatrix **out);
void fh_distmatrix_destroy(fh_distmatrix *a); /* NULL is a no-op */

/* Global 0-based index of local 0-based row li / column lj on this rank. */
int fh_distmatrix_global_row(const fh_distmatrix *a, int li);
int fh_distmatrix_global_col(const fh_distmatrix *a, int lj);

/* Each rank sets its own entries a(i, j) = f(i, j, ctx); no communication. */
typedef double (*fh_entry_fn)(int i, int j, void *ctx);
void fh_distmatrix_fill(fh_distmatrix *a, fh_entry_fn f, void *ctx);

/* a := diag on the diagonal, offdiag elsewhere (pdlaset). */
void fh_distmatrix_set(fh_distmatrix *a, double offdiag, double diag);

/* Collective. full [m, n] column-major with leading dimension ld >= max(1, m)
 * lives on rank 0 of the grid; other ranks pass NULL (ignored). */
void fh_distmatrix_scatter(fh_distmatrix *a, const double *full, int ld);
void fh_distmatrix_gather(const fh_distmatrix *a, double *full, int ld);

/* Collective: copies the lower triangle of a square matrix onto its upper one,
 * so a matrix of which only the lower triangle was computed (fh_dist_gram)
 * becomes the full symmetric matrix. FH_ERR_RUNTIME when a is not square. */
int fh_distmatrix_symmetrize_lower(fh_distmatrix *a);

#endif
