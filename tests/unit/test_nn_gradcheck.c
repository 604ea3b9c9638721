/* Analytic gradients against central finite differences: Linear, ReLU, the
 * softmax cross-entropy (hard and soft targets) and a whole MLP.
 *
 * Layer checks differentiate J = sum(r * y) for a fixed random r, summed in
 * double, so that dJ/dy = r and the only float rounding is in y itself. The
 * step actually taken is (double)(float)(p + h) - (double)(float)(p - h), not
 * 2h, so rounding the perturbed parameter to float does not bias the quotient.
 *
 * Agreement: |analytic - numeric| <= 1e-2 max(|analytic|, |numeric|) + atol,
 * where atol is a few times the quotient's rounding noise for that objective.
 * Every check is paired with negative controls: the same comparison must
 * reject the analytic gradient with its sign flipped or scaled by 1.05. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/rng.h"
#include "nn/layer.h"
#include "nn/loss.h"
#include "nn/model.h"

#define RTOL 1e-2

/* ---- comparison ------------------------------------------------------------ */

typedef struct {
  int bad;           /* elements outside the tolerance       */
  size_t worst_i;
  double worst_excess; /* |a-n| / (tolerance) of the worst    */
} agreement;

static agreement compare(const double *analytic, const double *numeric, size_t n, double scale,
                         double atol) {
  agreement g = {0, 0, 0.0};
  for (size_t i = 0; i < n; i++) {
    const double a = analytic[i] * scale, d = numeric[i];
    const double tol = RTOL * fmax(fabs(a), fabs(d)) + atol;
    const double excess = fabs(a - d) / tol;
    if (!(excess <= 1.0)) g.bad++;
    if (!(excess <= g.worst_excess)) g.worst_excess = excess, g.worst_i = i;
  }
  return g;
}

/* Asserts agreement, and that a wrong sign or a 5% error would be caught. */
static void assert_gradients(const char *what, const double *analytic, const double *numeric,
                             size_t n, double atol) {
  const agreement g = compare(analytic, numeric, n, 1.0, atol);
  if (g.bad)
    fail_msg("%s: %d of %zu gradient entries disagree; worst [%zu] analytic %.6g numeric %.6g", what,
             g.bad, n, g.worst_i, analytic[g.worst_i], numeric[g.worst_i]);
  if (compare(analytic, numeric, n, -1.0, atol).bad == 0)
    fail_msg("%s: the check cannot tell a flipped sign (atol %.g too loose)", what, atol);
  if (compare(analytic, numeric, n, 1.05, atol).bad == 0)
    fail_msg("%s: the check cannot tell a 5%% error (atol %.g too loose)", what, atol);
}

/* ---- helpers ----------------------------------------------------------------- */

static fh_rng g_rng;

static int seed_rng(void **state) {
  (void)state;
  fh_rng_init(&g_rng, 20240601, FH_RNG_TEST, 0, 0);
  return 0;
}

static float *randn(size_t n, float std) {
  float *x = malloc(n * sizeof(float));
  fh_rng_normal_fill(&g_rng, x, n, 0.0f, std);
  return x;
}

static double dot(const float *a, const float *b, size_t n) {
  double s = 0.0;
  for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
  return s;
}

/* The actual distance between p + h and p - h once both are rounded to float. */
static double perturb(float *p, float h, float *plus, float *minus) {
  const float orig = *p;
  *plus = orig + h;
  *minus = orig - h;
  return (double)*plus - (double)*minus;
}

/* ---- Linear ------------------------------------------------------------------ */

enum { LB = 3, LIN = 5, LOUT = 4 };

/* J = sum(r * (x W^T + b)) */
static double linear_objective(const float *x, const float *W, const float *b, const float *r) {
  float y[LB * LOUT];
  fh_linear_forward(y, x, W, b, LB, LIN, LOUT);
  return dot(r, y, LB * LOUT);
}

