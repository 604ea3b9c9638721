/* The model as a whole: built from a deck, its flat layout and named views,
 * initialisation, FLOP counts, and the contracts of loss_grad and evaluate. */
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
#include "nn/layer.h"
#include "nn/model.h"

static int model_from_sets(fh_model **m, const char *const *sets, int nsets, int d, int C,
                           int max_batch) {
  const fh_key_spec *const tables[] = {fh_model_keys};
  fh_config *cfg;
  fh_error_clear();
  int rc = fh_config_load(&cfg, NULL, sets, nsets, tables, 1);
  if (rc) return rc;
  rc = fh_model_create(m, cfg, d, 1, 1, C, max_batch);
  fh_config_free(cfg);
  return rc;
}

static void assert_view(const fh_model *m, int i, const char *name, size_t offset, int ndim,
                        int s0, int s1) {
  const fh_param_view *v = fh_model_view(m, i);
  assert_non_null(v);
  assert_string_equal(v->name, name);
  assert_int_equal(v->offset, offset);
  assert_int_equal(v->ndim, ndim);
  assert_int_equal(v->shape[0], s0);
  if (ndim > 1) assert_int_equal(v->shape[1], s1);
  assert_int_equal(v->numel, (size_t)s0 * (ndim > 1 ? s1 : 1));
  assert_ptr_equal(fh_model_find_view(m, name), v);
}

static void test_mlp_from_deck(void **state) {
  (void)state;
  const char *sets[] = {"model.hidden=7,5"};
  fh_model *m;
  assert_int_equal(model_from_sets(&m, sets, 1, 6, 4, 3), 0);
  assert_string_equal(fh_model_arch(m), "mlp");
  assert_int_equal(fh_model_num_classes(m), 4);
  assert_int_equal(fh_model_input_size(m), 6);
  assert_int_equal(fh_model_max_batch(m), 3);
  assert_int_equal(fh_model_nviews(m), 6);
  assert_view(m, 0, "fc1.weight", 0, 2, 7, 6);
  assert_view(m, 1, "fc1.bias", 42, 1, 7, 0);
  assert_view(m, 2, "fc2.weight", 49, 2, 5, 7);
  assert_view(m, 3, "fc2.bias", 84, 1, 5, 0);
  assert_view(m, 4, "fc3.weight", 89, 2, 4, 5);
  assert_view(m, 5, "fc3.bias", 109, 1, 4, 0);
  assert_int_equal(fh_model_nparams(m), 113);
  assert_null(fh_model_view(m, 6));
  assert_null(fh_model_find_view(m, "fc4.weight"));
  assert_int_equal(fh_model_nbuffers(m), 0);
  assert_int_equal(fh_model_nbuffer_views(m), 0);
  /* Linear-ReLU-Linear-ReLU-Linear */
  assert_int_equal(fh_model_nlayers(m), 5);
  assert_int_equal(fh_model_layer(m, 1)->kind, FH_LAYER_RELU);
  assert_int_equal(fh_model_layer(m, 4)->kind, FH_LAYER_LINEAR);
  char line[256];
  fh_model_summary(m, line, sizeof line);
  assert_string_equal(line,
                      "mlp: [6, 1, 1] Linear(6, 7) ReLU Linear(7, 5) ReLU Linear(5, 4) -> [4], "
                      "113 parameters");
  char tiny[8];
  assert_int_equal(fh_model_summary(m, tiny, sizeof tiny), (int)strlen(line));
  assert_string_equal(tiny, "mlp: [6");
  fh_model_free(m);
}

static void test_deck_defaults_and_softmax_regression(void **state) {
  (void)state;
  fh_model *m;
  assert_int_equal(model_from_sets(&m, NULL, 0, 60, 10, 64), 0);
  assert_int_equal(fh_model_nparams(m), 60 * 200 + 200 + 200 * 200 + 200 + 200 * 10 + 10);
  fh_model_free(m);

  const char *empty[] = {"model.hidden="};
  assert_int_equal(model_from_sets(&m, empty, 1, 60, 10, 8), 0);
  assert_int_equal(fh_model_nlayers(m), 1);
  assert_int_equal(fh_model_nviews(m), 2);
  assert_view(m, 0, "fc1.weight", 0, 2, 10, 60);
  assert_view(m, 1, "fc1.bias", 600, 1, 10, 0);
  fh_model_free(m);
}

