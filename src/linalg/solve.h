/* Symmetric positive definite solves A X = B by Cholesky (A = L L^T).
 *
 * On a grid of more than one rank the work is ScaLAPACK's (pdpotrf + pdpotrs);
 * on a single rank the local array already is the whole matrix in column-major
 * order, so LAPACK's dpotrf + dpotrs run on it directly.
 *
 * Errors are collective: INFO from ScaLAPACK is global, so every rank returns the
 * same code with the same message and none is left waiting, e.g.
 *   "pdpotrf: matrix is not positive definite (leading minor 17 of 300 ...)" */
#ifndef FH_LINALG_SOLVE_H
#define FH_LINALG_SOLVE_H

#include "linalg/distmatrix.h"
#include "linalg/grid.h"

/* Collective. a [n, n] SPD, only its lower triangle is read; b [n, nrhs].
 * On return b holds X and a's lower triangle holds L. a needs square blocks
 * (mb == nb) and b the same row blocks as a (b->mb == a->mb), both on one grid.
 * Returns 0, or FH_ERR_RUNTIME (not positive definite, or mismatched shapes). */
int fh_spd_solve(fh_distmatrix *a, fh_distmatrix *b);

/* Collective convenience for matrices that fit on rank 0: a [n, n] (leading
 * dimension lda, lower triangle read, not modified) and b [n, nrhs] (ldb) are
 * read on rank 0, distributed over g, solved, and X comes back into b on rank 0.
 * Other ranks pass NULL for a and b; n and nrhs must agree on every rank. */
int fh_spd_solve_rank0(const fh_grid *g, int n, int nrhs, const double *a, int lda,
                       double *b, int ldb);

#endif