/* Central differences of linear_objective with respect to every entry of p
 * (one of x, W, b), into num. */
static void linear_numeric(float *p, size_t n, const float *x, const float *W, const float *b,
                           const float *r, double *num) {
  for (size_t i = 0; i < n; i++) {
    const float orig = p[i];
    float plus, minus;
    const double step = perturb(&p[i], 1e-2f, &plus, &minus);
    p[i] = plus;
    const double jp = linear_objective(x, W, b, r);
    p[i] = minus;
    const double jm = linear_objective(x, W, b, r);
    p[i] = orig;
    num[i] = (jp - jm) / step;
  }
}

static void test_linear(void **state) {
  (void)state;
  float *x = randn(LB * LIN, 1.0f), *W = randn(LOUT * LIN, 0.5f), *b = randn(LOUT, 0.5f);
  float *r = randn(LB * LOUT, 1.0f);
  /* Prefilled gradients: the kernel must add to them. */
  float *dW = randn(LOUT * LIN, 1.0f), *db = randn(LOUT, 1.0f);
  float *dW0 = malloc(sizeof(float) * LOUT * LIN), *db0 = malloc(sizeof(float) * LOUT);
  memcpy(dW0, dW, sizeof(float) * LOUT * LIN);
  memcpy(db0, db, sizeof(float) * LOUT);
  float dx[LB * LIN];
  fh_linear_backward(dx, dW, db, r, x, W, LB, LIN, LOUT);

  double ana[LOUT * LIN], num[LOUT * LIN];
  for (int i = 0; i < LOUT * LIN; i++) ana[i] = (double)dW[i] - dW0[i];
  linear_numeric(W, LOUT * LIN, x, W, b, r, num);
  assert_gradients("linear dW", ana, num, LOUT * LIN, 1e-4);
  for (int i = 0; i < LOUT; i++) ana[i] = (double)db[i] - db0[i];
  linear_numeric(b, LOUT, x, W, b, r, num);
  assert_gradients("linear db", ana, num, LOUT, 1e-4);
  for (int i = 0; i < LB * LIN; i++) ana[i] = dx[i];
  linear_numeric(x, LB * LIN, x, W, b, r, num);
  assert_gradients("linear dx", ana, num, LB * LIN, 1e-4);

  /* dx = NULL skips the input gradient and leaves the rest as it was. */
  float dW2[LOUT * LIN] = {0}, db2[LOUT] = {0};
  fh_linear_backward(NULL, dW2, db2, r, x, W, LB, LIN, LOUT);
  for (int i = 0; i < LOUT * LIN; i++) assert_float_equal(dW2[i], dW[i] - dW0[i], 1e-5);
  for (int i = 0; i < LOUT; i++) assert_float_equal(db2[i], db[i] - db0[i], 1e-5);

  /* No bias: y = x W^T. */
  float y0[LB * LOUT], y1[LB * LOUT];
  fh_linear_forward(y0, x, W, NULL, LB, LIN, LOUT);
  fh_linear_forward(y1, x, W, b, LB, LIN, LOUT);
  for (int i = 0; i < LB * LOUT; i++) assert_float_equal(y1[i] - y0[i], b[i % LOUT], 1e-5);

  free(x), free(W), free(b), free(r), free(dW), free(db), free(dW0), free(db0);
}

/* ---- ReLU ------------------------------------------------------------------- */

