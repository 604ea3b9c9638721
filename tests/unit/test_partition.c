/* Partitioners: for every method, the rows each client gets (within the pool,
 * ascending, each row at most once unless the method samples with
 * replacement), the totals, determinism from the seed alone, and each
 * method's defining property; the test split after each client's train mix;
 * the errors with the keys they name; and the statistics. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/config.h"
#include "core/error.h"
#include "core/rng.h"
#include "data/partition.h"

static fh_config *make_cfg(const char *const *sets, int nsets) {
  const fh_key_spec *tables[] = {fh_partition_keys};
  fh_config *cfg = NULL;
  int rc = fh_config_load(&cfg, NULL, sets, nsets, tables, 1);
  if (rc != 0) fprintf(stderr, "config: %s\n", fh_error_msg());
  assert_int_equal(rc, 0);
  return cfg;
}

/* n labels of C classes; class c has weight 1 + skew*c (skew 0: uniform). */
static int32_t *make_labels(int64_t n, int C, uint64_t seed, double skew) {
  int32_t *y = malloc((size_t)n * sizeof(int32_t));
  double total = 0;
  for (int c = 0; c < C; c++) total += 1 + skew * c;
  fh_rng r;
  fh_rng_init(&r, seed, FH_RNG_TEST, 1, 1);
  for (int64_t i = 0; i < n; i++) {
    double u = fh_rng_uniform(&r) * total, acc = 0;
    int c = 0;
    for (; c < C - 1; c++) {
      acc += 1 + skew * c;
      if (u < acc) break;
    }
    y[i] = c;
  }
  return y;
}

/* Offsets start at 0 and never decrease, rows lie in [0, n) and ascend within
 * a client (strictly unless repeats are allowed), every client has a row;
 * with unique set, no row belongs to two clients. Returns the rows dealt. */
static int64_t check_rows(const fh_client_rows *r, int K, int64_t n, int unique) {
  assert_int_equal(r->num_clients, K);
  assert_int_equal(r->offsets[0], 0);
  unsigned char *seen = calloc((size_t)n + 1, 1);
  for (int k = 0; k < K; k++) {
    assert_true(r->offsets[k + 1] > r->offsets[k]);
    for (int64_t i = r->offsets[k]; i < r->offsets[k + 1]; i++) {
      int64_t row = r->rows[i];
      assert_true(row >= 0 && row < n);
      if (i > r->offsets[k]) {
        if (unique) assert_true(row > r->rows[i - 1]);
        else assert_true(row >= r->rows[i - 1]);
      }
      if (unique) {
        assert_false(seen[row]);
        seen[row] = 1;
      }
    }
  }
  free(seen);
  return r->offsets[K];
}

static int same_rows(const fh_client_rows *a, const fh_client_rows *b) {
  if (a->num_clients != b->num_clients) return 0;
  if (memcmp(a->offsets, b->offsets, ((size_t)a->num_clients + 1) * sizeof(int64_t)) != 0) return 0;
  return memcmp(a->rows, b->rows, (size_t)a->offsets[a->num_clients] * sizeof(int64_t)) == 0;
}

static int64_t client_n(const fh_client_rows *r, int k) { return r->offsets[k + 1] - r->offsets[k]; }

static void train_ok(fh_config *cfg, uint64_t seed, const int32_t *y, int64_t n, int C, int K, fh_client_rows *out) {
  int rc = fh_partition_train(cfg, seed, y, n, C, K, NULL, out);
  if (rc != 0) fprintf(stderr, "partition: %s\n", fh_error_msg());
  assert_int_equal(rc, 0);
}

static void expect_error(int rc, int code, const char *const *needles) {
  assert_int_equal(rc, code);
  for (int i = 0; needles[i]; i++) {
    if (!strstr(fh_error_msg(), needles[i])) fprintf(stderr, "message '%s' lacks '%s'\n", fh_error_msg(), needles[i]);
    assert_non_null(strstr(fh_error_msg(), needles[i]));
  }
  fh_error_clear();
}

/* ---- iid: the documented HDF5 behaviour ---------------------------------------- */

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

static void iid_case(int64_t n, int64_t m) {
  const int K = 7, C = 5;
  int32_t *y = make_labels(n, C, 1, 0), *yt = make_labels(m, C, 2, 0);
  const char *sets[] = {"partition.method=iid"};
  fh_config *cfg = make_cfg(sets, 1);
  fh_client_rows tr, te;
  train_ok(cfg, 99, y, n, C, K, &tr);
  assert_int_equal(fh_partition_test(cfg, 99, &tr, y, yt, m, C, NULL, &te), 0);
  assert_int_equal(check_rows(&tr, K, n, 1), n);
  assert_int_equal(check_rows(&te, K, m, 1), m);

  /* reference: (seed, SPLIT, none, none): train permutation, then test's */
  fh_rng r;
  fh_rng_init(&r, 99, FH_RNG_SPLIT, FH_RNG_NONE, FH_RNG_NONE);
  int *pn = malloc(sizeof(int) * n), *pm = malloc(sizeof(int) * m);
  fh_rng_permutation(&r, pn, (int)n);
  fh_rng_permutation(&r, pm, (int)m);
  const fh_client_rows *got[2] = {&tr, &te};
  const int *perm[2] = {pn, pm};
  const int64_t len[2] = {n, m};
  for (int s = 0; s < 2; s++)
    for (int k = 0; k < K; k++) {
      int64_t b, e;
      fh_block_range(len[s], K, k, &b, &e);
      assert_int_equal(client_n(got[s], k), e - b);
      int64_t want[400];
      for (int64_t i = b; i < e; i++) want[i - b] = perm[s][i];
      qsort(want, (size_t)(e - b), sizeof(int64_t), cmp_i64);
      assert_memory_equal(got[s]->rows + got[s]->offsets[k], want, (size_t)(e - b) * sizeof(int64_t));
    }
  /* auto without natural clients is iid */
  fh_config *dflt = make_cfg(NULL, 0);
  fh_client_rows a;
  train_ok(dflt, 99, y, n, C, K, &a);
  assert_true(same_rows(&a, &tr));
  assert_string_equal(fh_partition_method(dflt, 0), "iid");
  assert_string_equal(fh_partition_method(dflt, 1), "natural");
  fh_client_rows_free(&a);
  fh_config_free(dflt);
  free(pn);
  free(pm);
  fh_client_rows_free(&tr);
  fh_client_rows_free(&te);
  fh_config_free(cfg);
  free(y);
  free(yt);
}