static void test_deck_errors(void **state) {
  (void)state;
  fh_model *m = NULL;
  const char *zero[] = {"model.hidden=8,0"};
  assert_int_equal(model_from_sets(&m, zero, 1, 6, 4, 3), FH_ERR_CONFIG);
  assert_non_null(strstr(fh_error_msg(), "model.hidden"));
  const char *arch[] = {"model.arch=resnet"};
  assert_int_equal(model_from_sets(&m, arch, 1, 6, 4, 3), FH_ERR_CONFIG);
  assert_non_null(strstr(fh_error_msg(), "model.arch"));
  fh_error_clear();
  assert_int_equal(fh_model_create_mlp(&m, 6, NULL, 0, 4, 0), FH_ERR_CONFIG);
  assert_null(m);
  fh_error_clear();
  /* 2.5e9 parameters: more than an MPI count can carry; refused before any
   * allocation of that size. */
  assert_int_equal(fh_model_create_mlp(&m, 10, (const int[]){50000, 50000}, 2, 4, 1),
                   FH_ERR_CONFIG);
  assert_null(m);
  assert_non_null(strstr(fh_error_msg(), "parameters"));
  fh_error_clear();
}

static void test_flop_counts(void **state) {
  (void)state;
  const int hidden[2] = {200, 200};
  fh_model *m;
  assert_int_equal(fh_model_create_mlp(&m, 60, hidden, 2, 10, 64), 0);
  const double macs = 60.0 * 200 + 200.0 * 200 + 200.0 * 10;
  assert_true(fh_model_flops_forward(m, 64) == 2.0 * 64 * macs);
  /* The first layer forms no input gradient. */
  assert_true(fh_model_flops_backward(m, 64) == 4.0 * 64 * macs - 2.0 * 64 * 60 * 200);
  assert_true(fh_model_flops_forward(m, 1) * 64 == fh_model_flops_forward(m, 64));
  fh_model_free(m);
}

static void test_init_reproducible_and_bounded(void **state) {
  (void)state;
  const int hidden[2] = {256, 256};
  fh_model *a, *b;
  assert_int_equal(fh_model_create_mlp(&a, 784, hidden, 2, 10, 1), 0);
  assert_int_equal(fh_model_create_mlp(&b, 784, hidden, 2, 10, 1), 0);
  fh_rng ra, rb;
  fh_rng_init(&ra, 42, FH_RNG_INIT, FH_RNG_NONE, FH_RNG_NONE);
  fh_rng_init(&rb, 42, FH_RNG_INIT, FH_RNG_NONE, FH_RNG_NONE);
  fh_model_init(a, &ra);
  fh_model_init(b, &rb);
  const size_t n = fh_model_nparams(a);
  assert_memory_equal(fh_model_params(a), fh_model_params(b), n * sizeof(float));

  /* Another seed: another model. */
  fh_rng_init(&rb, 43, FH_RNG_INIT, FH_RNG_NONE, FH_RNG_NONE);
  fh_model_init(b, &rb);
  size_t same = 0;
  for (size_t i = 0; i < n; i++) same += fh_model_params(a)[i] == fh_model_params(b)[i];
  assert_true(same < n / 1000);

  /* U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases alike: inside
   * the bound, filling it, mean 0 and variance bound^2 / 3. */
  for (int v = 0; v < fh_model_nviews(a); v++) {
    const fh_param_view *pv = fh_model_view(a, v);
    const int fan_in = strncmp(pv->name, "fc1.", 4) == 0 ? 784 : 256;
    const double bound = 1.0 / sqrt((double)fan_in);
    const float *p = fh_model_params(a) + pv->offset;
    double mean = 0.0, sq = 0.0, lo = 0.0, hi = 0.0;
    for (size_t i = 0; i < pv->numel; i++) {
      assert_true(fabs(p[i]) <= bound);
      mean += p[i], sq += (double)p[i] * p[i];
      lo = fmin(lo, p[i]), hi = fmax(hi, p[i]);
    }
    mean /= pv->numel;
    const double var = sq / pv->numel - mean * mean, want = bound * bound / 3.0;
    /* 5 standard errors of each statistic for numel uniform draws. */
    const double se_mean = sqrt(want / pv->numel), se_var = want * sqrt(0.8 / pv->numel);
    if (fabs(mean) > 5 * se_mean || fabs(var - want) > 5 * se_var)
      fail_msg("%s: mean %.4g variance %.4g, want 0 and %.4g", pv->name, mean, var, want);
    if (pv->numel >= 1000) assert_true(hi > 0.99 * bound && lo < -0.99 * bound);
  }

  /* The draws follow view order, then element order: fc1.weight takes the
   * first 784*256 uniforms of the stream. */
  fh_rng_init(&ra, 42, FH_RNG_INIT, FH_RNG_NONE, FH_RNG_NONE);
  for (int i = 0; i < 5; i++) {
    const float want = (float)((2.0 * fh_rng_uniform(&ra) - 1.0) / sqrt(784.0));
    assert_true(fh_model_params(a)[i] == want);
  }
  fh_model_free(a);
  fh_model_free(b);
}

