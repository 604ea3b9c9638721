/* BatchNorm2d, BatchNorm1d, ELU and Dropout: forward/backward and running
 * statistics against PyTorch on fixed inputs (tests/fixtures/nn_norm_torch.txt,
 * made by make_norm_fixtures.py), gradients against central finite
 * differences, dropout's statistics and reproducibility, and a model chaining
 * them through the builder.
 *
 * Gradient checks differentiate J = sum(r * y) for a fixed random r, summed in
 * double, through the layer's own ops (forward, then backward with dy = r).
 * Agreement: |analytic - numeric| <= 1e-2 max(|analytic|, |numeric|) + atol,
 * and every check must also reject the gradient with its sign flipped or
 * scaled by 1.05. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gradcheck.h"
#include "layer_rig.h"
#include "torch_fixture.h"

#include "core/rng.h"
#include "nn/batchnorm.h"
#include "nn/dropout.h"
#include "nn/elu.h"
#include "nn/layer.h"
#include "nn/model.h"
#include "nn/model_build.h"

static torch_fixture g_fixture;
static fh_rng g_rng;

static int setup_all(void **state) {
  (void)state;
  fh_rng_init(&g_rng, 20240607, FH_RNG_TEST, 0, 0);
  return torch_fixture_load(&g_fixture, FH_FIXTURES_DIR "/nn_norm_torch.txt");
}

static int teardown_all(void **state) {
  (void)state;
  torch_fixture_free(&g_fixture);
  return 0;
}

/* ---- a layer on its own ------------------------------------------------------ */

static float *fixture_floats(const char *fmt, const char *prefix, size_t n) {
  const torch_tensor *t = fixture_get(&g_fixture, fmt, prefix);
  assert_int_equal(t->n, n);
  float *v = malloc(n * sizeof(float));
  to_float(v, t);
  return v;
}

/* ---- PyTorch: BatchNorm ------------------------------------------------------- */