static void test_iid_matches_documented_split(void **state) {
  (void)state;
  iid_case(1003, 211);
  iid_case(20, 7); /* shorter than the shuffle's prefetch window */
  iid_case(33, 32);
}

/* ---- every method: rows, totals, determinism ------------------------------------ */

typedef struct {
  const char *sets[4];
  int unique;      /* no row dealt twice */
  int uses_all;    /* every train row dealt */
} method_case;

static const method_case cases[] = {
    {{"partition.method=iid"}, 1, 1},
    {{"partition.method=dirichlet", "partition.alpha=0.3", "partition.min_size=5"}, 1, 1},
    {{"partition.method=shards", "partition.classes_per_client=3"}, 1, 1},
    {{"partition.method=shards_pfedafm", "partition.classes_per_client=2"}, 1, 1},
    {{"partition.method=lowdata", "partition.samples_per_client=40", "partition.alpha=0.5"}, 1, 0},
    {{"partition.method=lips", "partition.samples_per_client=40", "partition.alpha=0.5", "partition.test_per_client=30"},
     0, 0},
    {{"partition.method=twoclass", "partition.class_samples=20"}, 1, 0},
    {{"partition.method=quantity", "partition.size_sigma=1.5", "partition.min_size=3"}, 1, 1},
};
#define NCASES (sizeof cases / sizeof cases[0])

static int nsets(const method_case *c) {
  int k = 0;
  while (k < 4 && c->sets[k]) k++;
  return k;
}

static void test_every_method_rows_and_determinism(void **state) {
  (void)state;
  const int64_t n = 4000, m = 900;
  const int K = 25, C = 10;
  int32_t *y = make_labels(n, C, 3, 0.2), *yt = make_labels(m, C, 4, 0.2);
  for (size_t i = 0; i < NCASES; i++) {
    fh_config *cfg = make_cfg(cases[i].sets, nsets(&cases[i]));
    fh_client_rows a, b, c, ta, tb;
    train_ok(cfg, 5, y, n, C, K, &a);
    int64_t dealt = check_rows(&a, K, n, cases[i].unique);
    if (cases[i].uses_all) assert_int_equal(dealt, n);
    assert_int_equal(fh_partition_test(cfg, 5, &a, y, yt, m, C, NULL, &ta), 0);
    check_rows(&ta, K, m, cases[i].unique); /* the test pool suffices here: no test row twice, except in lips
                                               where clients draw independently */

    /* a different seed deals differently */
    train_ok(cfg, 6, y, n, C, K, &c);
    assert_false(same_rows(&a, &c));
    /* the same (deck, seed, labels), recomputed after other work, from a
     * fresh copy of the labels and a fresh config: the same rows */
    int32_t *y2 = malloc((size_t)n * sizeof(int32_t));
    memcpy(y2, y, (size_t)n * sizeof(int32_t));
    fh_config *cfg2 = make_cfg(cases[i].sets, nsets(&cases[i]));
    train_ok(cfg2, 5, y2, n, C, K, &b);
    assert_true(same_rows(&a, &b));
    assert_int_equal(fh_partition_test(cfg2, 5, &b, y2, yt, m, C, NULL, &tb), 0);
    assert_true(same_rows(&ta, &tb));
    /* the labels are read, not written */
    assert_memory_equal(y, y2, (size_t)n * sizeof(int32_t));
    free(y2);
    fh_client_rows_free(&a);
    fh_client_rows_free(&b);
    fh_client_rows_free(&c);
    fh_client_rows_free(&ta);
    fh_client_rows_free(&tb);
    fh_config_free(cfg);
    fh_config_free(cfg2);
  }
  free(y);
  free(yt);
}

/* ---- dirichlet ------------------------------------------------------------------- */

static fh_partition_stats stats_of(const fh_client_rows *r, const int32_t *y, int C) {
  int64_t *cnt = fh_partition_counts(r, y, C);
  fh_partition_stats s;
  fh_partition_summarize(cnt, NULL, r->num_clients, C, &s);
  free(cnt);
  return s;
}

static void test_dirichlet_alpha(void **state) {
  (void)state;
  const int64_t n = 20000;
  const int K = 20, C = 10;
  int32_t *y = make_labels(n, C, 7, 0);
  const char *big[] = {"partition.method=dirichlet", "partition.alpha=10000"};
  const char *small[] = {"partition.method=dirichlet", "partition.alpha=0.05", "partition.min_size=1"};
  const char *iid[] = {"partition.method=iid"};
  fh_client_rows r;
  fh_config *cfg = make_cfg(big, 2);
  train_ok(cfg, 1, y, n, C, K, &r);
  fh_partition_stats sb = stats_of(&r, y, C);
  fh_client_rows_free(&r);
  fh_config_free(cfg);
  cfg = make_cfg(iid, 1);
  train_ok(cfg, 1, y, n, C, K, &r);
  fh_partition_stats si = stats_of(&r, y, C);
  fh_client_rows_free(&r);
  fh_config_free(cfg);
  cfg = make_cfg(small, 3);
  train_ok(cfg, 1, y, n, C, K, &r);
  fh_partition_stats ss = stats_of(&r, y, C);
  fh_client_rows_free(&r);
  fh_config_free(cfg);
  /* large alpha: every class everywhere, as close to the global mix as iid
   * blocks of the same size are (sampling noise only) */
  assert_int_equal(sb.classes_min, C);
  assert_true(sb.emd_mean < 0.15);
  assert_true(sb.emd_mean < 2 * si.emd_mean + 0.02);
  assert_true(sb.train_max - sb.train_min < 0.2 * sb.train_mean);
  /* small alpha: a few classes per client, far from the global mix */
  assert_true(ss.classes_mean < 3.5);
  assert_true(ss.emd_mean > 1.0);
  free(y);
}

