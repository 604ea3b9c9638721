/* Contrastive representation distillation (fl/blocks/crd.h) against PyTorch
 * (tests/fixtures/make_crd_fixtures.py): the normalisers Z set at the first
 * batch, the loss, the gradient to the student's features and to both heads,
 * the memory step, the heads' own training (two torch.optim.SGD steps with
 * momentum and weight decay, as AugFL's augfl.crd_head_steps composes
 * fh_crd_loss and fh_sgd_step); and the negatives' draw (other classes only,
 * keyed). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fl/blocks/crd.h"
#include "nn/optim.h"
#include "torch_fixture.h"

static torch_fixture fx;

static int setup(void **state) {
  (void)state;
  return torch_fixture_load(&fx, FH_FIXTURES_DIR "/crd_torch.txt");
}

static int teardown(void **state) {
  (void)state;
  torch_fixture_free(&fx);
  return 0;
}

static float *floats(const torch_tensor *t) {
  float *p = malloc(t->n * sizeof(float));
  to_float(p, t);
  return p;
}

/* dense: 1 the [B, N] score products (what N <= 8 (K + 1) picks, as here),
 * 0 the gathered dot products: both must match torch. */
static void check_case(const char *tag, int dense) {
  const torch_tensor *dims = fixture_get(&fx, "dims"), *hyper = fixture_get(&fx, "hyper");
  const int B = (int)dims->v[0], ds = (int)dims->v[1], dt = (int)dims->v[2], D = (int)dims->v[3],
            K = (int)dims->v[4], N = (int)dims->v[5];
  fh_crd c;
  fh_crd_create(&c, ds, dt, D, K, (float)hyper->v[0], (float)hyper->v[1], N, B);
  assert_int_equal(c.dense, 1);
  c.dense = dense;
  c.head = floats(fixture_get(&fx, "%s/head", tag));
  c.mem_s = floats(fixture_get(&fx, "%s/mem_s", tag));
  c.mem_t = floats(fixture_get(&fx, "%s/mem_t", tag));
  c.Z = floats(fixture_get(&fx, "%s/z_in", tag));
  float *fs = floats(fixture_get(&fx, "%s/fs", tag)), *ft = floats(fixture_get(&fx, "%s/ft", tag));
  const torch_tensor *ti = fixture_get(&fx, "%s/idx", tag);
  int32_t *idx = malloc(ti->n * sizeof(int32_t));
  for (size_t i = 0; i < ti->n; i++) idx[i] = (int32_t)ti->v[i];
  const float weight = (float)fixture_get(&fx, "%s/weight", tag)->v[0];
  const int row0 = (int)fixture_get(&fx, "%s/row0", tag)->v[0];
  const size_t nh = fh_crd_head_n(ds, dt, D);
  assert_int_equal(nh, fixture_get(&fx, "%s/ghead", tag)->n);
  float *dfs = malloc((size_t)B * ds * sizeof(float)), *gh = calloc(nh, sizeof(float));

  const double L = fh_crd_loss(&c, fs, ft, idx, B, weight, dfs, gh);
  char what[64];
  snprintf(what, sizeof what, "%s%s: Z", tag, dense ? "" : " (gathered)");
  assert_close(what, c.Z, fixture_get(&fx, "%s/z", tag), 1e-5);
  snprintf(what, sizeof what, "%s%s: loss", tag, dense ? "" : " (gathered)");
  assert_scalar_close(what, L, fixture_get(&fx, "%s/loss", tag)->v[0], 1e-5);
  snprintf(what, sizeof what, "%s%s: d/dfs", tag, dense ? "" : " (gathered)");
  assert_close(what, dfs, fixture_get(&fx, "%s/dfs", tag), 1e-4);
  snprintf(what, sizeof what, "%s%s: d/dheads", tag, dense ? "" : " (gathered)");
  assert_close(what, gh, fixture_get(&fx, "%s/ghead", tag), 1e-4);

  /* the gradient ADDS to ghead and is linear in the weight */
  float *gh2 = malloc(nh * sizeof(float)), *dfs2 = malloc((size_t)B * ds * sizeof(float));
  memcpy(gh2, gh, nh * sizeof(float));
  fh_crd_loss(&c, fs, ft, idx, B, 2 * weight, dfs2, gh2);
  for (size_t i = 0; i < nh; i++) assert_true(fabsf(gh2[i] - 3 * gh[i]) <= 1e-5f * (1 + fabsf(gh[i])));
  for (int i = 0; i < B * ds; i++) assert_true(fabsf(dfs2[i] - 2 * dfs[i]) <= 1e-5f * (1 + fabsf(dfs[i])));

  /* the memory step of the batch's own rows */
  float *ns = malloc((size_t)B * D * sizeof(float)), *nt = malloc((size_t)B * D * sizeof(float));
  fh_crd_memory_rows(&c, c.mem_s, c.vs, row0, B, ns);
  fh_crd_memory_rows(&c, c.mem_t, c.vt, row0, B, nt);
  snprintf(what, sizeof what, "%s: new M_s rows", tag);
  assert_close(what, ns, fixture_get(&fx, "%s/new_s", tag), 1e-5);
  snprintf(what, sizeof what, "%s: new M_t rows", tag);
  assert_close(what, nt, fixture_get(&fx, "%s/new_t", tag), 1e-5);

  free(ns), free(nt), free(gh2), free(dfs2), free(dfs), free(gh), free(idx), free(fs), free(ft);
  free(c.head), free(c.mem_s), free(c.mem_t), free(c.Z);
  fh_crd_free(&c);
}