/* loss_grad overwrites the gradient (no accumulation across calls) and leaves
 * the parameters alone; forward in either mode gives the same logits. */
static void test_loss_grad_contract(void **state) {
  (void)state;
  enum { D = 9, C = 3, B = 5 };
  const int hidden[1] = {11};
  fh_model *m;
  assert_int_equal(fh_model_create_mlp(&m, D, hidden, 1, C, B), 0);
  fh_rng r;
  fh_rng_init(&r, 5, FH_RNG_INIT, FH_RNG_NONE, FH_RNG_NONE);
  fh_model_init(m, &r);
  fh_rng_init(&r, 5, FH_RNG_TEST, 0, 0);
  float x[B * D];
  fh_rng_normal_fill(&r, x, B * D, 0.0f, 1.0f);
  const int32_t y[B] = {0, 1, 2, 1, 0};
  const size_t n = fh_model_nparams(m);
  float *params0 = malloc(n * sizeof(float)), *g1 = malloc(n * sizeof(float));
  memcpy(params0, fh_model_params(m), n * sizeof(float));
  const float l1 = fh_model_loss_grad(m, x, y, B);
  memcpy(g1, fh_model_grads(m), n * sizeof(float));
  const float l2 = fh_model_loss_grad(m, x, y, B);
  assert_true(l1 == l2);
  assert_memory_equal(g1, fh_model_grads(m), n * sizeof(float));
  assert_memory_equal(params0, fh_model_params(m), n * sizeof(float));
  float train_logits[B * C];
  memcpy(train_logits, fh_model_forward(m, x, B, 1), sizeof train_logits);
  assert_memory_equal(train_logits, fh_model_forward(m, x, B, 0), sizeof train_logits);
  /* A smaller batch gives the same rows (up to rounding: the BLAS blocks
   * differently for another row count). */
  const float *two = fh_model_forward(m, x, 2, 0);
  for (int i = 0; i < 2 * C; i++) assert_float_equal(two[i], train_logits[i], 1e-5);
  free(params0), free(g1);
  fh_model_free(m);
}

/* Evaluate: any number of samples (in chunks of max_batch), summed loss, and
 * argmax ties resolved to the lowest class index. */
static void test_evaluate(void **state) {
  (void)state;
  enum { D = 4, C = 5, N = 23, MB = 4 };
  fh_model *m;
  assert_int_equal(fh_model_create_mlp(&m, D, (const int[]){6}, 1, C, MB), 0);
  fh_rng r;
  fh_rng_init(&r, 9, FH_RNG_TEST, 0, 0);
  float x[N * D];
  int32_t y[N];
  fh_rng_normal_fill(&r, x, N * D, 0.0f, 1.0f);
  for (int i = 0; i < N; i++) y[i] = (int32_t)fh_rng_below(&r, C);

  /* All parameters zero: every logit is 0, every prediction class 0, and the
   * loss of each sample log(C). */
  memset(fh_model_params(m), 0, fh_model_nparams(m) * sizeof(float));
  double loss = 0.0;
  int zeros = 0;
  for (int i = 0; i < N; i++) zeros += y[i] == 0;
  assert_int_equal(fh_model_evaluate(m, x, y, N, &loss), zeros);
  assert_true(fabs(loss - N * log((double)C)) < 1e-5);

  /* Trained-looking parameters: chunks agree with a sample-by-sample count. */
  fh_rng_init(&r, 10, FH_RNG_INIT, FH_RNG_NONE, FH_RNG_NONE);
  fh_model_init(m, &r);
  int correct = 0;
  double sum = 0.0;
  for (int i = 0; i < N; i++) {
    const float *z = fh_model_forward(m, x + i * D, 1, 0);
    int best = 0;
    for (int j = 1; j < C; j++)
      if (z[j] > z[best]) best = j;
    correct += best == y[i];
    double s = 0.0;
    for (int j = 0; j < C; j++) s += exp((double)z[j]);
    sum += log(s) - z[y[i]];
  }
  loss = 1.0;
  assert_int_equal(fh_model_evaluate(m, x, y, N, &loss), correct);
  assert_true(fabs(loss - 1.0 - sum) < 1e-5 * sum);
  assert_int_equal(fh_model_evaluate(m, x, y, N, NULL), correct);
  assert_int_equal(fh_model_evaluate(m, x, y, 0, NULL), 0);
  fh_model_free(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_mlp_from_deck),
      cmocka_unit_test(test_deck_defaults_and_softmax_regression),
      cmocka_unit_test(test_deck_errors),
      cmocka_unit_test(test_flop_counts),
      cmocka_unit_test(test_init_reproducible_and_bounded),
      cmocka_unit_test(test_loss_grad_contract),
      cmocka_unit_test(test_evaluate),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
