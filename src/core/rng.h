/* Counter-based random streams: Philox4x32-10 (Salmon et al., SC'11).
 *
 * A stream is keyed by (seed, purpose, client, round); the same key gives the same
 * numbers on whichever rank computes them, so a client's randomness does not depend
 * on the rank count or on which rank hosts it. Layout of the 128-bit counter:
 *   ctr[0] = block index within the stream (4 outputs per block)
 *   ctr[1] = purpose, ctr[2] = client, ctr[3] = round
 * and the 64-bit Philox key is the run seed. Use FH_RNG_NONE for "not per client"
 * or "not per round". */
#ifndef FH_RNG_H
#define FH_RNG_H

#include <stddef.h>
#include <stdint.h>

enum fh_rng_purpose {
  FH_RNG_SAMPLING = 1, /* which clients take part in a round           */
  FH_RNG_INIT,         /* initial model parameters                      */
  FH_RNG_DATA,         /* synthetic data generation                     */
  FH_RNG_SPLIT,        /* train/test split and partitioning             */
  FH_RNG_SHUFFLE,      /* minibatch order                               */
  FH_RNG_DROPOUT,
  FH_RNG_AUGMENT,
  FH_RNG_ALGORITHM,    /* algorithm-specific randomness                 */
  FH_RNG_EVAL,         /* evaluation: fine-tuning and held-out adaptation */
  FH_RNG_SERVER,       /* server-side data: its hold-out, pretraining order */
  FH_RNG_GENERATE,     /* generated data (FedGC): the generator's fit, each client's samples */
  FH_RNG_TEST = 1000   /* unit tests                                    */
};
#define FH_RNG_NONE 0xffffffffu

typedef struct {
  uint32_t key[2];
  uint32_t ctr[4];
  uint32_t buf[4];
  int used; /* outputs of buf already handed out (4 = refill) */
  int has_spare;
  double spare; /* second Box-Muller normal */
} fh_rng;

/* One Philox4x32-10 block: out = Philox(ctr, key). */
void fh_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

void fh_rng_init(fh_rng *r, uint64_t seed, uint32_t purpose, uint32_t client, uint32_t round);
/* The stream of r's seed, client and round for another purpose, from its start
 * (e.g. a client's augmentation stream next to its shuffling stream). */
void fh_rng_derive(fh_rng *out, const fh_rng *r, uint32_t purpose);
uint32_t fh_rng_u32(fh_rng *r);
uint64_t fh_rng_u64(fh_rng *r);
double fh_rng_uniform(fh_rng *r);             /* [0, 1), 53 bits            */
uint32_t fh_rng_below(fh_rng *r, uint32_t n); /* uniform in [0, n), unbiased */
double fh_rng_normal(fh_rng *r);              /* N(0, 1), Box-Muller         */
void fh_rng_normal_fill(fh_rng *r, float *x, size_t n, float mean, float std);
double fh_rng_lognormal(fh_rng *r, double mu, double sigma);
void fh_rng_permutation(fh_rng *r, int *perm, int n); /* Fisher-Yates of 0..n-1 */
/* m distinct values of 0..n-1, sorted ascending (m <= n). */
void fh_rng_sample_sorted(fh_rng *r, int n, int m, int *out);

#endif