static void test_first_batch_sets_z(void **state) {
  (void)state;
  check_case("a", 1);
  check_case("a", 0);
}

static void test_later_batch(void **state) {
  (void)state;
  check_case("b", 1);
  check_case("b", 0);
}

/* Two momentum-SGD steps of the heads alone (features, banks and Z fixed),
 * each on weight x CRD with its own draws: the loss before each step, the
 * heads after each and the momentum buffer equal torch's. */
static void test_head_steps(void **state) {
  (void)state;
  const torch_tensor *dims = fixture_get(&fx, "dims"), *hyper = fixture_get(&fx, "hyper");
  const int B = (int)dims->v[0], ds = (int)dims->v[1], dt = (int)dims->v[2], D = (int)dims->v[3],
            K = (int)dims->v[4], N = (int)dims->v[5];
  fh_crd c;
  fh_crd_create(&c, ds, dt, D, K, (float)hyper->v[0], (float)hyper->v[1], N, B);
  c.head = floats(fixture_get(&fx, "c/head"));
  c.mem_s = floats(fixture_get(&fx, "c/mem_s"));
  c.mem_t = floats(fixture_get(&fx, "c/mem_t"));
  c.Z = floats(fixture_get(&fx, "c/z"));
  float *fs = floats(fixture_get(&fx, "c/fs")), *ft = floats(fixture_get(&fx, "c/ft"));
  const torch_tensor *o = fixture_get(&fx, "c/opt");
  const fh_sgd opt = {.lr = (float)o->v[1], .momentum = (float)o->v[2], .weight_decay = (float)o->v[3]};
  const size_t nh = fh_crd_head_n(ds, dt, D);
  float *gh = malloc(nh * sizeof(float)), *buf = calloc(nh, sizeof(float));
  int32_t *idx = malloc((size_t)B * (K + 1) * sizeof(int32_t));
  long long steps = 0;
  for (int k = 1; k <= 2; k++) {
    const torch_tensor *ti = fixture_get(&fx, "c/idx%d", k);
    for (size_t i = 0; i < ti->n; i++) idx[i] = (int32_t)ti->v[i];
    memset(gh, 0, nh * sizeof(float));
    const double L = fh_crd_loss(&c, fs, ft, idx, B, (float)o->v[0], NULL, gh);
    char what[64];
    snprintf(what, sizeof what, "c: loss before step %d", k);
    assert_scalar_close(what, L, fixture_get(&fx, "c/loss%d", k)->v[0], 1e-5);
    fh_sgd_step(&opt, c.head, gh, buf, nh, &steps);
    snprintf(what, sizeof what, "c: heads after step %d", k);
    assert_close(what, c.head, fixture_get(&fx, "c/head%d", k), 1e-4);
  }
  assert_close("c: momentum buffer", buf, fixture_get(&fx, "c/buf"), 1e-4);
  /* the steps moved the heads by more than the tolerance */
  const torch_tensor *h0 = fixture_get(&fx, "c/head");
  double moved = 0;
  for (size_t i = 0; i < nh; i++) moved = fmax(moved, fabs(c.head[i] - h0->v[i]));
  assert_true(moved > 1e-2);
  free(gh), free(buf), free(idx), free(fs), free(ft);
  free(c.head), free(c.mem_s), free(c.mem_t), free(c.Z);
  fh_crd_free(&c);
}

/* A central difference of the loss along each head coordinate and each
 * feature matches the analytic gradient (Z fixed), independently of PyTorch. */
