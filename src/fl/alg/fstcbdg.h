/* FST-CBDG's feature-space pieces, public so that tests can check them on
 * their own (the algorithm is src/fl/alg/fstcbdg.c). */
#ifndef FH_FSTCBDG_H
#define FH_FSTCBDG_H

#include <stdint.h>

#include "core/rng.h"

/* Class-balanced generation: for every class c in order, M rows
 *   x = t_c + sigma * e,  e ~ N(0, I_d)   (drawn from r in row-major order)
 * then, with normalise, x / ||x||; y = c. T [C, d]; x [C*M, d], y [C*M]:
 * rows c*M .. c*M+M-1 hold class c. */
void fh_fst_generate(const float *T, int C, int d, int M, float sigma, int normalise, fh_rng *r, float *x,
                     int32_t *y);

/* The same with a class covariance learned from features (the pseudo
 * covariance extension): for class c with m_c >= 2 member rows Z_c (rows
 * members[offsets[c] .. offsets[c+1]) of Z [n, d]), mean zbar_c, the draw is
 *   x = t_c + sqrt((1 - l_c) / (m_c - 1)) sum_i g_i (z_i - zbar_c) + sqrt(l_c) sigma e
 * with g ~ N(0, I_{m_c}) and e ~ N(0, I_d): exactly N(t_c, (1 - l_c) S_c +
 * l_c sigma^2 I), S_c the members' sample covariance, l_c = kappa / (m_c +
 * kappa) the shrinkage to the isotropic spread (classes with fewer than two
 * members use sigma^2 I alone). No d x d matrix is formed. Then normalised as
 * above (with normalise). scratch: [d] floats. */
void fh_fst_generate_cov(const float *T, int C, int d, int M, float sigma, float kappa, const float *Z,
                         const int *members, const int *offsets, int normalise, fh_rng *r, float *scratch,
                         float *x, int32_t *y);

#endif