static void test_dirichlet_min_size(void **state) {
  (void)state;
  const int64_t n = 3000;
  const int K = 30, C = 10;
  int32_t *y = make_labels(n, C, 8, 0);
  /* reachable: every client gets min_size */
  const char *ok[] = {"partition.method=dirichlet", "partition.alpha=1", "partition.min_size=30"};
  fh_config *cfg = make_cfg(ok, 3);
  fh_client_rows r;
  train_ok(cfg, 2, y, n, C, K, &r);
  for (int k = 0; k < K; k++) assert_true(client_n(&r, k) >= 30);
  fh_client_rows_free(&r);
  fh_config_free(cfg);
  /* out of reach within the retries: a config error naming the keys */
  const char *bad[] = {"partition.method=dirichlet", "partition.alpha=0.01", "partition.min_size=90",
                       "partition.max_retries=5"};
  cfg = make_cfg(bad, 4);
  static const char *const need[] = {"after 5 draws", "partition.min_size = 90", "partition.alpha",
                                     "partition.max_retries", NULL};
  expect_error(fh_partition_train(cfg, 2, y, n, C, K, NULL, &r), FH_ERR_CONFIG, need);
  assert_null(r.rows);
  fh_config_free(cfg);
  /* impossible for any draw */
  const char *huge[] = {"partition.method=dirichlet", "partition.min_size=101"};
  cfg = make_cfg(huge, 2);
  static const char *const need2[] = {"partition.min_size = 101", "3030", NULL};
  expect_error(fh_partition_train(cfg, 2, y, n, C, K, NULL, &r), FH_ERR_CONFIG, need2);
  fh_config_free(cfg);
  /* min_size 0 still needs a row per client: more clients than rows is
   * refused at once, naming the keys (not after max_retries draws) */
  const char *zero[] = {"partition.method=dirichlet", "partition.min_size=0"};
  cfg = make_cfg(zero, 2);
  static const char *const need3[] = {"partition.min_size = 0", "run.clients = 40", "needs 40 train rows",
                                      "has 30", NULL};
  expect_error(fh_partition_train(cfg, 2, y, 30, C, 40, NULL, &r), FH_ERR_CONFIG, need3);
  fh_config_free(cfg);
  free(y);
}

/* ---- shards ---------------------------------------------------------------------- */

static void test_shards_exact_classes(void **state) {
  (void)state;
  const int64_t n = 6000;
  const int C = 10;
  int32_t *y = make_labels(n, C, 9, 0.3);
  const int Ks[] = {10, 17}, ks[] = {2, 3};
  for (int flavour = 0; flavour < 2; flavour++)
    for (int t = 0; t < 2; t++) {
      char kset[64];
      snprintf(kset, sizeof kset, "partition.classes_per_client=%d", ks[t]);
      const char *sets[] = {flavour ? "partition.method=shards_pfedafm" : "partition.method=shards", kset};
      fh_config *cfg = make_cfg(sets, 2);
      fh_client_rows r;
      int K = Ks[t];
      train_ok(cfg, 3, y, n, C, K, &r);
      assert_int_equal(check_rows(&r, K, n, 1), n);
      int64_t *cnt = fh_partition_counts(&r, y, C);
      int holders[10] = {0};
      int64_t class_n[10] = {0};
      for (int64_t i = 0; i < n; i++) class_n[y[i]]++;
      for (int k = 0; k < K; k++) {
        int have = 0;
        for (int c = 0; c < C; c++) {
          have += cnt[k * C + c] > 0;
          holders[c] += cnt[k * C + c] > 0;
        }
        assert_int_equal(have, ks[t]);
      }
      /* every class held by K*k/C clients, +-1 */
      int lo = K * ks[t] / C, hi = (K * ks[t] + C - 1) / C;
      for (int c = 0; c < C; c++) assert_true(holders[c] >= lo && holders[c] <= hi);
      /* parts of a class: equal (+-1 row), or U(0.4, 0.6)-shares normalised:
       * any two holders' parts within a ratio of 0.6/0.4 (+-1 row) */
      for (int c = 0; c < C; c++) {
        int64_t pmin = INT64_MAX, pmax = 0;
        for (int k = 0; k < K; k++)
          if (cnt[k * C + c] > 0) {
            if (cnt[k * C + c] < pmin) pmin = cnt[k * C + c];
            if (cnt[k * C + c] > pmax) pmax = cnt[k * C + c];
          }
        if (flavour == 0) assert_true(pmax - pmin <= 1);
        else assert_true((double)(pmax - 1) <= 1.5 * (double)(pmin + 1));
        if (flavour == 1 && holders[c] >= 3) assert_true(pmax > pmin + 1); /* shares differ */
      }
      free(cnt);
      fh_client_rows_free(&r);
      fh_config_free(cfg);
    }
  /* more classes per client than classes */
  const char *bad[] = {"partition.method=shards", "partition.classes_per_client=11"};
  fh_config *cfg = make_cfg(bad, 2);
  fh_client_rows r;
  static const char *const need[] = {"partition.classes_per_client = 11", "10 classes", NULL};
  expect_error(fh_partition_train(cfg, 3, y, n, C, 10, NULL, &r), FH_ERR_CONFIG, need);
  fh_config_free(cfg);
  /* a class too small for its holders */
  static const char *const need2[] = {"partition.classes_per_client", "run.clients", NULL};
  const char *ok[] = {"partition.method=shards", "partition.classes_per_client=2"};
  cfg = make_cfg(ok, 2);
  expect_error(fh_partition_train(cfg, 3, y, 40, C, 60, NULL, &r), FH_ERR_DATA, need2);
  fh_config_free(cfg);
  free(y);
}