static void check_batchnorm_against_torch(const char *prefix) {
  const torch_tensor *d = fixture_get(&g_fixture, "%s/dims", prefix);
  const int B = (int)d->v[0], C = (int)d->v[1], H = (int)d->v[2], W = (int)d->v[3];
  const int is2d = strcmp(prefix, "bn2d") == 0;
  rig r = rig_make(is2d ? fh_layer_batchnorm2d("bn", C, H, W) : fh_layer_batchnorm1d("bn", C), B, &g_rng, 1);
  const size_t n = (size_t)B * r.L.in_size;
  char what[96];

  /* PyTorch's initial state, then the fixture's weight and bias. */
  assert_int_equal(r.np, 2 * (size_t)C);
  assert_int_equal(r.nb, 2 * (size_t)C);
  assert_string_equal(r.L.param[0].name, "bn.weight");
  assert_string_equal(r.L.param[1].name, "bn.bias");
  assert_string_equal(r.L.buffer[0].name, "bn.running_mean");
  assert_string_equal(r.L.buffer[1].name, "bn.running_var");
  for (int c = 0; c < C; c++) {
    assert_true(r.params[c] == 1.0f && r.params[C + c] == 0.0f);
    assert_true(r.buffers[c] == 0.0f && r.buffers[C + c] == 1.0f);
  }
  to_float(r.params, fixture_get(&g_fixture, "%s/weight", prefix));
  to_float(r.params + C, fixture_get(&g_fixture, "%s/bias", prefix));

  /* Step 1, training: batch statistics, backward through them. */
  float *v = fixture_floats("%s/x1", prefix, n);
  memcpy(r.x, v, n * sizeof(float));
  free(v);
  rig_forward(&r);
  snprintf(what, sizeof what, "%s y1", prefix);
  assert_close(what, r.y, fixture_get(&g_fixture, "%s/y1", prefix), 1e-5);
  float *dy = fixture_floats("%s/dy1", prefix, n);
  rig_backward(&r, dy, r.dx);
  snprintf(what, sizeof what, "%s dx1", prefix);
  assert_close(what, r.dx, fixture_get(&g_fixture, "%s/dx1", prefix), 1e-5);
  snprintf(what, sizeof what, "%s grad_weight", prefix);
  assert_close(what, r.grads, fixture_get(&g_fixture, "%s/grad_weight", prefix), 1e-5);
  snprintf(what, sizeof what, "%s grad_bias", prefix);
  assert_close(what, r.grads + C, fixture_get(&g_fixture, "%s/grad_bias", prefix), 1e-5);
  free(dy);

  /* Step 2, training: the running statistics after two momentum updates. */
  v = fixture_floats("%s/x2", prefix, n);
  memcpy(r.x, v, n * sizeof(float));
  free(v);
  rig_forward(&r);
  snprintf(what, sizeof what, "%s y2", prefix);
  assert_close(what, r.y, fixture_get(&g_fixture, "%s/y2", prefix), 1e-5);
  snprintf(what, sizeof what, "%s running_mean", prefix);
  assert_close(what, r.buffers, fixture_get(&g_fixture, "%s/running_mean", prefix), 1e-5);
  snprintf(what, sizeof what, "%s running_var", prefix);
  assert_close(what, r.buffers + C, fixture_get(&g_fixture, "%s/running_var", prefix), 1e-5);

  /* Evaluation: the running statistics, left untouched. */
  float *running = malloc(2 * (size_t)C * sizeof(float));
  memcpy(running, r.buffers, 2 * (size_t)C * sizeof(float));
  r.ctx.train = 0;
  v = fixture_floats("%s/x3", prefix, n);
  memcpy(r.x, v, n * sizeof(float));
  free(v);
  rig_forward(&r);
  snprintf(what, sizeof what, "%s y3 (eval)", prefix);
  assert_close(what, r.y, fixture_get(&g_fixture, "%s/y3", prefix), 1e-5);
  dy = fixture_floats("%s/dy3", prefix, n);
  rig_backward(&r, dy, r.dx);
  snprintf(what, sizeof what, "%s dx3 (eval)", prefix);
  assert_close(what, r.dx, fixture_get(&g_fixture, "%s/dx3", prefix), 1e-5);
  assert_memory_equal(running, r.buffers, 2 * (size_t)C * sizeof(float));
  free(dy);
  free(running);
  rig_free(&r);
}

static void test_batchnorm_matches_torch(void **state) {
  (void)state;
  check_batchnorm_against_torch("bn2d");
  check_batchnorm_against_torch("bn1d");
}

/* A batch of one value per channel (PyTorch refuses it in training): the
 * output is the bias and the running statistics stay as they were. */
static void test_batchnorm_single_value(void **state) {
  (void)state;
  rig r = rig_make(fh_layer_batchnorm1d("bn", 3), 1, &g_rng, 1);
  const float x[3] = {2.0f, -1.0f, 7.0f}, bias[3] = {0.5f, -0.25f, 3.0f};
  memcpy(r.x, x, sizeof x);
  memcpy(r.params + 3, bias, sizeof bias);
  rig_forward(&r);
  for (int c = 0; c < 3; c++) {
    assert_true(r.y[c] == bias[c]);
    assert_true(r.buffers[c] == 0.0f && r.buffers[3 + c] == 1.0f);
  }
  rig_free(&r);
}

/* ---- PyTorch: ELU --------------------------------------------------------------- */

static void test_elu_matches_torch(void **state) {
  (void)state;
  const char *cases[] = {"elu_a", "elu_b"};
  for (int i = 0; i < 2; i++) {
    const float alpha = (float)fixture_get(&g_fixture, "%s/alpha", cases[i])->v[0];
    const torch_tensor *xt = fixture_get(&g_fixture, "%s/x", cases[i]);
    const int B = xt->shape[0];
    rig r = rig_make(fh_layer_elu("elu", alpha, xt->shape[1], xt->shape[2], xt->shape[3]), B, &g_rng, 1);
    const size_t n = (size_t)B * r.L.in_size;
    assert_int_equal(xt->n, n);
    to_float(r.x, xt);
    float *dy = fixture_floats("%s/dy", cases[i], n);
    char what[64];
    rig_forward(&r);
    snprintf(what, sizeof what, "%s y", cases[i]);
    assert_close(what, r.y, fixture_get(&g_fixture, "%s/y", cases[i]), 1e-5);
    rig_backward(&r, dy, r.dx);
    snprintf(what, sizeof what, "%s dx", cases[i]);
    assert_close(what, r.dx, fixture_get(&g_fixture, "%s/dx", cases[i]), 1e-5);
    free(dy);
    rig_free(&r);
  }
  /* NaN propagates; negative infinity saturates at -alpha. */
  const float x[3] = {NAN, -INFINITY, 0.0f};
  float y[3];
  fh_elu_forward(y, x, 3, 0.5f);
  assert_true(isnan(y[0]) && y[1] == -0.5f && y[2] == 0.0f);
}

