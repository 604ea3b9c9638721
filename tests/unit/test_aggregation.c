/* Fixed-point aggregation and client placement: the two pieces that make a
 * run's result independent of the rank count. */
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <mpi.h>

#include "core/error.h"
#include "core/rng.h"
#include "fl/accumulate.h"
#include "fl/client_map.h"

enum { N = 1000, CLIENTS = 37 };

/* Adding the same contributions in any order, in any grouping (as different
 * rank counts do), gives the identical int64 sums and identical float means. */
static void test_order_independent(void **state) {
  (void)state;
  static float x[CLIENTS][N];
  double w[CLIENTS];
  fh_rng r;
  fh_rng_init(&r, 9, FH_RNG_TEST, 0, 0);
  for (int k = 0; k < CLIENTS; k++) {
    fh_rng_normal_fill(&r, x[k], N, 0.f, 3.f);
    w[k] = 1 + fh_rng_below(&r, 500);
  }
  fh_accum ref;
  fh_accum_create(&ref, N, 32, CLIENTS);
  for (int k = 0; k < CLIENTS; k++) assert_int_equal(fh_accum_add(&ref, x[k], w[k]), 0);
  int perm[CLIENTS];
  for (int trial = 0; trial < 5; trial++) {
    fh_rng_permutation(&r, perm, CLIENTS);
    /* Split into groups (as ranks would) and sum the groups' sums. */
    int groups = 1 + trial;
    fh_accum total;
    fh_accum_create(&total, N, 32, CLIENTS);
    for (int g = 0; g < groups; g++) {
      fh_accum part;
      fh_accum_create(&part, N, 32, CLIENTS);
      for (int i = g * CLIENTS / groups; i < (g + 1) * CLIENTS / groups; i++)
        fh_accum_add(&part, x[perm[i]], w[perm[i]]);
      for (int i = 0; i <= N; i++) total.sum[i] += part.sum[i];
      fh_accum_destroy(&part);
    }
    assert_memory_equal(total.sum, ref.sum, (N + 1) * sizeof(int64_t));
    fh_accum_destroy(&total);
  }
  /* The mean is the weighted average to float precision. */
  float mean[N];
  double wsum = fh_accum_mean(&ref, mean);
  double wexp = 0;
  for (int k = 0; k < CLIENTS; k++) wexp += w[k];
  assert_true(fabs(wsum - wexp) < 1e-6);
  for (int i = 0; i < N; i++) {
    double e = 0;
    for (int k = 0; k < CLIENTS; k++) e += w[k] * x[k][i];
    e /= wexp;
    assert_true(fabs(mean[i] - e) <= 1e-6 * fabs(e) + 1e-8);
  }
  fh_accum_destroy(&ref);
}

static void test_overflow_is_an_error(void **state) {
  (void)state;
  fh_accum a;
  fh_accum_create(&a, 3, 32, 1);
  float ok[3] = {1.f, -2.f, 3.f}, bad[3] = {1.f, NAN, 3.f}, huge[3] = {1.f, 2e9f, 3.f};
  fh_error_clear();
  assert_int_equal(fh_accum_add(&a, ok, 10.0), 0);
  assert_int_equal(fh_accum_add(&a, bad, 1.0), FH_ERR_DIVERGED);
  assert_non_null(strstr(fh_error_msg(), "element 1"));
  fh_error_clear();
  assert_int_equal(fh_accum_add(&a, huge, 1.0), FH_ERR_DIVERGED);
  fh_error_clear();
  /* the sign does not hide a non-finite value: -Inf, and NaN with its sign bit set */
  float ninf[3] = {1.f, 2.f, -INFINITY}, nnan[3] = {-NAN, 1.f, 2.f};
  assert_int_equal(fh_accum_add(&a, ninf, 1.0), FH_ERR_DIVERGED);
  assert_non_null(strstr(fh_error_msg(), "element 2"));
  fh_error_clear();
  assert_int_equal(fh_accum_add(&a, nnan, 1.0), FH_ERR_DIVERGED);
  assert_non_null(strstr(fh_error_msg(), "element 0"));
  fh_error_clear();
  /* the largest finite magnitude passes the finiteness check (then fails the range) */
  float fmax[3] = {-FLT_MAX, 0.f, 0.f};
  assert_int_equal(fh_accum_add(&a, fmax, 1.0), FH_ERR_DIVERGED);
  fh_error_clear();
  fh_accum_destroy(&a);
}

/* Every client has exactly one owner; blocks are contiguous and balanced. */
/* No sum of max_contributions accepted contributions can wrap around: ten
 * contributions of 1e9 at 2^-32 would overflow int64, so the bound for ten
 * refuses them; with bits = 48 large weights are refused the same way. */
static void test_sum_cannot_overflow(void **state) {
  (void)state;
  fh_accum a;
  float big[1] = {1e9f};
  fh_accum_create(&a, 1, 32, 10);
  fh_error_clear();
  assert_int_equal(fh_accum_add(&a, big, 1.0), FH_ERR_DIVERGED);
  fh_error_clear();
  fh_accum_destroy(&a);
  /* just under the bound: ten of them sum exactly */
  float fits[1] = {4.6e7f}; /* 2^62 / 10 / 2^32 = 1.07e8 */
  fh_accum_create(&a, 1, 32, 10);
  for (int i = 0; i < 10; i++) assert_int_equal(fh_accum_add(&a, fits, 1.0), 0);
  float mean[1];
  assert_true(fh_accum_mean(&a, mean) == 10.0 && mean[0] == 4.6e7f);
  fh_accum_destroy(&a);
  float small[1] = {0.01f};
  fh_accum_create(&a, 1, 48, 4);
  assert_int_equal(fh_accum_add(&a, small, 1e4), FH_ERR_DIVERGED); /* weight 1e4 * 2^48 > 2^60 */
  assert_non_null(strstr(fh_error_msg(), "weight"));
  fh_error_clear();
  assert_true(a.sum[0] == 0 && a.sum[1] == 0); /* refused before touching the sums */
  fh_accum_destroy(&a);
}

static void test_client_blocks(void **state) {
  (void)state;
  for (int K = 1; K <= 40; K += 3)
    for (int P = 1; P <= 9; P++)
      for (int ded = 0; ded <= (P > 1); ded++) {
        fh_client_map map = {K, P, ded};
        int next = 0, mn = K, mx = 0;
        for (int r = 0; r < P; r++) {
          int first, count;
          fh_client_block(&map, r, &first, &count);
          if (ded && r == 0) {
            assert_int_equal(count, 0);
            continue;
          }
          assert_int_equal(first, next);
          next += count;
          if (count < mn) mn = count;
          if (count > mx) mx = count;
          for (int k = first; k < first + count; k++) assert_int_equal(fh_client_owner(&map, k), r);
        }
        assert_int_equal(next, K);
        assert_true(mx - mn <= 1);
      }
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_order_independent),
      cmocka_unit_test(test_overflow_is_an_error),
      cmocka_unit_test(test_sum_cannot_overflow),
      cmocka_unit_test(test_client_blocks),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  MPI_Finalize();
  return rc;
}
