/* Adam, frozen-parameter steps, the distillation loss and the mean squared
 * error against PyTorch on fixed inputs (tests/fixtures/nn_optim_loss_torch.txt,
 * made by make_optim_loss_fixtures.py), and the losses' gradients against
 * finite differences. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gradcheck.h"
#include "torch_fixture.h"

#include "nn/loss.h"
#include "nn/optim.h"

#define MAX_N 64 /* every fixture tensor here is smaller */

static torch_fixture g_fixture;

static int load_fixture(void **state) {
  (void)state;
  return torch_fixture_load(&g_fixture, FH_FIXTURES_DIR "/nn_optim_loss_torch.txt");
}

static int free_fixture(void **state) {
  (void)state;
  torch_fixture_free(&g_fixture);
  return 0;
}

static double scalar(const char *name) { return fixture_get(&g_fixture, "%s", name)->v[0]; }

/* ---- the flat parameter buffer ---------------------------------------------- */

typedef struct {
  size_t n;
  int ntensors;
  size_t offset[8], numel[8];
} flat_layout;

static flat_layout layout(void) {
  const torch_tensor *sizes = fixture_get(&g_fixture, "opt/sizes");
  flat_layout l = {0, (int)sizes->n, {0}, {0}};
  assert_true(l.ntensors <= 8);
  for (int i = 0; i < l.ntensors; i++) {
    l.offset[i] = l.n;
    l.numel[i] = (size_t)sizes->v[i];
    l.n += l.numel[i];
  }
  assert_int_equal(l.n, fixture_get(&g_fixture, "opt/p0")->n);
  assert_true(l.n <= MAX_N);
  return l;
}

static fh_adam adam_hyper(const char *name) {
  const torch_tensor *h = fixture_get(&g_fixture, "%s", name);
  return (fh_adam){.lr = h->v[0], .beta1 = h->v[1], .beta2 = h->v[2], .eps = h->v[3],
                   .weight_decay = h->v[4]};
}

/* ---- Adam ------------------------------------------------------------------- */

static void run_adam(int a) {
  const flat_layout l = layout();
  char name[32];
  snprintf(name, sizeof name, "adam%d/hyper", a);
  const fh_adam opt = adam_hyper(name);
  float p[MAX_N], g[MAX_N], m[MAX_N] = {0}, v[MAX_N] = {0};
  to_float(p, fixture_get(&g_fixture, "opt/p0"));
  long long steps = 0;
  for (int k = 0; k < 3; k++) {
    to_float(g, fixture_get(&g_fixture, "opt/g%d", k));
    fh_adam_step(&opt, p, g, m, v, l.n, &steps);
  }
  assert_int_equal(steps, 3);
  char what[64];
  const char *keys[] = {"p", "exp_avg", "exp_avg_sq"};
  const float *got[] = {p, m, v};
  for (int i = 0; i < 3; i++) {
    snprintf(what, sizeof what, "adam%d/%s", a, keys[i]);
    assert_close(what, got[i], fixture_get(&g_fixture, "%s", what), 1e-5);
  }
  /* Three steps move p by about 3 lr: hold the displacement itself to torch's,
   * so a wrong bias correction or a missing weight decay cannot hide in p's
   * magnitude. 1e-3: both sides lose digits in the subtraction. */
  const torch_tensor *p0 = fixture_get(&g_fixture, "opt/p0");
  snprintf(what, sizeof what, "adam%d/p", a);
  const torch_tensor *after = fixture_get(&g_fixture, "%s", what);
  double want_v[MAX_N];
  torch_tensor want = *after;
  want.v = want_v;
  float moved[MAX_N];
  for (size_t i = 0; i < l.n; i++) {
    want_v[i] = after->v[i] - (double)(float)p0->v[i];
    moved[i] = p[i] - (float)p0->v[i];
  }
  snprintf(what, sizeof what, "displacement of adam%d/p", a);
  assert_close(what, moved, &want, 1e-3);
}

static void test_adam(void **state) {
  (void)state;
  run_adam(0);
}

static void test_adam_weight_decay_and_eps(void **state) {
  (void)state;
  run_adam(1);
}

/* ---- frozen ranges ---------------------------------------------------------- */

/* The frozen tensors of "<prefix>/frozen" as ranges; *nfrozen of them. */
static void frozen_ranges(const flat_layout *l, const char *prefix, fh_param_range *r,
                          int *nfrozen, int *is_frozen) {
  const torch_tensor *f = fixture_get(&g_fixture, "%s/frozen", prefix);
  memset(is_frozen, 0, (size_t)l->ntensors * sizeof(int));
  *nfrozen = (int)f->n;
  for (size_t i = 0; i < f->n; i++) {
    const int t = (int)f->v[i];
    r[i] = (fh_param_range){l->offset[t], l->numel[t]};
    is_frozen[t] = 1;
  }
}