/* elu.c's own exp against libm's expm1 and exp in double on a sweep of
 * [-100, 1] and near 0: forward within 2 ulp of alpha expm1(x) (relative),
 * backward within 2 ulp of dy alpha exp(x) where exp(x) is a normal float. */
static void test_elu_exp_accuracy(void **state) {
  (void)state;
  enum { N = 200003 };
  float *x = malloc(N * sizeof(float)), *y = malloc(N * sizeof(float));
  float *dy = malloc(N * sizeof(float)), *dx = malloc(N * sizeof(float));
  for (int i = 0; i < N; i++) x[i] = -100.0f + 101.0f * (float)i / (N - 1), dy[i] = 1.0f;
  x[0] = -1e-30f, x[1] = -1e-7f, x[2] = -0.0f, x[3] = -0.3465736f, x[4] = -87.5f;
  fh_elu_forward(y, x, N, 1.0f);
  fh_elu_backward(dx, dy, x, N, 1.0f);
  double worst_f = 0.0, worst_b = 0.0;
  for (int i = 0; i < N; i++) {
    const double want = x[i] > 0 ? x[i] : expm1((double)x[i]);
    if (want != 0.0) worst_f = fmax(worst_f, fabs(y[i] - want) / fabs(want));
    const double e = x[i] > 0 ? 1.0 : exp((double)x[i]);
    if (e > 1.2e-38) worst_b = fmax(worst_b, fabs(dx[i] - e) / e);
  }
  if (worst_f > 2 * 5.97e-8 || worst_b > 2 * 5.97e-8) {
    fprintf(stderr, "ELU exp: worst relative error forward %.3g, backward %.3g\n", worst_f, worst_b);
    fail();
  }
  free(x), free(y), free(dy), free(dx);
}

/* ---- finite differences ---------------------------------------------------------- */

/* Weight and bias away from their defaults, inputs shifted and scaled per
 * channel so that the statistics matter. */
static void bn_gradcheck(const char *what, fh_layer L, int B, int train) {
  rig r = rig_make(L, B, &g_rng, 1);
  const int C = L.in_shape[0];
  const size_t S = L.in_size / (size_t)C;
  for (int c = 0; c < C; c++) {
    r.params[c] = 0.5f + (float)fh_rng_uniform(&g_rng);
    r.params[C + c] = (float)fh_rng_normal(&g_rng);
    r.buffers[c] = (float)fh_rng_normal(&g_rng);
    r.buffers[C + c] = 0.5f + (float)fh_rng_uniform(&g_rng);
  }
  for (int b = 0; b < B; b++)
    for (int c = 0; c < C; c++)
      for (size_t s = 0; s < S; s++)
        r.x[((size_t)b * C + c) * S + s] =
            (float)(0.5 * c - 0.7 + (1.0 + 0.5 * c) * fh_rng_normal(&g_rng));
  r.ctx.train = train;
  gradcheck_layer(what, &r, 1e-2f, 2e-4, &g_rng);
  rig_free(&r);
}