/* ---- lowdata --------------------------------------------------------------------- */

static void test_lowdata_fixed_count(void **state) {
  (void)state;
  const int C = 10;
  /* plenty of rows: exactly s each, no row dealt twice */
  int32_t *y = make_labels(10000, C, 10, 0);
  const char *sets[] = {"partition.method=lowdata", "partition.samples_per_client=100", "partition.alpha=0.1"};
  fh_config *cfg = make_cfg(sets, 3);
  fh_client_rows r;
  train_ok(cfg, 4, y, 10000, C, 50, &r);
  check_rows(&r, 50, 10000, 1);
  for (int k = 0; k < 50; k++) assert_int_equal(client_n(&r, k), 100);
  fh_partition_stats s = stats_of(&r, y, C);
  assert_true(s.classes_mean < 5); /* alpha = 0.1: few classes each */
  fh_client_rows_free(&r);
  /* a pool smaller than the demand: rows repeat, still exactly s each */
  train_ok(cfg, 4, y, 60, C, 30, &r);
  check_rows(&r, 30, 60, 0);
  for (int k = 0; k < 30; k++) assert_int_equal(client_n(&r, k), 100);
  fh_client_rows_free(&r);
  /* a class with no rows is never asked for */
  for (int i = 0; i < 10000; i++)
    if (y[i] == 3) y[i] = 4;
  train_ok(cfg, 4, y, 10000, C, 50, &r);
  int64_t *cnt = fh_partition_counts(&r, y, C);
  for (int k = 0; k < 50; k++) assert_int_equal(cnt[k * C + 3], 0);
  free(cnt);
  fh_client_rows_free(&r);
  fh_config_free(cfg);
  free(y);
}

/* ---- lips: the authors' split ------------------------------------------------------- */

/* Their rule (sampling.py, dirichlet_sampling), values from numpy running it:
 * int(s q + 0.5) per class, capped at what is left, the rest to the last. */
static void test_lips_counts_rule(void **state) {
  (void)state;
  const struct {
    double q[3];
    int last;
    int64_t s, want[3];
  } t[] = {
      {{0.125, 0.375, 0.5}, 2, 100, {13, 38, 49}},   /* 12.5 rounds up, the last absorbs it */
      {{0.505, 0.495, 0.0}, 2, 100, {51, 49, 0}},    /* the cap: 50 asked, 49 left */
      {{0.004, 0.001, 0.995}, 2, 100, {0, 0, 100}},  /* small shares vanish */
      {{0.00125, 0.99875, 0}, 1, 400, {1, 399, -1}}, /* last = 1: class 2 untouched */
  };
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    int64_t cnt[3] = {-1, -1, -1};
    fh_lips_class_counts(t[i].q, t[i].last, t[i].s, cnt);
    for (int c = 0; c < 3; c++) assert_int_equal(cnt[c], t[i].want[c]);
  }
}

/* The whole split: exactly s train and t test rows per client; a client's
 * rows of a class are distinct while the class pool suffices, drawn with
 * replacement only when it does not; clients overlap; client k's rows do not
 * depend on how many other clients there are (each draws on its own); the
 * train and test counts come from one q; alpha 0.1 gives few classes. */
static void test_lips_split(void **state) {
  (void)state;
  const int C = 10, K = 100;
  const int64_t n = 6000, m = 1000; /* 600 train and about 100 test rows per class */
  int32_t *y = make_labels(n, C, 21, 0), *yt = make_labels(m, C, 22, 0);
  const char *sets[] = {"partition.method=lips", "partition.samples_per_client=100", "partition.alpha=0.1",
                        "partition.test_per_client=400"};
  fh_config *cfg = make_cfg(sets, 4);
  fh_client_rows tr, te, half;
  train_ok(cfg, 3, y, n, C, K, &tr);
  assert_int_equal(fh_partition_test(cfg, 3, &tr, y, yt, m, C, NULL, &te), 0);
  check_rows(&tr, K, n, 0);
  check_rows(&te, K, m, 0);
  int64_t size[10] = {0}, tsize[10] = {0};
  for (int64_t i = 0; i < n; i++) size[y[i]]++;
  for (int64_t i = 0; i < m; i++) tsize[yt[i]]++;
  int64_t *a = fh_partition_counts(&tr, y, C), *b = fh_partition_counts(&te, yt, C);
  int *uses = calloc((size_t)n, sizeof(int));
  int repeats_test = 0;
  double classes = 0;
  for (int k = 0; k < K; k++) {
    assert_int_equal(client_n(&tr, k), 100);
    assert_int_equal(client_n(&te, k), 400);
    /* train: no repeated row within a client (every class pool holds 600) */
    for (int64_t i = tr.offsets[k] + 1; i < tr.offsets[k + 1]; i++) assert_true(tr.rows[i] > tr.rows[i - 1]);
    for (int64_t i = tr.offsets[k]; i < tr.offsets[k + 1]; i++) uses[tr.rows[i]]++;
    /* test: a class asked for more than its pool repeats rows, else none */
    for (int64_t i = te.offsets[k] + 1; i < te.offsets[k + 1]; i++)
      if (te.rows[i] == te.rows[i - 1]) {
        assert_true(b[k * C + yt[te.rows[i]]] > tsize[yt[te.rows[i]]]);
        repeats_test++;
      }
    /* one q: wherever neither split has reached its total yet (no cap),
     * |cnt - s q| <= 1/2 in both, so the shares agree within the rounding */
    int64_t ca = 0, cb = 0;
    for (int c = 0; c < C - 1; c++) {
      ca += a[k * C + c];
      cb += b[k * C + c];
      if (ca >= 100 || cb >= 400) break;
      double lo = ((double)a[k * C + c] - 0.5) / 100, hi = ((double)a[k * C + c] + 0.5) / 100;
      assert_true((double)b[k * C + c] >= 400 * lo - 0.5 - 1e-9);
      assert_true((double)b[k * C + c] <= 400 * hi + 0.5 + 1e-9);
    }
    for (int c = 0; c < C; c++) classes += a[k * C + c] > 0;
  }
  assert_true(repeats_test > 0); /* 400 rows with alpha 0.1 exceed some 100-row class pools */
  int shared = 0;
  for (int64_t i = 0; i < n; i++) shared += uses[i] > 1;
  assert_true(shared > 0); /* 10,000 draws from 6,000 rows: clients overlap */
  /* alpha 0.1: a class appears when q_c >= 0.005; q_c ~ Beta(0.1, 0.9) puts
   * about 42% of its mass there, so about 4.2 of 10 classes per client */
  assert_true(classes / K > 3 && classes / K < 5.5);
  /* client k's draw is its own: the first 50 of 100 clients hold the same
   * rows when there are only 50 */
  train_ok(cfg, 3, y, n, C, 50, &half);
  assert_memory_equal(half.rows, tr.rows, (size_t)half.offsets[50] * sizeof(int64_t));
  fh_client_rows_free(&half);
  /* a class with no rows is never asked for */
  for (int64_t i = 0; i < n; i++)
    if (y[i] == 9) y[i] = 8;
  train_ok(cfg, 3, y, n, C, K, &half);
  int64_t *h = fh_partition_counts(&half, y, C);
  for (int k = 0; k < K; k++) {
    assert_int_equal(h[k * C + 9], 0);
    assert_int_equal(client_n(&half, k), 100);
  }
  free(h);
  fh_client_rows_free(&half);
  /* the test rows are required */
  const char *no_test[] = {"partition.method=lips"};
  fh_config *bad = make_cfg(no_test, 1);
  const char *needles[] = {"partition.method = lips", "partition.test_per_client", NULL};
  expect_error(fh_partition_train(bad, 3, y, n, C, K, NULL, &half), FH_ERR_CONFIG, needles);
  fh_config_free(bad);
  free(uses);
  free(a);
  free(b);
  fh_client_rows_free(&tr);
  fh_client_rows_free(&te);
  fh_config_free(cfg);
  free(y);
  free(yt);
}

