/* Analytic gradients against central finite differences: Linear, ReLU, the
 * softmax cross-entropy (hard and soft targets) and a whole MLP.
 *
 * Layer checks differentiate J = sum(r * y) for a fixed random r, summed in
 * double, so that dJ/dy = r and the only float rounding is in y itself. The
 * step is the one actually taken once p +- h is rounded to float (gradcheck.h).
 *
 * Agreement: |analytic - numeric| <= 1e-2 max(|analytic|, |numeric|) + atol,
 * where atol is a few times the quotient's rounding noise for that objective.
 * Every check is paired with negative controls: the same comparison must
 * reject the analytic gradient with its sign flipped or scaled by 1.05. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gradcheck.h"

#include "core/rng.h"
#include "nn/layer.h"
#include "nn/loss.h"
#include "nn/model.h"

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

/* ---- Linear ------------------------------------------------------------------ */

enum { LB = 3, LIN = 5, LOUT = 4 };

/* J = sum(r * (x W^T + b)) */
typedef struct {
  const float *x, *W, *b, *r;
} linear_problem;

static double linear_objective(void *ctx) {
  const linear_problem *q = ctx;
  float y[LB * LOUT];
  fh_linear_forward(y, q->x, q->W, q->b, LB, LIN, LOUT);
  return dot(q->r, y, LB * LOUT);
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

  linear_problem J = {x, W, b, r};
  double ana[LOUT * LIN], num[LOUT * LIN];
  for (int i = 0; i < LOUT * LIN; i++) ana[i] = (double)dW[i] - dW0[i];
  gradcheck_numeric(W, LOUT * LIN, 1e-2f, linear_objective, &J, num);
  assert_gradients("linear dW", ana, num, LOUT * LIN, 1e-4);
  for (int i = 0; i < LOUT; i++) ana[i] = (double)db[i] - db0[i];
  gradcheck_numeric(b, LOUT, 1e-2f, linear_objective, &J, num);
  assert_gradients("linear db", ana, num, LOUT, 1e-4);
  for (int i = 0; i < LB * LIN; i++) ana[i] = dx[i];
  gradcheck_numeric(x, LB * LIN, 1e-2f, linear_objective, &J, num);
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

enum { RN = 40 };

/* J = sum(r * relu(x)) */
typedef struct {
  const float *x, *r;
} relu_problem;

static double relu_objective(void *ctx) {
  const relu_problem *q = ctx;
  float y[RN];
  fh_relu_forward(y, q->x, RN);
  return dot(q->r, y, RN);
}

static void test_relu(void **state) {
  (void)state;
  enum { N = RN };
  /* Keep every input at least 0.05 from the kink, where the derivative is 0 or 1. */
  float *x = randn(N, 1.0f), *r = randn(N, 1.0f);
  for (int i = 0; i < N; i++) x[i] = copysignf(0.05f + fabsf(x[i]), x[i]);
  float y[N], dx[N];
  fh_relu_forward(y, x, N);
  fh_relu_backward(dx, r, y, N);
  double ana[N], num[N];
  for (int i = 0; i < N; i++) ana[i] = dx[i];
  relu_problem J = {x, r};
  gradcheck_numeric(x, N, 1e-3f, relu_objective, &J, num);
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

/* J = the mean cross-entropy of z against hard labels y, or soft targets t when y is NULL. */
typedef struct {
  const float *z, *t;
  const int32_t *y;
} ce_problem;

static double ce_objective(void *ctx) {
  const ce_problem *q = ctx;
  float probs[CB * CC];
  return q->y ? fh_softmax_ce_forward(probs, q->z, q->y, CB, CC)
              : fh_softmax_ce_soft_forward(probs, q->z, q->t, CB, CC);
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
  ce_problem hard = {z, NULL, y};
  gradcheck_numeric(z, CB * CC, 1e-2f, ce_objective, &hard, num);
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
  ce_problem soft = {z, t, NULL};
  gradcheck_numeric(z, CB * CC, 1e-2f, ce_objective, &soft, num);
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

/* J = the model's mean cross-entropy on (x, y). */
typedef struct {
  fh_model *m;
  const float *x;
  const int32_t *y;
  int B;
} mlp_problem;

static double mlp_objective(void *ctx) {
  const mlp_problem *q = ctx;
  return fh_model_loss_grad(q->m, q->x, q->y, q->B);
}

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

  mlp_problem J = {m, x, y, B};
  gradcheck_numeric(theta, n, 1e-2f, mlp_objective, &J, num);
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
