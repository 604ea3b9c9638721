/* Order-independent accumulation of weighted client contributions.
 *
 * A run's numbers must not depend on how many ranks ran it. Floating-point sums
 * depend on the grouping of the additions, so contributions are summed in
 * fixed point: each value weight * x[i] is rounded once, on the client, to an
 * int64 multiple of 2^-bits (run.accum_bits, default 32: resolution 2.3e-10),
 * and int64 addition is exact and associative, locally and in MPI_Reduce. The
 * result is bitwise identical for any rank count and any client placement.
 * With at most m contributions per sum, each one must satisfy
 * |weight * x| * 2^bits < 2^62 / m, so that no sum of them can overflow int64
 * (|sum| < 2^62); a larger one is reported as an error: that means divergence,
 * or bits set too high. */
#ifndef FH_ACCUMULATE_H
#define FH_ACCUMULATE_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
  size_t n;       /* payload length                        */
  int bits;       /* fixed-point fraction bits             */
  double scale;   /* 2^bits                                */
  double limit;   /* 2^62 / max_contributions: per-contribution bound, scaled */
  int64_t *sum;   /* [n + 1]: payload, then the weight sum  */
  /* fh_accum_share: sum lives in a shared-memory window of the node */
  struct fh_accum_shm *shm; /* NULL: private memory          */
} fh_accum;

/* max_contributions: how many fh_accum_add calls, over all ranks, one sum gets. */
void fh_accum_create(fh_accum *a, size_t n, int bits, int max_contributions);
/* Collective over comm: where all of comm's ranks share one node, moves the
 * sums into an MPI shared-memory window (their values kept), so that the
 * reductions over comm read the other ranks' sums in place: each rank sums
 * its 1/P block of every rank's sums, writing the block's total straight into
 * the root's sums (a reduce) or into every rank's (an allreduce), so that
 * nothing is copied after the additions. No message carries the data, and no
 * copy precedes the additions. No effect on one
 * rank or across nodes. The bits are those of MPI_Reduce either way. An
 * accumulator shared this way must be destroyed on every rank of comm at the
 * same point (fh_accum_destroy is then collective). */
void fh_accum_share(fh_accum *a, MPI_Comm comm);
void fh_accum_destroy(fh_accum *a);
void fh_accum_zero(fh_accum *a);
/* sum += weight * x (x [n]); also adds weight to the weight sum. Returns 0, or
 * FH_ERR_DIVERGED naming the first element that does not fit. */
int fh_accum_add(fh_accum *a, const float *x, double weight);
/* The same for a part: sums[off, off + count) += weight * x (x [count]). */
int fh_accum_add_range(fh_accum *a, const float *x, size_t off, size_t count, double weight);
/* Sums every rank's accumulator into rank `root` (MPI_Reduce on int64). */
void fh_accum_reduce(fh_accum *a, int root, MPI_Comm comm);
/* Same, but every rank gets the sum. */
void fh_accum_allreduce(fh_accum *a, MPI_Comm comm);
/* out[i] = sum[i] / weight_sum, in double then rounded to float; returns the
 * weight sum (0 when nobody contributed: out untouched). */
double fh_accum_mean(const fh_accum *a, float *out);
double fh_accum_weight(const fh_accum *a);

#endif