/* Asserts that the frozen tensors of buf are bitwise those of before, and that
 * the trained ones, gathered in order, match "<prefix>/<key>". */
static void check_frozen_and_trained(const flat_layout *l, const int *is_frozen, const float *buf,
                                     const float *before, const char *prefix, const char *key) {
  float trained[MAX_N];
  size_t nt = 0;
  char what[64];
  snprintf(what, sizeof what, "%s/%s", prefix, key);
  for (int t = 0; t < l->ntensors; t++) {
    const size_t o = l->offset[t], c = l->numel[t];
    if (is_frozen[t]) {
      if (memcmp(buf + o, before + o, c * sizeof(float)) != 0)
        fail_msg("%s: frozen tensor %d was written", what, t);
    } else {
      memcpy(trained + nt, buf + o, c * sizeof(float));
      nt += c;
    }
  }
  const torch_tensor *want = fixture_get(&g_fixture, "%s", what);
  assert_int_equal(nt, want->n);
  assert_close(what, trained, want, 1e-5);
}

/* Fills the buffers so that reading a frozen element shows: NaN gradients, and
 * state that is not torch's starting value. */
static void poison_frozen(const flat_layout *l, const int *is_frozen, float *g, float *state1,
                          float *state2) {
  for (int t = 0; t < l->ntensors; t++)
    if (is_frozen[t])
      for (size_t i = l->offset[t]; i < l->offset[t] + l->numel[t]; i++) {
        g[i] = NAN;
        state1[i] = 0.25f + (float)i;
        if (state2) state2[i] = 3.5f * (float)i;
      }
}

static void run_adam_frozen(int f) {
  const flat_layout l = layout();
  const fh_adam opt = adam_hyper("adam1/hyper");
  char prefix[16];
  snprintf(prefix, sizeof prefix, "adamf%d", f);
  fh_param_range frozen[8];
  int nfrozen, is_frozen[8];
  frozen_ranges(&l, prefix, frozen, &nfrozen, is_frozen);
  float p[MAX_N], g[MAX_N], m[MAX_N] = {0}, v[MAX_N] = {0};
  to_float(p, fixture_get(&g_fixture, "opt/p0"));
  float p_before[MAX_N], m_before[MAX_N], v_before[MAX_N];
  long long steps = 0;
  for (int k = 0; k < 3; k++) {
    to_float(g, fixture_get(&g_fixture, "opt/g%d", k));
    poison_frozen(&l, is_frozen, g, m, v);
    if (k == 0) {
      memcpy(p_before, p, sizeof p);
      memcpy(m_before, m, sizeof m);
      memcpy(v_before, v, sizeof v);
    }
    fh_adam_step_frozen(&opt, p, g, m, v, l.n, &steps, frozen, nfrozen);
  }
  assert_int_equal(steps, 3);
  check_frozen_and_trained(&l, is_frozen, p, p_before, prefix, "p");
  check_frozen_and_trained(&l, is_frozen, m, m_before, prefix, "exp_avg");
  check_frozen_and_trained(&l, is_frozen, v, v_before, prefix, "exp_avg_sq");
}

static void test_adam_frozen_extractor(void **state) {
  (void)state;
  run_adam_frozen(0);
}

static void test_adam_frozen_interleaved(void **state) {
  (void)state;
  run_adam_frozen(1);
}

static void run_sgd_frozen(int f) {
  const flat_layout l = layout();
  const torch_tensor *h = fixture_get(&g_fixture, "sgdf/hyper");
  const fh_sgd opt = {.lr = (float)h->v[0], .momentum = (float)h->v[1],
                      .dampening = (float)h->v[2], .weight_decay = (float)h->v[3], .nesterov = 0};
  char prefix[16];
  snprintf(prefix, sizeof prefix, "sgdf%d", f);
  fh_param_range frozen[8];
  int nfrozen, is_frozen[8];
  frozen_ranges(&l, prefix, frozen, &nfrozen, is_frozen);
  float p[MAX_N], g[MAX_N], buf[MAX_N], p_before[MAX_N], buf_before[MAX_N];
  for (size_t i = 0; i < l.n; i++) buf[i] = NAN; /* the first step must not read it */
  to_float(p, fixture_get(&g_fixture, "opt/p0"));
  long long steps = 0;
  for (int k = 0; k < 3; k++) {
    to_float(g, fixture_get(&g_fixture, "opt/g%d", k));
    poison_frozen(&l, is_frozen, g, buf, NULL);
    if (k == 0) {
      memcpy(p_before, p, sizeof p);
      memcpy(buf_before, buf, sizeof buf);
    }
    fh_sgd_step_frozen(&opt, p, g, buf, l.n, &steps, frozen, nfrozen);
  }
  assert_int_equal(steps, 3);
  check_frozen_and_trained(&l, is_frozen, p, p_before, prefix, "p");
  check_frozen_and_trained(&l, is_frozen, buf, buf_before, prefix, "momentum_buffer");
}