/* ---- twoclass -------------------------------------------------------------------- */

static void test_twoclass(void **state) {
  (void)state;
  const int64_t n = 5000;
  const int C = 10, K = 40;
  int32_t *y = make_labels(n, C, 11, 0);
  const char *sets[] = {"partition.method=twoclass", "partition.class_samples=25", "partition.size_jitter=10"};
  fh_config *cfg = make_cfg(sets, 3);
  fh_client_rows r;
  train_ok(cfg, 5, y, n, C, K, &r);
  check_rows(&r, K, n, 1);
  int64_t *cnt = fh_partition_counts(&r, y, C);
  int64_t smin = INT64_MAX, smax = 0;
  for (int k = 0; k < K; k++) {
    int have = 0;
    int64_t first = -1;
    for (int c = 0; c < C; c++)
      if (cnt[k * C + c] > 0) {
        have++;
        if (first < 0) first = cnt[k * C + c];
        else assert_int_equal(cnt[k * C + c], first); /* same size for both classes */
      }
    assert_int_equal(have, 2);
    assert_true(first >= 25 && first <= 35);
    if (client_n(&r, k) < smin) smin = client_n(&r, k);
    if (client_n(&r, k) > smax) smax = client_n(&r, k);
  }
  assert_true(smax > smin); /* size variation */
  free(cnt);
  fh_client_rows_free(&r);
  fh_config_free(cfg);
  /* automatic base: as much as the tightest class allows, never twice a row */
  const char *autos[] = {"partition.method=twoclass"};
  cfg = make_cfg(autos, 1);
  train_ok(cfg, 5, y, n, C, K, &r);
  assert_true(check_rows(&r, K, n, 1) > n / 2);
  fh_client_rows_free(&r);
  fh_config_free(cfg);
  /* too many rows asked of a class */
  const char *bad[] = {"partition.method=twoclass", "partition.class_samples=200"};
  cfg = make_cfg(bad, 2);
  static const char *const need[] = {"partition.class_samples", "run.clients", NULL};
  expect_error(fh_partition_train(cfg, 5, y, n, C, K, NULL, &r), FH_ERR_CONFIG, need);
  fh_config_free(cfg);
  /* a pool of one class cannot give two */
  int32_t one[30] = {0};
  cfg = make_cfg(autos, 1);
  static const char *const need1[] = {"partition.method = twoclass", "1 class;", NULL};
  expect_error(fh_partition_train(cfg, 5, one, 30, 1, 3, NULL, &r), FH_ERR_DATA, need1);
  fh_config_free(cfg);
  free(y);
}

/* twoclass with partition.train_share (AugFL's authors' cut): client k's
 * 2 n rows (n = a + b per class, b the same for both classes) split into a
 * train part of floor(share x 2 n) rows from the train pool and the rest, of
 * the same two classes, from the test pool; per class train + test = n; no
 * test row dealt twice; the draw is that of plain twoclass (same classes and
 * b per client); over clients the train share of class 0 of a client varies
 * (a shuffle, not a fixed cut); bad combinations refused. */
