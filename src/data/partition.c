#include "data/partition.h"

#include <math.h>

void fh_block_range(int64_t n, int k, int p, int64_t *begin, int64_t *end) {
  *begin = (int64_t)((__int128)n * p / k);
  *end = (int64_t)((__int128)n * (p + 1) / k);
}

int fh_test_count(int n, double test_fraction) {
  long t = lround(test_fraction * n);
  if (t < 1) t = 1;
  if (t > n - 1) t = n - 1;
  return (int)t;
}