static void test_relu(void **state) {
  (void)state;
  enum { N = 40 };
  /* Keep every input at least 0.05 from the kink, where the derivative is 0 or 1. */
  float *x = randn(N, 1.0f), *r = randn(N, 1.0f);
  for (int i = 0; i < N; i++) x[i] = copysignf(0.05f + fabsf(x[i]), x[i]);
  float y[N], dx[N];
  fh_relu_forward(y, x, N);
  fh_relu_backward(dx, r, y, N);
  double ana[N], num[N];
  for (int i = 0; i < N; i++) {
    ana[i] = dx[i];
    float xp[N], xm[N], yp[N], ym[N];
    memcpy(xp, x, sizeof xp);
    memcpy(xm, x, sizeof xm);
    const double step = perturb(&x[i], 1e-3f, &xp[i], &xm[i]);
    fh_relu_forward(yp, xp, N);
    fh_relu_forward(ym, xm, N);
    num[i] = (dot(r, yp, N) - dot(r, ym, N)) / step;
  }
  assert_gradients("relu dx", ana, num, N, 1e-4);
  int active = 0;
  for (int i = 0; i < N; i++) active += x[i] > 0;
  assert_true(active > 5 && active < N - 5); /* both branches exercised */

  /* NaN passes through the forward, as in torch.relu. */
  const float bad[2] = {NAN, -1.0f};
  float out[2];
  fh_relu_forward(out, bad, 2);
  assert_true(isnan(out[0]));
  assert_true(out[1] == 0.0f);
  free(x), free(r);
}

/* ---- cross-entropy ---------------------------------------------------------------- */

enum { CB = 3, CC = 4 };

static void ce_numeric(float *z, const int32_t *y, const float *t, double *num) {
  float probs[CB * CC];
  for (int i = 0; i < CB * CC; i++) {
    const float orig = z[i];
    float plus, minus;
    const double step = perturb(&z[i], 1e-2f, &plus, &minus);
    z[i] = plus;
    const double jp = y ? fh_softmax_ce_forward(probs, z, y, CB, CC)
                        : fh_softmax_ce_soft_forward(probs, z, t, CB, CC);
    z[i] = minus;
    const double jm = y ? fh_softmax_ce_forward(probs, z, y, CB, CC)
                        : fh_softmax_ce_soft_forward(probs, z, t, CB, CC);
    z[i] = orig;
    num[i] = (jp - jm) / step;
  }
}

static void test_cross_entropy(void **state) {
  (void)state;
  float *z = randn(CB * CC, 2.0f);
  const int32_t y[CB] = {2, 0, 3};
  float probs[CB * CC], dz[CB * CC];
  const double loss = fh_softmax_ce_forward(probs, z, y, CB, CC);
  /* The value itself: mean of logsumexp - z_y, in double. */
  double want = 0.0;
  for (int b = 0; b < CB; b++) {
    double s = 0.0;
    for (int j = 0; j < CC; j++) s += exp((double)z[b * CC + j]);
    want += log(s) - z[b * CC + y[b]];
  }
  assert_true(fabs(loss - want / CB) <= 1e-6 * fabs(want / CB));
  for (int b = 0; b < CB; b++) {
    double s = 0.0;
    for (int j = 0; j < CC; j++) s += probs[b * CC + j];
    assert_true(fabs(s - 1.0) < 1e-6);
  }
  fh_softmax_ce_backward(dz, probs, y, CB, CC);
  double ana[CB * CC], num[CB * CC];
  for (int i = 0; i < CB * CC; i++) ana[i] = dz[i];
  ce_numeric(z, y, NULL, num);
  assert_gradients("cross-entropy dlogits", ana, num, CB * CC, 1e-5);

  /* Soft targets; the last row sums to 0.6, not one. */
  float t[CB * CC];
  for (int b = 0; b < CB; b++) {
    const double mass = b == CB - 1 ? 0.6 : 1.0;
    double s = 0.0;
    for (int j = 0; j < CC; j++) s += (t[b * CC + j] = (float)(1.0 + fh_rng_uniform(&g_rng)));
    for (int j = 0; j < CC; j++) t[b * CC + j] = (float)(t[b * CC + j] * mass / s);
  }
  fh_softmax_ce_soft_forward(probs, z, t, CB, CC);
  fh_softmax_ce_soft_backward(dz, probs, t, CB, CC);
  for (int i = 0; i < CB * CC; i++) ana[i] = dz[i];
  ce_numeric(z, NULL, t, num);
  assert_gradients("soft-target cross-entropy dlogits", ana, num, CB * CC, 1e-5);
  free(z);
}