static void test_twoclass_share(void **state) {
  (void)state;
  const int64_t n = 6000, m = 4000;
  const int C = 10, K = 50;
  int32_t *y = make_labels(n, C, 21, 0), *yt = make_labels(m, C, 22, 0);
  const char *sets[] = {"partition.method=twoclass", "partition.class_samples=10", "partition.size_jitter=10",
                        "partition.train_share=0.2"};
  fh_config *cfg = make_cfg(sets, 4);
  fh_client_rows tr, te, plain;
  train_ok(cfg, 7, y, n, C, K, &tr);
  check_rows(&tr, K, n, 1);
  assert_int_equal(fh_partition_test(cfg, 7, &tr, y, yt, m, C, NULL, &te), 0);
  check_rows(&te, K, m, 1);
  fh_config *cfg0 = make_cfg(sets, 3);
  train_ok(cfg0, 7, y, n, C, K, &plain);
  int64_t *ctr = fh_partition_counts(&tr, y, C), *cte = fh_partition_counts(&te, yt, C);
  int64_t *cpl = fh_partition_counts(&plain, y, C);
  int varied = 0;
  int64_t first_tr0 = -1;
  for (int k = 0; k < K; k++) {
    int64_t tot = 0, per = -1;
    for (int c = 0; c < C; c++) {
      const int64_t both = ctr[k * C + c] + cte[k * C + c];
      if (cpl[k * C + c] == 0) { /* not one of the client's two classes */
        assert_int_equal(both, 0);
        continue;
      }
      assert_int_equal(both, cpl[k * C + c]); /* train + test = a + b of that class */
      if (per < 0) per = both;
      assert_int_equal(both, per);
      assert_true(per >= 10 && per <= 20);
      tot += both;
    }
    assert_int_equal(client_n(&tr, k), (int64_t)floor(0.2 * (double)tot));
    assert_int_equal(client_n(&te, k), tot - (int64_t)floor(0.2 * (double)tot));
    for (int c = 0; c < C; c++)
      if (cpl[k * C + c] > 0) {
        if (first_tr0 < 0) first_tr0 = ctr[k * C + c];
        else if (ctr[k * C + c] != first_tr0) varied = 1;
        break;
      }
  }
  assert_true(varied);
  free(ctr);
  free(cte);
  free(cpl);
  fh_client_rows_free(&tr);
  fh_client_rows_free(&te);
  fh_client_rows_free(&plain);
  fh_config_free(cfg0);
  fh_config_free(cfg);
  /* refusals: another method, a test key beside it, an automatic base, a test pool too small */
  const char *other[] = {"partition.method=dirichlet", "partition.train_share=0.2"};
  cfg = make_cfg(other, 2);
  static const char *const need_m[] = {"partition.train_share", "twoclass", NULL};
  expect_error(fh_partition_train(cfg, 7, y, n, C, K, NULL, &tr), FH_ERR_CONFIG, need_m);
  fh_config_free(cfg);
  const char *both[] = {"partition.method=twoclass", "partition.class_samples=10", "partition.train_share=0.2",
                        "partition.test_fraction=0.25"};
  cfg = make_cfg(both, 4);
  static const char *const need_b[] = {"partition.test_fraction", NULL};
  expect_error(fh_partition_train(cfg, 7, y, n, C, K, NULL, &tr), FH_ERR_CONFIG, need_b);
  fh_config_free(cfg);
  const char *autob[] = {"partition.method=twoclass", "partition.train_share=0.2"};
  cfg = make_cfg(autob, 2);
  static const char *const need_a[] = {"partition.class_samples", NULL};
  expect_error(fh_partition_train(cfg, 7, y, n, C, K, NULL, &tr), FH_ERR_CONFIG, need_a);
  fh_config_free(cfg);
  cfg = make_cfg(sets, 4);
  train_ok(cfg, 7, y, n, C, K, &tr);
  static const char *const need_t[] = {"partition.train_share", "test pool", NULL};
  expect_error(fh_partition_test(cfg, 7, &tr, y, yt, 100, C, NULL, &te), FH_ERR_DATA, need_t);
  fh_client_rows_free(&tr);
  fh_config_free(cfg);
  free(y);
  free(yt);
}

/* ---- quantity -------------------------------------------------------------------- */

static void test_quantity(void **state) {
  (void)state;
  const int64_t n = 20000;
  const int C = 10, K = 40;
  int32_t *y = make_labels(n, C, 12, 0);
  const char *sets[] = {"partition.method=quantity", "partition.size_sigma=1", "partition.min_size=20"};
  fh_config *cfg = make_cfg(sets, 3);
  fh_client_rows r;
  train_ok(cfg, 6, y, n, C, K, &r);
  assert_int_equal(check_rows(&r, K, n, 1), n);
  fh_partition_stats s = stats_of(&r, y, C);
  assert_true(s.train_min >= 20);
  assert_true(s.train_max > 3 * s.train_min); /* log-normal sizes */
  /* labels iid: the large clients hold every class near the global mix */
  int64_t *cnt = fh_partition_counts(&r, y, C);
  for (int k = 0; k < K; k++)
    if (client_n(&r, k) >= 1000) {
      for (int c = 0; c < C; c++) assert_true(cnt[k * C + c] > 0);
    }
  free(cnt);
  fh_client_rows_free(&r);
  fh_config_free(cfg);
  /* sigma 0: equal sizes */
  const char *flat[] = {"partition.method=quantity", "partition.size_sigma=0"};
  cfg = make_cfg(flat, 2);
  train_ok(cfg, 6, y, n, C, K, &r);
  s = stats_of(&r, y, C);
  assert_true(s.train_max - s.train_min <= 1);
  fh_client_rows_free(&r);
  fh_config_free(cfg);
  free(y);
}

/* ---- natural --------------------------------------------------------------------- */