static void test_batchnorm_gradients(void **state) {
  (void)state;
  bn_gradcheck("bn2d train", fh_layer_batchnorm2d("bn", 2, 3, 2), 3, 1);
  bn_gradcheck("bn2d train, batch 1", fh_layer_batchnorm2d("bn", 3, 2, 2), 1, 1);
  bn_gradcheck("bn1d train", fh_layer_batchnorm1d("bn", 4), 5, 1);
  /* (Batch 2 of BatchNorm1d is degenerate: xhat = +-1 whatever x, so dx ~ 0.) */
  bn_gradcheck("bn1d train, batch 3", fh_layer_batchnorm1d("bn", 3), 3, 1);
  bn_gradcheck("bn2d eval", fh_layer_batchnorm2d("bn", 2, 3, 2), 3, 0);
  bn_gradcheck("bn1d eval", fh_layer_batchnorm1d("bn", 4), 5, 0);
}

static void test_elu_gradients(void **state) {
  (void)state;
  const float alphas[2] = {1.0f, 0.7f};
  for (int i = 0; i < 2; i++) {
    rig r = rig_make(fh_layer_elu("elu", alphas[i], 3, 4, 2), 3, &g_rng, 1);
    const size_t n = (size_t)r.B * r.L.in_size;
    /* Away from the kink at 0 (a jump in the slope unless alpha = 1). */
    for (size_t k = 0; k < n; k++) {
      float v = 2.0f * (float)fh_rng_normal(&g_rng);
      r.x[k] = fabsf(v) < 0.05f ? (v < 0.0f ? -0.05f : 0.05f) : v;
    }
    char what[32];
    snprintf(what, sizeof what, "elu alpha %.1f", (double)alphas[i]);
    gradcheck_layer(what, &r, 1e-2f, 1e-4, &g_rng);
    rig_free(&r);
  }
}

/* ---- Dropout ----------------------------------------------------------------------- */

/* Inputs bounded away from 0, so a zero output is a dropped entry. */
static void nonzero_inputs(float *x, size_t n) {
  for (size_t i = 0; i < n; i++) {
    const double u = fh_rng_uniform(&g_rng);
    x[i] = (float)((u < 0.5 ? -1.0 : 1.0) * (0.5 + u));
  }
}

static void test_dropout_eval_is_identity(void **state) {
  (void)state;
  rig r = rig_make(fh_layer_dropout("drop", 0.5f, 4, 3, 3), 5, &g_rng, 1);
  const size_t n = (size_t)r.B * r.L.in_size;
  nonzero_inputs(r.x, n);
  r.ctx.train = 0;
  r.ctx.rng = NULL; /* evaluation draws nothing */
  rig_forward(&r);
  assert_memory_equal(r.y, r.x, n * sizeof(float));
  float *dy = malloc(n * sizeof(float));
  fh_rng_normal_fill(&g_rng, dy, n, 0.0f, 1.0f);
  rig_backward(&r, dy, r.dx);
  assert_memory_equal(r.dx, dy, n * sizeof(float));
  free(dy);
  rig_free(&r);

  /* p = 0 in training is the identity too, and draws nothing. */
  r = rig_make(fh_layer_dropout("drop", 0.0f, 10, 1, 1), 3, &g_rng, 1);
  nonzero_inputs(r.x, 30);
  r.ctx.rng = NULL;
  rig_forward(&r);
  assert_memory_equal(r.y, r.x, 30 * sizeof(float));
  rig_free(&r);
}