static void test_sgd_frozen_extractor(void **state) {
  (void)state;
  run_sgd_frozen(0);
}

static void test_sgd_frozen_interleaved(void **state) {
  (void)state;
  run_sgd_frozen(1);
}

/* No ranges is the plain step, bit for bit; ranges that touch, overlap, are
 * empty or cover everything train exactly the elements outside their union. */
static void test_frozen_range_edges(void **state) {
  (void)state;
  enum { N = 20 };
  const fh_adam adam = {.lr = 1e-2, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.0};
  const fh_sgd sgd = {.lr = 0.1f, .momentum = 0.9f, .dampening = 0.0f, .weight_decay = 0.0f,
                      .nesterov = 1};
  float g[N];
  for (int i = 0; i < N; i++) g[i] = 0.1f * (float)(i - 7) + 0.05f; /* none zero */
  const fh_param_range cases[5][4] = {
      {{0, 0}, {0, 0}, {0, 0}, {0, 0}},     /* none                          */
      {{0, 3}, {3, 2}, {4, 4}, {15, 0}},    /* touching, overlapping, empty  */
      {{2, 5}, {19, 1}, {0, 0}, {0, 0}},    /* inside and at the very end    */
      {{0, 20}, {5, 3}, {0, 0}, {0, 0}},    /* everything                    */
      {{2, 5}, {3, 1}, {8, 11}, {0, 0}},    /* nested, one-element gaps      */
  };
  const int counts[] = {0, 4, 2, 2, 3};
  for (int c = 0; c < 5; c++) {
    int frozen[N] = {0};
    for (int r = 0; r < counts[c]; r++)
      for (size_t i = cases[c][r].offset; i < cases[c][r].offset + cases[c][r].count; i++)
        frozen[i] = 1;
    float pa[N], ma[N] = {0}, va[N] = {0}, pb[N], mb[N] = {0}, vb[N] = {0};
    float ps[N], bs[N] = {0}, pt[N], bt[N] = {0};
    for (int i = 0; i < N; i++) pa[i] = pb[i] = ps[i] = pt[i] = (float)i;
    long long sa = 0, sb = 0, ss = 0, st = 0;
    for (int k = 0; k < 2; k++) {
      fh_adam_step_frozen(&adam, pa, g, ma, va, N, &sa, cases[c], counts[c]);
      fh_adam_step(&adam, pb, g, mb, vb, N, &sb);
      fh_sgd_step_frozen(&sgd, ps, g, bs, N, &ss, cases[c], counts[c]);
      fh_sgd_step(&sgd, pt, g, bt, N, &st);
    }
    assert_int_equal(sa, 2);
    assert_int_equal(ss, 2);
    for (int i = 0; i < N; i++) {
      if (frozen[i]) {
        assert_true(pa[i] == (float)i && ma[i] == 0.0f && va[i] == 0.0f);
        assert_true(ps[i] == (float)i && bs[i] == 0.0f);
      } else { /* the same arithmetic as the plain step: equal bits */
        assert_memory_equal(&pa[i], &pb[i], sizeof(float));
        assert_memory_equal(&ma[i], &mb[i], sizeof(float));
        assert_memory_equal(&va[i], &vb[i], sizeof(float));
        assert_memory_equal(&ps[i], &pt[i], sizeof(float));
        assert_memory_equal(&bs[i], &bt[i], sizeof(float));
      }
    }
  }
}

/* ---- the losses against torch ---------------------------------------------- */

static void test_kd_loss(void **state) {
  (void)state;
  const torch_tensor *s = fixture_get(&g_fixture, "kd/student"),
                     *t = fixture_get(&g_fixture, "kd/teacher");
  const int B = s->shape[0], C = s->shape[1];
  const float T = (float)scalar("kd/T");
  assert_true(s->n <= MAX_N);
  float sf[MAX_N], tf[MAX_N], ps[MAX_N], pt[MAX_N], ds[MAX_N];
  to_float(sf, s);
  to_float(tf, t);
  const double loss = fh_kd_loss_forward(ps, pt, sf, tf, B, C, T);
  assert_scalar_close("distillation loss", loss, scalar("kd/loss"), 1e-5);
  fh_kd_loss_backward(ds, ps, pt, B, C, T);
  assert_close("distillation gradient", ds, fixture_get(&g_fixture, "kd/grad"), 1e-5);
  /* Identical logits: no loss, no gradient. */
  assert_true(fabs(fh_kd_loss_forward(ps, pt, sf, sf, B, C, T)) < 1e-12);
}