static void test_natural(void **state) {
  (void)state;
  const int C = 3;
  int32_t *y = make_labels(10, C, 13, 0), *yt = make_labels(6, C, 14, 0);
  const int64_t off[] = {0, 2, 7, 10}, toff[] = {0, 1, 3, 6};
  fh_config *dflt = make_cfg(NULL, 0);
  const char *nat[] = {"partition.method=natural"};
  fh_config *cfg = make_cfg(nat, 1);
  fh_client_rows r, t;
  /* auto uses natural clients when the source has them */
  assert_int_equal(fh_partition_train(dflt, 1, y, 10, C, 3, off, &r), 0);
  assert_int_equal(fh_partition_test(dflt, 1, &r, y, yt, 6, C, toff, &t), 0);
  assert_memory_equal(r.offsets, off, sizeof off);
  assert_memory_equal(t.offsets, toff, sizeof toff);
  for (int i = 0; i < 10; i++) assert_int_equal(r.rows[i], i);
  fh_client_rows_free(&r);
  fh_client_rows_free(&t);
  /* counts checked against run.clients */
  assert_int_equal(fh_partition_check_natural(dflt, 3, 3), 0);
  assert_int_equal(fh_partition_check_natural(dflt, 0, 3), 0);
  static const char *const need[] = {"3 natural clients", "asks for 4", "set run.clients = 3", NULL};
  expect_error(fh_partition_check_natural(cfg, 3, 4), FH_ERR_DATA, need);
  expect_error(fh_partition_check_natural(dflt, 3, 4), FH_ERR_DATA, need);
  static const char *const none[] = {"no natural clients", "partition.method", NULL};
  expect_error(fh_partition_check_natural(cfg, 0, 3), FH_ERR_DATA, none);
  expect_error(fh_partition_train(cfg, 1, y, 10, C, 3, NULL, &r), FH_ERR_DATA, none);
  /* an empty natural client */
  const int64_t holey[] = {0, 2, 2, 10};
  static const char *const empty[] = {"client 1", "train", NULL};
  expect_error(fh_partition_train(cfg, 1, y, 10, C, 3, holey, &r), FH_ERR_DATA, empty);
  fh_config_free(cfg);
  fh_config_free(dflt);
  free(y);
  free(yt);
}

/* ---- test split ------------------------------------------------------------------ */

/* Every client's test class counts are its t test rows apportioned over its
 * train class counts: within one row of t * n_kc / n_k. */
static void check_follows(const fh_client_rows *tr, const fh_client_rows *te, const int32_t *y, const int32_t *yt,
                          int C) {
  int64_t *a = fh_partition_counts(tr, y, C), *b = fh_partition_counts(te, yt, C);
  for (int k = 0; k < tr->num_clients; k++) {
    double nk = (double)client_n(tr, k), tk = (double)client_n(te, k);
    for (int c = 0; c < C; c++) {
      double want = tk * (double)a[k * C + c] / nk;
      assert_true(fabs((double)b[k * C + c] - want) < 1.0 + 1e-9);
      if (a[k * C + c] == 0) assert_int_equal(b[k * C + c], 0);
    }
  }
  free(a);
  free(b);
}

/* The default split: each class's test rows apportioned over the clients by
 * their train rows of that class (cumulative floor): within one row of
 * M_c * n_kc / D_c, D_c the class's train rows over all clients. */
static void check_shared(const fh_client_rows *tr, const fh_client_rows *te, const int32_t *y, const int32_t *yt,
                         int C) {
  int K = tr->num_clients;
  int64_t *a = fh_partition_counts(tr, y, C), *b = fh_partition_counts(te, yt, C);
  int64_t *M = calloc((size_t)C, sizeof(int64_t)), *D = calloc((size_t)C, sizeof(int64_t));
  for (int64_t i = 0; i < te->offsets[K]; i++) M[yt[te->rows[i]]]++;
  for (int k = 0; k < K; k++)
    for (int c = 0; c < C; c++) D[c] += a[k * C + c];
  for (int k = 0; k < K; k++)
    for (int c = 0; c < C; c++) {
      double want = (double)M[c] * (double)a[k * C + c] / (double)D[c];
      assert_true(fabs((double)b[k * C + c] - want) < 1.0 + 1e-9);
    }
  free(M);
  free(D);
  free(a);
  free(b);
}

static void test_test_split_follows_train(void **state) {
  (void)state;
  const int64_t n = 8000, m = 3000;
  const int C = 10, K = 30;
  int32_t *y = make_labels(n, C, 15, 0.1), *yt = make_labels(m, C, 16, 0.1);
  const char *variants[][4] = {
      {"partition.method=dirichlet", "partition.alpha=0.3", "partition.min_size=5", NULL},
      {"partition.method=shards_pfedafm", "partition.test_fraction=0.25", NULL, NULL},
      {"partition.method=iid", "partition.test_per_client=7", NULL, NULL},
      {"partition.method=lowdata", "partition.samples_per_client=50", "partition.test_per_client=20", NULL},
  };
  for (int v = 0; v < 4; v++) {
    int ns = 0;
    while (ns < 4 && variants[v][ns]) ns++;
    fh_config *cfg = make_cfg(variants[v], ns);
    fh_client_rows tr, te;
    train_ok(cfg, 8, y, n, C, K, &tr);
    assert_int_equal(fh_partition_test(cfg, 8, &tr, y, yt, m, C, NULL, &te), 0);
    check_rows(&te, K, m, 1);
    if (v == 0) check_shared(&tr, &te, y, yt, C);
    else check_follows(&tr, &te, y, yt, C);
    for (int k = 0; k < K; k++) {
      int64_t t = client_n(&te, k), nk = client_n(&tr, k);
      if (v == 1) assert_int_equal(t, llround(0.25 * (double)nk));
      if (v == 2) assert_int_equal(t, 7);
      if (v == 3) assert_int_equal(t, 20);
    }
    if (v == 0) assert_int_equal(te.offsets[K], m); /* shared: every test row once */
    fh_client_rows_free(&tr);
    fh_client_rows_free(&te);
    fh_config_free(cfg);
  }
  /* the default split with clients too small for a share of the test pool:
   * each still gets a row, of a class it has in train */
  {
    const char *q[] = {"partition.method=quantity", "partition.size_sigma=1", "partition.min_size=2"};
    fh_config *cfg = make_cfg(q, 3);
    fh_client_rows tr, te;
    train_ok(cfg, 8, y, 2000, C, 100, &tr);
    assert_int_equal(fh_partition_test(cfg, 8, &tr, y, yt, 60, C, NULL, &te), 0);
    check_rows(&te, 100, 60, 0);
    int64_t *a = fh_partition_counts(&tr, y, C), *b = fh_partition_counts(&te, yt, C);
    for (int k = 0; k < 100; k++)
      for (int c = 0; c < C; c++)
        if (b[k * C + c] > 0) assert_true(a[k * C + c] > 0);
    free(a);
    free(b);
    fh_client_rows_free(&tr);
    fh_client_rows_free(&te);
    fh_config_free(cfg);
  }
  /* a class with too few test rows: its rows are reused (only that class) */
  for (int i = 0; i < m; i++)
    if (yt[i] == 2 && i % 20) yt[i] = 1;
  const char *sets[] = {"partition.method=shards", "partition.classes_per_client=2", "partition.test_per_client=40"};
  fh_config *cfg = make_cfg(sets, 3);
  fh_client_rows tr, te;
  train_ok(cfg, 8, y, n, C, K, &tr);
  assert_int_equal(fh_partition_test(cfg, 8, &tr, y, yt, m, C, NULL, &te), 0);
  check_rows(&te, K, m, 0);
  check_follows(&tr, &te, y, yt, C);
  int *uses = calloc((size_t)m, sizeof(int));
  for (int64_t i = 0; i < te.offsets[K]; i++) uses[te.rows[i]]++;
  int reused2 = 0;
  for (int i = 0; i < m; i++) {
    if (yt[i] != 2) assert_true(uses[i] <= 1);
    else reused2 += uses[i] > 1;
  }
  assert_true(reused2 > 0);
  free(uses);
  fh_client_rows_free(&tr);
  fh_client_rows_free(&te);
  fh_config_free(cfg);
  free(y);
  free(yt);
}