static void test_dropout_train(void **state) {
  (void)state;
  const float ps[3] = {0.1f, 0.3f, 0.7f};
  for (int t = 0; t < 3; t++) {
    const float p = ps[t];
    rig r = rig_make(fh_layer_dropout("drop", p, 8, 5, 5), 40, &g_rng, 1);
    const size_t n = (size_t)r.B * r.L.in_size; /* 8000 entries */
    nonzero_inputs(r.x, n);
    fh_rng stream;
    fh_rng_init(&stream, 99, FH_RNG_DROPOUT, 3, (uint32_t)t);
    r.ctx.rng = &stream;
    rig_forward(&r);

    /* About p of the entries are zeroed: within 5 standard deviations of a
     * binomial count (a false alarm about once in 3.5 million runs). */
    size_t zeros = 0;
    const float keep = 1.0f / (1.0f - p);
    for (size_t i = 0; i < n; i++) {
      if (r.y[i] == 0.0f) {
        zeros++;
      } else if (!(fabsf(r.y[i] - r.x[i] * keep) <= 1e-6f * fabsf(r.y[i]))) {
        fail_msg("p %.1f: kept entry %zu is %.9g, not %.9g / (1 - p)", (double)p, i,
                 (double)r.y[i], (double)r.x[i]);
      }
    }
    const double frac = (double)zeros / (double)n, sd = sqrt(p * (1.0 - p) / (double)n);
    if (!(fabs(frac - p) <= 5.0 * sd))
      fail_msg("p %.1f: %.4f of the entries dropped (bound +-%.4f)", (double)p, frac, 5.0 * sd);

    /* The backward applies the forward's mask. */
    float *dy = malloc(n * sizeof(float)), *y1 = malloc(n * sizeof(float));
    fh_rng_normal_fill(&g_rng, dy, n, 0.0f, 1.0f);
    rig_backward(&r, dy, r.dx);
    for (size_t i = 0; i < n; i++) {
      const float want = r.y[i] == 0.0f ? 0.0f : dy[i] * keep;
      if (!(fabsf(r.dx[i] - want) <= 1e-6f * fabsf(want)))
        fail_msg("p %.1f: dx[%zu] = %.9g, want %.9g", (double)p, i, (double)r.dx[i],
                 (double)want);
    }

    /* The same stream gives the same mask; the next draws from the stream
     * (the next step) and another client's stream give different ones. */
    memcpy(y1, r.y, n * sizeof(float));
    rig_forward(&r);
    assert_memory_not_equal(y1, r.y, n * sizeof(float));
    fh_rng_init(&stream, 99, FH_RNG_DROPOUT, 3, (uint32_t)t);
    rig_forward(&r);
    assert_memory_equal(y1, r.y, n * sizeof(float));
    fh_rng_init(&stream, 99, FH_RNG_DROPOUT, 4, (uint32_t)t);
    rig_forward(&r);
    assert_memory_not_equal(y1, r.y, n * sizeof(float));
    free(dy), free(y1);
    rig_free(&r);
  }

  /* p = 1 zeroes everything, as PyTorch. */
  rig r = rig_make(fh_layer_dropout("drop", 1.0f, 6, 1, 1), 4, &g_rng, 1);
  nonzero_inputs(r.x, 24);
  rig_forward(&r);
  for (int i = 0; i < 24; i++) assert_true(r.y[i] == 0.0f);
  rig_free(&r);
}

/* ---- a model ------------------------------------------------------------------------- */

enum { MD = 6, MH = 8, MK = 3, MB = 10 };

static fh_model *build_model(void) {
  fh_model *m = fh_model_begin("norm-test", MD, 1, 1, MK, MB);
  fh_model_append(m, fh_layer_linear("fc1", MD, MH));
  fh_model_append(m, fh_layer_batchnorm1d("bn1", MH));
  fh_model_append(m, fh_layer_elu("elu1", 1.0f, MH, 1, 1));
  fh_model_append(m, fh_layer_dropout("drop1", 0.5f, MH, 1, 1));
  fh_model_append(m, fh_layer_linear("fc2", MH, MK));
  assert_int_equal(fh_model_finish(m), 0);
  return m;
}

typedef struct {
  fh_model *m;
  fh_rng *rng;
  const float *x;
  const int32_t *y;
} model_objective;

/* The training loss with the same dropout mask every time. */
static double model_loss(void *ctx) {
  model_objective *o = ctx;
  fh_rng_init(o->rng, 5, FH_RNG_DROPOUT, 0, 0);
  return fh_model_loss_grad(o->m, o->x, o->y, MB);
}

