/* The Gauss-Newton system of a distillation regulariser over a model's
 * classifier (its last Linear layer, z = W f + b, W [C, d], b [C]), formed and
 * solved in distributed memory: AugFL's second-order server step.
 *
 * For R = (1/Ns) sum_s [gamma CE(z_s, y_s) + a_kd T^2 KL(pt_s || softmax(z_s / T))]
 * the Hessian with respect to the logits of sample s is
 *   A_s = [gamma (diag p - p p^T) + a_kd (diag q - q q^T)] / Ns,
 *   p = softmax(z_s), q = softmax(z_s / T),
 * and diag p - p p^T = M M^T with column k of M = sqrt(p_k) (e_k - p). So the
 * Gauss-Newton matrix of R over the classifier's n = C (d + 1) parameters is
 * H = J^T J with 2C rows per sample,
 *   sqrt(gamma / Ns) sqrt(p_k) (e_k - p) (x) [f_s; 1]    k = 0..C-1
 *   sqrt(a_kd / Ns)  sqrt(q_k) (e_k - q) (x) [f_s; 1]
 * in the parameter order of W (row-major) then b. Solved: (sigma I + lam H) x = rhs.
 *
 * Layout: the ranks form the BLACS grid of linalg/grid.h (nprow x npcol, rank
 * r at row r / npcol). The ranks of one process row gather their samples
 * (in rank order) within the row; J is built chunk by chunk as a matrix
 * [nprow * 2C * chunk, n] whose row block (2C * chunk rows) is one chunk of
 * one process row's samples, columns block-cyclic; each rank fills only its
 * own entries and H += lam J^T J by PBLAS pdsyrk (linalg/gram.h). Then
 * sigma goes on the diagonal and the Cholesky solve is ScaLAPACK's
 * (linalg/solve.h; LAPACK on one rank). No rank ever holds all samples, J or H.
 *
 * The result equals a LAPACK solve of the same system to rounding, but its
 * last bits depend on the grid (the sums of pdsyrk and pdpotrf group
 * differently): the one part of AugFL that is rank-count invariant only to
 * rounding.
 *
 * The whole model (fh_gn_model_*): the same system over all n parameters,
 * H = J^T J with the 2C rows of sample s
 *   sqrt(gamma / Ns) sqrt(p_k) (e_k - p)^T dz/dtheta,  sqrt(a_kd / Ns) sqrt(q_k) (e_k - q)^T dz/dtheta,
 * dz/dtheta [C, n] from C backward passes of the model from the unit logit
 * gradients (fh_model_backward through fl/blocks/model_pass.h), one sample at a
 * time in evaluation mode (running statistics: a per-sample Jacobian has no
 * batch). A sample here is its input x; the ranks of a process row gather
 * their inputs, and each computes the Jacobian of all of them but keeps only
 * its own block-cyclic columns of J. Same grid, chunks, pdsyrk and Cholesky. */
#ifndef FH_GN_HEAD_H
#define FH_GN_HEAD_H

#include <mpi.h>

#include "fl/blocks/model_pass.h"

/* The most classes either system takes (per-sample coefficients on the stack). */
#define FH_GN_MAX_CLASSES 1024

typedef struct fh_gn_head fh_gn_head;

/* Collective over comm: classifier with d inputs and C classes; chunk
 * samples per process row per Jacobian chunk (bounds the memory: each rank
 * holds 2C * chunk * n / npcol doubles of J and n^2 / (nprow npcol) of H). */
int fh_gn_head_create(fh_gn_head **out, MPI_Comm comm, int d, int C, int chunk);
void fh_gn_head_free(fh_gn_head *g); /* collective */

/* Unknowns C (d + 1). */
int fh_gn_head_size(const fh_gn_head *g);

/* Collective. This rank's n samples: rows [n, d + 2C] = [f | p | q] (floats,
 * p and q each a distribution). cp = sqrt(gamma / Ns), cq = sqrt(a_kd / Ns).
 * rhs [C (d + 1)] on rank 0 (ignored elsewhere) is overwritten by x. Errors
 * (a system that is not positive definite) are agreed over ranks. */
int fh_gn_head_solve(fh_gn_head *g, int n, const float *rows, double cp, double cq, double sigma, double lam,
                     double *rhs);

/* Collective: the whole model behind pass (its parameters are read at each
 * solve), n = fh_model_nparams unknowns, inputs of dim floats, C classes,
 * temperature T of q; chunk samples per process row per Jacobian chunk
 * (each rank holds 2C * chunk * n / npcol doubles of J). Free with
 * fh_gn_head_free; the pass stays the caller's. */
int fh_gn_model_create(fh_gn_head **out, MPI_Comm comm, fh_model_pass *pass, int n, int dim, int C, double T,
                       int chunk);
/* Collective. This rank's n samples x [n, dim]; cp, cq, sigma, lam, rhs as
 * in fh_gn_head_solve, over all the model's parameters. The model's grads
 * are overwritten. */
int fh_gn_model_solve(fh_gn_head *g, int n, const float *x, double cp, double cq, double sigma, double lam,
                      double *rhs);

#endif