/* ---- errors and statistics --------------------------------------------------------- */

static void test_errors(void **state) {
  (void)state;
  int32_t y[6] = {0, 1, 2, 0, 1, 7};
  fh_client_rows r;
  fh_config *cfg = make_cfg(NULL, 0);
  static const char *const label[] = {"row 5", "7", "[0, 3)", NULL};
  expect_error(fh_partition_train(cfg, 1, y, 6, 3, 2, NULL, &r), FH_ERR_DATA, label);
  y[5] = 2;
  static const char *const few[] = {"client 0", "without train rows", "run.clients", NULL};
  expect_error(fh_partition_train(cfg, 1, y, 6, 3, 7, NULL, &r), FH_ERR_DATA, few);
  fh_config_free(cfg);
  const char *both[] = {"partition.test_per_client=3", "partition.test_fraction=0.2"};
  cfg = make_cfg(both, 2);
  static const char *const one[] = {"partition.test_per_client", "partition.test_fraction", "only one", NULL};
  expect_error(fh_partition_train(cfg, 1, y, 6, 3, 2, NULL, &r), FH_ERR_CONFIG, one);
  fh_config_free(cfg);
  const char *shares[] = {"partition.share_min=0.7", "partition.share_max=0.6"};
  cfg = make_cfg(shares, 2);
  static const char *const swap[] = {"partition.share_min", NULL};
  expect_error(fh_partition_train(cfg, 1, y, 6, 3, 2, NULL, &r), FH_ERR_CONFIG, swap);
  fh_config_free(cfg);
}

static void test_stats(void **state) {
  (void)state;
  /* 3 clients x 2 classes; global mix (0.5, 0.5) */
  const int64_t train[] = {10, 10, 20, 0, 0, 20};
  const int64_t test[] = {2, 2, 3, 1, 0, 4};
  fh_partition_stats s;
  fh_partition_summarize(train, test, 3, 2, &s);
  assert_int_equal(s.train_total, 60);
  assert_int_equal(s.train_min, 20);
  assert_int_equal(s.train_max, 20);
  assert_int_equal(s.classes_min, 1);
  assert_int_equal(s.classes_max, 2);
  assert_true(fabs(s.classes_mean - 4.0 / 3) < 1e-12);
  assert_true(fabs(s.emd_min - 0.0) < 1e-12);
  assert_true(fabs(s.emd_max - 1.0) < 1e-12);
  assert_true(fabs(s.emd_mean - 2.0 / 3) < 1e-12);
  assert_int_equal(s.test_total, 12);
  assert_int_equal(s.test_min, 4);
  /* client 1: test (0.75, 0.25) vs train (1, 0): 0.5 */
  assert_true(fabs(s.test_vs_train_max - 0.5) < 1e-12);
  assert_true(fabs(s.test_vs_train_mean - 0.5 / 3) < 1e-12);
  /* counts from rows */
  int32_t y[5] = {1, 0, 1, 1, 0};
  int64_t off[3] = {0, 2, 5}, rows[5] = {0, 2, 1, 3, 3};
  fh_client_rows r = {2, off, rows};
  int64_t *cnt = fh_partition_counts(&r, y, 2);
  const int64_t want[4] = {0, 2, 1, 2};
  assert_memory_equal(cnt, want, sizeof want);
  free(cnt);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_iid_matches_documented_split),
      cmocka_unit_test(test_every_method_rows_and_determinism),
      cmocka_unit_test(test_dirichlet_alpha),
      cmocka_unit_test(test_dirichlet_min_size),
      cmocka_unit_test(test_shards_exact_classes),
      cmocka_unit_test(test_lowdata_fixed_count),
      cmocka_unit_test(test_lips_counts_rule),
      cmocka_unit_test(test_lips_split),
      cmocka_unit_test(test_twoclass),
      cmocka_unit_test(test_twoclass_share),
      cmocka_unit_test(test_quantity),
      cmocka_unit_test(test_natural),
      cmocka_unit_test(test_test_split_follows_train),
      cmocka_unit_test(test_errors),
      cmocka_unit_test(test_stats),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