/* Large logits must not overflow: the loss of [1000, 0] against class 1 is 1000. */
static void test_cross_entropy_is_stable(void **state) {
  (void)state;
  const float z[4] = {1000.0f, 0.0f, -1000.0f, 0.0f};
  const int32_t y[2] = {1, 0};
  float probs[4], dz[4];
  const double loss = fh_softmax_ce_forward(probs, z, y, 2, 2);
  assert_true(isfinite(loss));
  assert_true(fabs(loss - (1000.0 + 1000.0) / 2) < 1e-3);
  fh_softmax_ce_backward(dz, probs, y, 2, 2);
  assert_float_equal(dz[0], 0.5f, 1e-6);
  assert_float_equal(dz[1], -0.5f, 1e-6);
  assert_float_equal(dz[2], -0.5f, 1e-6);
  assert_float_equal(dz[3], 0.5f, 1e-6);
}

/* ---- a whole MLP ------------------------------------------------------------------ */

static void test_mlp(void **state) {
  (void)state;
  enum { D = 6, C = 4, B = 3 };
  const int hidden[2] = {7, 5};
  fh_model *m;
  assert_int_equal(fh_model_create_mlp(&m, D, hidden, 2, C, B), 0);
  fh_rng init;
  fh_rng_init(&init, 7, FH_RNG_INIT, FH_RNG_NONE, FH_RNG_NONE);
  fh_model_init(m, &init);
  float *x = randn(B * D, 1.0f);
  const int32_t y[B] = {1, 3, 0};

  const size_t n = fh_model_nparams(m);
  float *theta = fh_model_params(m);
  const float loss = fh_model_loss_grad(m, x, y, B);
  double *ana = malloc(n * sizeof(double)), *num = malloc(n * sizeof(double));
  for (size_t i = 0; i < n; i++) ana[i] = fh_model_grads(m)[i];

  /* The returned loss is the mean cross-entropy of the forward's logits. */
  const float *logits = fh_model_forward(m, x, B, 1);
  double want = 0.0;
  for (int b = 0; b < B; b++) {
    double s = 0.0;
    for (int j = 0; j < C; j++) s += exp((double)logits[b * C + j]);
    want += log(s) - logits[b * C + y[b]];
  }
  assert_true(fabs(loss - want / B) <= 1e-6 * want / B);

  for (size_t i = 0; i < n; i++) {
    const float orig = theta[i];
    float plus, minus;
    const double step = perturb(&theta[i], 1e-2f, &plus, &minus);
    theta[i] = plus;
    const double jp = fh_model_loss_grad(m, x, y, B);
    theta[i] = minus;
    const double jm = fh_model_loss_grad(m, x, y, B);
    theta[i] = orig;
    num[i] = (jp - jm) / step;
  }
  /* The loss is float (about 1e-7 relative); over a 2e-2 step that is noise
   * of a few 1e-6 in the quotient. */
  assert_gradients("MLP d(loss)/d(params)", ana, num, n, 2e-5);

  /* Per view, so that a wrong gradient in one layer cannot hide in the rest. */
  for (int v = 0; v < fh_model_nviews(m); v++) {
    const fh_param_view *pv = fh_model_view(m, v);
    assert_gradients(pv->name, ana + pv->offset, num + pv->offset, pv->numel, 2e-5);
  }
  free(ana), free(num), free(x);
  fh_model_free(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup(test_linear, seed_rng),
      cmocka_unit_test_setup(test_relu, seed_rng),
      cmocka_unit_test_setup(test_cross_entropy, seed_rng),
      cmocka_unit_test(test_cross_entropy_is_stable),
      cmocka_unit_test_setup(test_mlp, seed_rng),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
