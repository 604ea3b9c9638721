/* Philox4x32-10 streams: known-answer vectors of Random123, reproducibility,
 * independence of streams with different keys, and the derived samplers. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/rng.h"

/* Random123's kat_vectors for philox4x32 with 10 rounds. */
static void test_known_answers(void **state) {
  (void)state;
  struct {
    uint32_t ctr[4], key[2], out[4];
  } kat[] = {
      {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
      {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
       {0xffffffff, 0xffffffff},
       {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
      {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
       {0xa4093822, 0x299f31d0},
       {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
  };
  for (size_t i = 0; i < sizeof kat / sizeof kat[0]; i++) {
    uint32_t out[4];
    fh_philox4x32_10(kat[i].ctr, kat[i].key, out);
    for (int j = 0; j < 4; j++) assert_int_equal(out[j], kat[i].out[j]);
  }
}

static void test_reproducible(void **state) {
  (void)state;
  fh_rng a, b;
  fh_rng_init(&a, 42, FH_RNG_DATA, 7, 3);
  fh_rng_init(&b, 42, FH_RNG_DATA, 7, 3);
  for (int i = 0; i < 1000; i++) assert_int_equal(fh_rng_u32(&a), fh_rng_u32(&b));
  /* Interleaving draws of another stream does not disturb this one. */
  fh_rng c, d, other;
  fh_rng_init(&c, 42, FH_RNG_DATA, 7, 3);
  fh_rng_init(&d, 42, FH_RNG_DATA, 7, 3);
  fh_rng_init(&other, 42, FH_RNG_DATA, 8, 3);
  for (int i = 0; i < 100; i++) {
    (void)fh_rng_u32(&other);
    assert_true(fh_rng_normal(&c) == fh_rng_normal(&d));
  }
}

/* Each key component changes the stream: count equal outputs among 4096 draws
 * (independent 32-bit streams agree about 4096 / 2^32 times: never). */
static int coincidences(uint64_t s1, uint32_t p1, uint32_t c1, uint32_t r1, uint64_t s2, uint32_t p2,
                        uint32_t c2, uint32_t r2) {
  fh_rng a, b;
  fh_rng_init(&a, s1, p1, c1, r1);
  fh_rng_init(&b, s2, p2, c2, r2);
  int same = 0;
  for (int i = 0; i < 4096; i++) same += fh_rng_u32(&a) == fh_rng_u32(&b);
  return same;
}

static void test_streams_differ(void **state) {
  (void)state;
  assert_true(coincidences(1, 1, 0, 0, 2, 1, 0, 0) < 3);          /* seed    */
  assert_true(coincidences(1, 1, 0, 0, 1, 2, 0, 0) < 3);          /* purpose */
  assert_true(coincidences(1, 1, 0, 0, 1, 1, 1, 0) < 3);          /* client  */
  assert_true(coincidences(1, 1, 0, 0, 1, 1, 0, 1) < 3);          /* round   */
  assert_true(coincidences(1ull << 32, 1, 0, 0, 1, 1, 0, 0) < 3); /* high seed bits */
  assert_int_equal(coincidences(5, 3, 9, 2, 5, 3, 9, 2), 4096);
}

static void test_uniform_and_normal_moments(void **state) {
  (void)state;
  fh_rng r;
  fh_rng_init(&r, 7, FH_RNG_TEST, 0, 0);
  const int n = 200000;
  double su = 0, sn = 0, sn2 = 0;
  for (int i = 0; i < n; i++) {
    double u = fh_rng_uniform(&r);
    assert_true(u >= 0.0 && u < 1.0);
    su += u;
    double z = fh_rng_normal(&r);
    sn += z;
    sn2 += z * z;
  }
  /* 5 standard errors: 1/sqrt(12 n) = 6.5e-4 for the uniform mean. */
  assert_true(fabs(su / n - 0.5) < 5 * 6.5e-4);
  assert_true(fabs(sn / n) < 5 / sqrt(n));
  assert_true(fabs(sn2 / n - 1.0) < 5 * sqrt(2.0 / n));
}

static void test_below_is_unbiased(void **state) {
  (void)state;
  fh_rng r;
  fh_rng_init(&r, 11, FH_RNG_TEST, 1, 0);
  int counts[7] = {0};
  const int n = 70000;
  for (int i = 0; i < n; i++) {
    uint32_t v = fh_rng_below(&r, 7);
    assert_true(v < 7);
    counts[v]++;
  }
  double chi2 = 0;
  for (int i = 0; i < 7; i++) chi2 += (counts[i] - n / 7.0) * (counts[i] - n / 7.0) / (n / 7.0);
  assert_true(chi2 < 22.5); /* chi-square, 6 dof, p = 0.001 */
}

static void test_sample_sorted_and_permutation(void **state) {
  (void)state;
  fh_rng r;
  fh_rng_init(&r, 3, FH_RNG_SAMPLING, FH_RNG_NONE, 5);
  int out[50];
  fh_rng_sample_sorted(&r, 100, 50, out);
  for (int i = 0; i < 50; i++) {
    assert_true(out[i] >= 0 && out[i] < 100);
    if (i) assert_true(out[i] > out[i - 1]); /* sorted and distinct */
  }
  fh_rng_sample_sorted(&r, 10, 10, out);
  for (int i = 0; i < 10; i++) assert_int_equal(out[i], i);
  int perm[64], seen[64] = {0};
  fh_rng_permutation(&r, perm, 64);
  for (int i = 0; i < 64; i++) seen[perm[i]]++;
  for (int i = 0; i < 64; i++) assert_int_equal(seen[i], 1);
  /* Every client is sampled about m/K of the rounds. */
  int hits[20] = {0};
  for (uint32_t t = 0; t < 4000; t++) {
    fh_rng s;
    fh_rng_init(&s, 3, FH_RNG_SAMPLING, FH_RNG_NONE, t);
    int pick[5];
    fh_rng_sample_sorted(&s, 20, 5, pick);
    for (int i = 0; i < 5; i++) hits[pick[i]]++;
  }
  for (int k = 0; k < 20; k++) assert_true(abs(hits[k] - 1000) < 5 * 27); /* sd ~ 27 */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_known_answers),
      cmocka_unit_test(test_reproducible),
      cmocka_unit_test(test_streams_differ),
      cmocka_unit_test(test_uniform_and_normal_moments),
      cmocka_unit_test(test_below_is_unbiased),
      cmocka_unit_test(test_sample_sorted_and_permutation),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
