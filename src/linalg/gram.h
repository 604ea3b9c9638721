/* Gram matrices on the grid: C := alpha * A^T A + beta * C (PBLAS pdsyrk), the
 * shape of Gauss-Newton matrices J^T J built from a distributed Jacobian. */
#ifndef FH_LINALG_GRAM_H
#define FH_LINALG_GRAM_H

#include "linalg/distmatrix.h"

/* Collective. a [k, n], c [n, n] on the same grid. Only the lower triangle of c
 * is updated (what fh_spd_solve reads); the strict upper triangle is left as it
 * was. fh_distmatrix_symmetrize_lower makes c full when that is needed.
 * Returns 0, or FH_ERR_RUNTIME for mismatched shapes or grids. */
int fh_dist_gram(double alpha, const fh_distmatrix *a, double beta, fh_distmatrix *c);

#endif
