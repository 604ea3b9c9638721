/* How samples are cut between clients and between train and test. */
#ifndef FH_PARTITION_H
#define FH_PARTITION_H

#include <stdint.h>

/* Part p of n items cut into k contiguous blocks whose sizes differ by at most
 * one: items [*begin, *end), begin = floor(p*n/k). */
void fh_block_range(int64_t n, int k, int p, int64_t *begin, int64_t *end);

/* Test samples of a client with n >= 2 samples: round(test_fraction * n),
 * at least 1 and at most n - 1 (so train keeps at least one sample). */
int fh_test_count(int n, double test_fraction);

#endif
