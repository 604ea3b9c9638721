/* Truncated-SVD messages of a model's state: an update (a difference of two
 * states of one architecture) travels as the leading singular triplets of each
 * weight matrix, as FedKD sends its gradients. A weight of shape [out, ...]
 * is the matrix [out, numel / out] (a conv's [out, in*k*k]).
 *
 * A message has a fixed layout for the model, so that it fits a flat buffer
 * that is broadcast or reduced: each factored matrix [rows, cols] gets a block
 * of cap components, zero-padded beyond the rank used,
 *
 *   block = [ s (cap) | U (cap x rows) | V (cap x cols) ]   x ~ U^T diag(s) V
 *
 * (row j of U and V: the j-th left and right singular vectors), and every
 * other float of the state (biases, buffers, matrices too small to gain from
 * factors) follows as it is, in state order:
 *
 *   message = [ block of matrix 0 | block of matrix 1 | ... | the rest, dense ]
 *
 * cap = min(max_rank, rows, cols); a matrix whose block would not be smaller
 * than the matrix itself (cap (1 + rows + cols) >= rows cols) is sent dense.
 * The rank kept is the fewest singular values holding a fraction `energy` of
 * the squared Frobenius norm (FedKD's energy threshold), at most cap. */
#ifndef FH_LOWRANK_H
#define FH_LOWRANK_H

#include <stddef.h>

#include "nn/model.h"

typedef struct {
  size_t off;      /* where the matrix starts in the state vector */
  int rows, cols;
  int cap;         /* components of its block                     */
  size_t msg_off;  /* where its block starts in a message         */
} fh_lowrank_block;

typedef struct {
  int nblocks;
  fh_lowrank_block *b;  /* [nblocks] the factored matrices, in state order */
  size_t state_n;       /* floats of a state                               */
  size_t msg_n;         /* floats of a message                             */
  size_t dense_n;       /* of which sent as they are                       */
  char *dense_mask;     /* [state_n] 1: the float travels dense            */
  /* sgesdd workspace for the largest matrix */
  float *a, *s, *u, *vt, *work;
  int *iwork;
  int lwork;
} fh_lowrank;

/* What one encoding kept. */
typedef struct {
  size_t used;     /* floats of the message that carry factors or dense values
                      (the rest is padding)                                    */
  int clipped;     /* matrices whose energy rank exceeded cap                 */
  int failed;      /* matrices sgesdd could not factor (sent as rank 0)        */
} fh_lowrank_stats;

/* The layout for model m's state (fh_model_state_len floats): its parameter
 * views of two or more dimensions are factored with at most max_rank
 * components (>= 1). */
int fh_lowrank_create(fh_lowrank *lr, const fh_model *m, int max_rank);
void fh_lowrank_destroy(fh_lowrank *lr);

/* msg [msg_n] <- the message of x [state_n] keeping `energy` (in (0, 1]) of
 * each matrix. st may be NULL. */
void fh_lowrank_encode(fh_lowrank *lr, const float *x, double energy, float *msg, fh_lowrank_stats *st);
/* x [state_n] <- the state the message stands for (the factored matrices
 * rebuilt from their factors). */
void fh_lowrank_decode(const fh_lowrank *lr, const float *msg, float *x);

/* The truncation rank of singular values s [r] (descending) for `energy` of
 * their squared sum: the fewest leading ones holding it (0 when all are 0). */
int fh_lowrank_energy_rank(const float *s, int r, double energy);

#endif