static void test_mse(void **state) {
  (void)state;
  const torch_tensor *p = fixture_get(&g_fixture, "mse/pred"),
                     *t = fixture_get(&g_fixture, "mse/target");
  assert_true(p->n <= MAX_N);
  float pf[MAX_N], tf[MAX_N], dp[MAX_N];
  to_float(pf, p);
  to_float(tf, t);
  assert_scalar_close("mse loss", fh_mse_forward(pf, tf, p->n), scalar("mse/loss"), 1e-6);
  fh_mse_backward(dp, pf, tf, p->n);
  assert_close("mse gradient", dp, fixture_get(&g_fixture, "mse/grad"), 1e-6);
}

/* ---- the gradients against finite differences ------------------------------- */

typedef struct {
  float *student;
  const float *teacher;
  float *ps, *pt;
  int B, C;
  float T;
} kd_objective_ctx;

static double kd_objective(void *ctx) {
  kd_objective_ctx *k = ctx;
  return fh_kd_loss_forward(k->ps, k->pt, k->student, k->teacher, k->B, k->C, k->T);
}

typedef struct {
  float *pred;
  const float *target;
  size_t n;
} mse_objective_ctx;

static double mse_objective(void *ctx) {
  mse_objective_ctx *m = ctx;
  return fh_mse_forward(m->pred, m->target, m->n);
}

static void test_kd_gradient_finite_differences(void **state) {
  (void)state;
  const torch_tensor *s = fixture_get(&g_fixture, "kd/student"),
                     *t = fixture_get(&g_fixture, "kd/teacher");
  const int B = s->shape[0], C = s->shape[1];
  float sf[MAX_N], tf[MAX_N], ps[MAX_N], pt[MAX_N], ds[MAX_N];
  to_float(sf, s);
  to_float(tf, t);
  const float temperatures[] = {1.0f, 4.0f};
  for (int k = 0; k < 2; k++) {
    const float T = temperatures[k];
    kd_objective_ctx ctx = {sf, tf, ps, pt, B, C, T};
    kd_objective(&ctx);
    fh_kd_loss_backward(ds, ps, pt, B, C, T);
    double analytic[MAX_N], numeric[MAX_N];
    for (size_t i = 0; i < s->n; i++) analytic[i] = ds[i];
    gradcheck_numeric(sf, s->n, 1e-2f, kd_objective, &ctx, numeric);
    char what[48];
    snprintf(what, sizeof what, "distillation gradient at T=%g", (double)T);
    assert_gradients(what, analytic, numeric, s->n, 2e-5);
  }
}

static void test_mse_gradient_finite_differences(void **state) {
  (void)state;
  const torch_tensor *p = fixture_get(&g_fixture, "mse/pred"),
                     *t = fixture_get(&g_fixture, "mse/target");
  float pf[MAX_N], tf[MAX_N], dp[MAX_N];
  to_float(pf, p);
  to_float(tf, t);
  mse_objective_ctx ctx = {pf, tf, p->n};
  fh_mse_backward(dp, pf, tf, p->n);
  double analytic[MAX_N], numeric[MAX_N];
  for (size_t i = 0; i < p->n; i++) analytic[i] = dp[i];
  gradcheck_numeric(pf, p->n, 1e-2f, mse_objective, &ctx, numeric);
  assert_gradients("mse gradient", analytic, numeric, p->n, 1e-5);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_adam),
      cmocka_unit_test(test_adam_weight_decay_and_eps),
      cmocka_unit_test(test_adam_frozen_extractor),
      cmocka_unit_test(test_adam_frozen_interleaved),
      cmocka_unit_test(test_sgd_frozen_extractor),
      cmocka_unit_test(test_sgd_frozen_interleaved),
      cmocka_unit_test(test_frozen_range_edges),
      cmocka_unit_test(test_kd_loss),
      cmocka_unit_test(test_mse),
      cmocka_unit_test(test_kd_gradient_finite_differences),
      cmocka_unit_test(test_mse_gradient_finite_differences),
  };
  return cmocka_run_group_tests(tests, load_fixture, free_fixture);
}