static void test_finite_differences(void **state) {
  (void)state;
  const int B = 3, ds = 4, dt = 5, D = 6, K = 7, N = 12;
  fh_crd c;
  fh_crd_create(&c, ds, dt, D, K, 0.5f, 0.5f, N, B);
  const size_t nh = fh_crd_head_n(ds, dt, D);
  c.head = malloc(nh * sizeof(float));
  c.mem_s = malloc((size_t)N * D * sizeof(float));
  c.mem_t = malloc((size_t)N * D * sizeof(float));
  float Z[2];
  c.Z = Z;
  fh_rng r;
  fh_rng_init(&r, 5, FH_RNG_TEST, 0, 0);
  fh_crd_init_state(&c, &r);
  assert_true(Z[0] < 0 && Z[1] < 0);
  float fs[12], ft[15];
  fh_rng_normal_fill(&r, fs, 12, 0, 1);
  fh_rng_normal_fill(&r, ft, 15, 0, 1);
  int32_t idx[3 * 8];
  for (int i = 0; i < 24; i++) idx[i] = (int32_t)fh_rng_below(&r, N);
  float dfs[12], *gh = calloc(nh, sizeof(float));
  fh_crd_loss(&c, fs, ft, idx, B, 1.0f, dfs, gh); /* sets Z */
  memset(gh, 0, nh * sizeof(float));
  fh_crd_loss(&c, fs, ft, idx, B, 1.0f, dfs, gh);
  const float h = 1e-2f;
  for (size_t i = 0; i < nh; i += 3) {
    const float keep = c.head[i];
    c.head[i] = keep + h;
    const double lp = fh_crd_loss(&c, fs, ft, idx, B, 1.0f, NULL, NULL);
    c.head[i] = keep - h;
    const double lm = fh_crd_loss(&c, fs, ft, idx, B, 1.0f, NULL, NULL);
    c.head[i] = keep;
    const double fd = (lp - lm) / (2 * h);
    if (fabs(fd - gh[i]) > 2e-2 * (fabs(fd) + 1e-1)) fail_msg("head %zu: analytic %g, difference %g", i, gh[i], fd);
  }
  for (int i = 0; i < 12; i++) {
    const float keep = fs[i];
    fs[i] = keep + h;
    const double lp = fh_crd_loss(&c, fs, ft, idx, B, 1.0f, NULL, NULL);
    fs[i] = keep - h;
    const double lm = fh_crd_loss(&c, fs, ft, idx, B, 1.0f, NULL, NULL);
    fs[i] = keep;
    const double fd = (lp - lm) / (2 * h);
    if (fabs(fd - dfs[i]) > 2e-2 * (fabs(fd) + 1e-1)) fail_msg("f_s %d: analytic %g, difference %g", i, dfs[i], fd);
  }
  free(gh), free(c.head), free(c.mem_s), free(c.mem_t);
  c.Z = NULL;
  fh_crd_free(&c);
}

/* Negatives come only from other classes, cover them all, are the same for
 * the same key and differ for another round. */
static void test_draw(void **state) {
  (void)state;
  /* 10 rows: classes 0 0 1 2 2 2 0 1 2 1 -> by class */
  const int y[10] = {0, 0, 1, 2, 2, 2, 0, 1, 2, 1};
  int32_t by_class[10];
  int64_t off[4] = {0};
  for (int i = 0; i < 10; i++) off[y[i] + 1]++;
  for (int k = 0; k < 3; k++) off[k + 1] += off[k];
  int64_t fill[3] = {off[0], off[1], off[2]};
  for (int i = 0; i < 10; i++) by_class[fill[y[i]]++] = i;
  enum { K = 400 };
  int32_t a[K + 1], b[K + 1], c2[K + 1];
  for (int row = 0; row < 10; row++) {
    fh_rng r;
    fh_rng_init(&r, 9, FH_RNG_TEST, (uint32_t)row, 3);
    fh_crd_draw(&r, row, y[row], by_class, off, 10, K, a);
    fh_rng_init(&r, 9, FH_RNG_TEST, (uint32_t)row, 3);
    fh_crd_draw(&r, row, y[row], by_class, off, 10, K, b);
    fh_rng_init(&r, 9, FH_RNG_TEST, (uint32_t)row, 4);
    fh_crd_draw(&r, row, y[row], by_class, off, 10, K, c2);
    assert_int_equal(a[0], row);
    assert_memory_equal(a, b, sizeof a);
    assert_true(memcmp(a, c2, sizeof a) != 0);
    int seen[10] = {0};
    for (int k = 1; k <= K; k++) {
      assert_true(a[k] >= 0 && a[k] < 10);
      assert_int_not_equal(y[a[k]], y[row]);
      seen[a[k]]++;
    }
    for (int i = 0; i < 10; i++)
      if (y[i] != y[row]) assert_true(seen[i] > 0);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_first_batch_sets_z),
      cmocka_unit_test(test_later_batch),
      cmocka_unit_test(test_head_steps),
      cmocka_unit_test(test_finite_differences),
      cmocka_unit_test(test_draw),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
