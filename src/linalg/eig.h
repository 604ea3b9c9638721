/* Symmetric eigendecomposition A = Z diag(w) Z^T on the grid.
 *
 * On a grid of more than one rank the work is ScaLAPACK's divide-and-conquer
 * solver (pdsyevd); on a single rank the local array is the whole matrix, so
 * LAPACK's dsyevd runs on it directly. The two agree to rounding; the last
 * bits depend on the grid (the reductions group differently), and so may the
 * sign of each eigenvector and, within a cluster of equal eigenvalues, the
 * basis of its eigenspace.
 *
 * Errors are collective (INFO is global): every rank returns the same code. */
#ifndef FH_LINALG_EIG_H
#define FH_LINALG_EIG_H

#include "linalg/distmatrix.h"

/* Collective. a [n, n] symmetric, only its lower triangle is read and a is
 * destroyed; z [n, n] on the same grid with the same blocks (square). On
 * return w [n] (every rank) holds the eigenvalues in ascending order and
 * column j of z the eigenvector of w[j]. Returns 0, or FH_ERR_RUNTIME
 * (mismatched shapes, no convergence). */
int fh_sym_eig(fh_distmatrix *a, double *w, fh_distmatrix *z);

/* Collective: columns [j0, j0 + ncols) of z [m, n] to rank 0 into out
 * [m, ncols] (column-major, leading dimension ld >= m); other ranks pass NULL. */
void fh_distmatrix_gather_cols(const fh_distmatrix *z, int j0, int ncols, double *out, int ld);

#endif