static void test_model_with_norm_layers(void **state) {
  (void)state;
  fh_model *m = build_model();
  const char *names[] = {"fc1.weight", "fc1.bias", "bn1.weight", "bn1.bias", "fc2.weight",
                         "fc2.bias"};
  assert_int_equal(fh_model_nviews(m), 6);
  for (int i = 0; i < 6; i++) assert_string_equal(fh_model_view(m, i)->name, names[i]);
  assert_int_equal(fh_model_nbuffer_views(m), 2);
  assert_string_equal(fh_model_buffer_view(m, 0)->name, "bn1.running_mean");
  assert_string_equal(fh_model_buffer_view(m, 1)->name, "bn1.running_var");
  assert_int_equal(fh_model_nbuffers(m), 2 * MH);
  assert_int_equal(fh_model_layer(m, 1)->kind, FH_LAYER_BATCHNORM1D);
  assert_int_equal(fh_model_layer(m, 2)->kind, FH_LAYER_ELU);
  assert_int_equal(fh_model_layer(m, 3)->kind, FH_LAYER_DROPOUT);

  fh_rng init;
  fh_rng_init(&init, 11, FH_RNG_INIT, FH_RNG_NONE, 0);
  fh_model_init(m, &init);
  const float *bnw = fh_model_params(m) + fh_model_find_view(m, "bn1.weight")->offset;
  const float *bnb = fh_model_params(m) + fh_model_find_view(m, "bn1.bias")->offset;
  const float *buf = fh_model_buffers(m);
  for (int k = 0; k < MH; k++)
    assert_true(bnw[k] == 1.0f && bnb[k] == 0.0f && buf[k] == 0.0f && buf[MH + k] == 1.0f);

  char line[512];
  fh_model_summary(m, line, sizeof line);
  assert_non_null(
      strstr(line, "BatchNorm1d(8, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)"));
  assert_non_null(strstr(line, "ELU(alpha=1.0)"));
  assert_non_null(strstr(line, "Dropout(p=0.5, inplace=False)"));

  float x[MB * MD];
  int32_t y[MB];
  fh_rng_normal_fill(&g_rng, x, MB * MD, 0.0f, 1.0f);
  for (int i = 0; i < MB; i++) y[i] = (int32_t)fh_rng_below(&g_rng, MK);

  /* Training steps move the running statistics; evaluation reads them only
   * and is deterministic without an rng. */
  fh_rng drop;
  fh_model_set_rng(m, &drop);
  model_objective o = {m, &drop, x, y};
  model_loss(&o);
  float before[2 * MH];
  memcpy(before, buf, sizeof before);
  int moved = 0;
  for (int k = 0; k < MH; k++) moved += before[k] != 0.0f && before[MH + k] != 1.0f;
  assert_int_equal(moved, MH);
  fh_model_set_rng(m, NULL);
  double l1 = 0.0, l2 = 0.0;
  const int c1 = fh_model_evaluate(m, x, y, MB, &l1), c2 = fh_model_evaluate(m, x, y, MB, &l2);
  assert_int_equal(c1, c2);
  assert_true(l1 == l2);
  assert_memory_equal(before, buf, sizeof before);

  /* The whole chain's gradient, dropout mask fixed by the stream, against
   * differences of the mean loss (a float: atol covers its rounding). */
  fh_model_set_rng(m, &drop);
  const size_t n = fh_model_nparams(m);
  model_loss(&o);
  double *ana = malloc(n * sizeof(double)), *num = malloc(n * sizeof(double));
  for (size_t i = 0; i < n; i++) ana[i] = fh_model_grads(m)[i];
  gradcheck_numeric(fh_model_params(m), n, 1e-2f, model_loss, &o, num);
  assert_gradients("model with bn, elu, dropout", ana, num, n, 2e-4);
  free(ana), free(num);
  fh_model_free(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_batchnorm_matches_torch),
      cmocka_unit_test(test_batchnorm_single_value),
      cmocka_unit_test(test_elu_matches_torch),
      cmocka_unit_test(test_elu_exp_accuracy),
      cmocka_unit_test(test_batchnorm_gradients),
      cmocka_unit_test(test_elu_gradients),
      cmocka_unit_test(test_dropout_eval_is_identity),
      cmocka_unit_test(test_dropout_train),
      cmocka_unit_test(test_model_with_norm_layers),
  };
  return cmocka_run_group_tests(tests, setup_all, teardown_all);
}
