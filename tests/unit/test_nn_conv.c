/* Conv2d, MaxPool2d, AvgPool2d and AdaptiveAvgPool2d(1): gradients against
 * central finite differences, and forward/backward against PyTorch on fixed
 * inputs (tests/fixtures/nn_conv_torch.txt, made by make_conv_fixtures.py),
 * layer by layer and as a model chained through the builder.
 *
 * Gradient checks differentiate J = sum(r * y) for a fixed random r, summed in
 * double, through the layer's own ops (forward, then backward with dy = r).
 * Every layer here is piecewise linear in what is perturbed, so central
 * differences are exact up to float rounding of y; the max-pool inputs are
 * spaced 0.1 apart so a step of 0.01 never changes a window's winner.
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
#include "nn/conv2d.h"
#include "nn/layer.h"
#include "nn/model.h"
#include "nn/model_build.h"
#include "nn/pool.h"

/* ---- the fixture ------------------------------------------------------------ */

static torch_fixture g_fixture;
static fh_rng g_rng;

static int setup_all(void **state) {
  (void)state;
  fh_rng_init(&g_rng, 20240602, FH_RNG_TEST, 0, 0);
  return torch_fixture_load(&g_fixture, FH_FIXTURES_DIR "/nn_conv_torch.txt");
}

static int teardown_all(void **state) {
  (void)state;
  torch_fixture_free(&g_fixture);
  return 0;
}

/* ---- a layer on its own ------------------------------------------------------ */

/* ---- PyTorch, layer by layer ------------------------------------------------- */

static void check_layer_against_torch(const char *prefix, fh_layer L, int B) {
  rig r = rig_make(L, B, &g_rng, 0);
  to_float(r.x, fixture_get(&g_fixture, "%s/x", prefix));
  for (int k = 0; k < L.nparams; k++) {
    const char *suffix = strchr(L.param[k].name, '.') + 1;
    const torch_tensor *t = fixture_get(&g_fixture, "%s/%s", prefix, suffix);
    assert_int_equal(t->n, L.param[k].numel);
    for (int d = 0; d < t->ndim; d++) assert_int_equal(t->shape[d], L.param[k].shape[d]);
    to_float(r.params + r.L.param[k].offset, t);
  }
  const torch_tensor *dyt = fixture_get(&g_fixture, "%s/dy", prefix);
  assert_int_equal(dyt->n, (size_t)B * L.out_size);
  float *dy = malloc(dyt->n * sizeof(float));
  to_float(dy, dyt);
  char what[96];
  rig_forward(&r);
  snprintf(what, sizeof what, "%s y", prefix);
  assert_close(what, r.y, fixture_get(&g_fixture, "%s/y", prefix), 1e-5);
  if (L.ops->infer) { /* the evaluation-only forward: the same values, bit for bit */
    float *yi = malloc((size_t)B * L.out_size * sizeof(float));
    r.L.ops->infer(&r.L, &r.ctx, r.x, yi, B);
    snprintf(what, sizeof what, "%s infer y", prefix);
    assert_close(what, yi, fixture_get(&g_fixture, "%s/y", prefix), 1e-5);
    assert_memory_equal(yi, r.y, (size_t)B * L.out_size * sizeof(float));
    free(yi);
  }
  rig_backward(&r, dy, r.dx);
  snprintf(what, sizeof what, "%s dx", prefix);
  assert_close(what, r.dx, fixture_get(&g_fixture, "%s/dx", prefix), 1e-5);
  for (int k = 0; k < L.nparams; k++) {
    const char *suffix = strchr(L.param[k].name, '.') + 1;
    snprintf(what, sizeof what, "%s grad_%s", prefix, suffix);
    assert_close(what, r.grads + r.L.param[k].offset,
                 fixture_get(&g_fixture, "%s/grad_%s", prefix, suffix), 1e-5);
  }
  free(dy);
  rig_free(&r);
}

static void test_conv_matches_torch(void **state) {
  (void)state;
  const char *cases[] = {"conv_a", "conv_b"};
  for (int i = 0; i < 2; i++) {
    const torch_tensor *g = fixture_get(&g_fixture, "%s/geom", cases[i]);
    int v[10];
    for (int k = 0; k < 10; k++) v[k] = (int)g->v[k];
    check_layer_against_torch(
        cases[i], fh_layer_conv2d("conv", v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8]),
        v[9]);
  }
}

static void test_pools_match_torch(void **state) {
  (void)state;
  int v[7];
  const torch_tensor *g = fixture_get(&g_fixture, "maxpool/geom");
  for (int k = 0; k < 7; k++) v[k] = (int)g->v[k];
  check_layer_against_torch("maxpool", fh_layer_maxpool2d("pool", v[0], v[1], v[2], v[3], v[4], v[5]),
                            v[6]);
  g = fixture_get(&g_fixture, "avgpool/geom");
  for (int k = 0; k < 7; k++) v[k] = (int)g->v[k];
  check_layer_against_torch("avgpool", fh_layer_avgpool2d("pool", v[0], v[1], v[2], v[3], v[4], v[5]),
                            v[6]);
  g = fixture_get(&g_fixture, "gap/geom");
  for (int k = 0; k < 7; k++) v[k] = (int)g->v[k];
  check_layer_against_torch("gap", fh_layer_adaptive_avgpool1("gap", v[0], v[1], v[2]), v[6]);
}

/* ---- PyTorch, a chained model ------------------------------------------------- */

static fh_model *build_chain(int C, int H, int W, int K, int B) {
  fh_model *m = fh_model_begin("cnn-test", C, H, W, K, B);
  int s[3];
  fh_model_append(m, fh_layer_conv2d("conv1", C, H, W, 6, 3, 3, 1, 1, 1));
  fh_model_out_shape(m, s);
  fh_model_append(m, fh_layer_relu("relu1", s[0], s[1], s[2]));
  fh_model_append(m, fh_layer_maxpool2d("pool1", s[0], s[1], s[2], 3, 2, 1));
  fh_model_out_shape(m, s);
  fh_model_append(m, fh_layer_conv2d("conv2", s[0], s[1], s[2], K, 3, 3, 1, 0, 0));
  fh_model_out_shape(m, s);
  fh_model_append(m, fh_layer_avgpool2d("pool2", s[0], s[1], s[2], 2, 2, 1));
  fh_model_out_shape(m, s);
  fh_model_append(m, fh_layer_adaptive_avgpool1("gap", s[0], s[1], s[2]));
  assert_int_equal(fh_model_finish(m), 0);
  return m;
}

static void test_chain_matches_torch(void **state) {
  (void)state;
  const torch_tensor *d = fixture_get(&g_fixture, "chain/dims");
  const int B = (int)d->v[0], C = (int)d->v[1], H = (int)d->v[2], W = (int)d->v[3],
            K = (int)d->v[4];
  fh_model *m = build_chain(C, H, W, K, B);
  /* The flat layout is the state_dict: same names, order and shapes. */
  const char *keys[] = {"conv1.weight", "conv1.bias", "conv2.weight"};
  assert_int_equal(fh_model_nviews(m), 3);
  for (int i = 0; i < 3; i++) {
    const fh_param_view *v = fh_model_view(m, i);
    assert_string_equal(v->name, keys[i]);
    const torch_tensor *t = fixture_get(&g_fixture, "chain/init/%s", keys[i]);
    assert_int_equal(t->ndim, v->ndim);
    for (int k = 0; k < t->ndim; k++) assert_int_equal(t->shape[k], v->shape[k]);
    to_float(fh_model_params(m) + v->offset, t);
  }
  float *x = malloc((size_t)B * C * H * W * sizeof(float));
  to_float(x, fixture_get(&g_fixture, "chain/x"));
  int32_t y[16];
  assert_true(B <= 16);
  for (int i = 0; i < B; i++) y[i] = (int32_t)fixture_get(&g_fixture, "chain/y")->v[i];

  assert_close("chain logits", fh_model_forward(m, x, B, 1),
               fixture_get(&g_fixture, "chain/logits"), 1e-5);
  const float loss = fh_model_loss_grad(m, x, y, B);
  const double want = fixture_get(&g_fixture, "chain/loss")->v[0];
  if (!(fabs(loss - want) <= 1e-5 * fabs(want)))
    fail_msg("chain loss %.9g, PyTorch %.9g", (double)loss, want);
  for (int i = 0; i < 3; i++) {
    const fh_param_view *v = fh_model_view(m, i);
    char what[64];
    snprintf(what, sizeof what, "chain/grad/%s", v->name);
    assert_close(what, fh_model_grads(m) + v->offset, fixture_get(&g_fixture, "%s", what), 1e-5);
  }
  /* A second step from the same state gives the same gradients: the backward
   * reads the columns the forward just stored, never stale ones. */
  const size_t n = fh_model_nparams(m);
  float *g1 = malloc(n * sizeof(float));
  memcpy(g1, fh_model_grads(m), n * sizeof(float));
  fh_model_forward(m, x, 1, 0); /* a smaller batch in between */
  fh_model_loss_grad(m, x, y, B);
  assert_memory_equal(g1, fh_model_grads(m), n * sizeof(float));

  char buf[512];
  fh_model_summary(m, buf, sizeof buf);
  assert_non_null(strstr(buf, "Conv2d(3, 6, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))"));
  assert_non_null(strstr(buf, "Conv2d(6, 8, kernel_size=(3, 3), stride=(1, 1), bias=False)"));
  assert_non_null(strstr(buf, "MaxPool2d(kernel_size=3, stride=2, padding=1, dilation=1"));
  assert_non_null(strstr(buf, "AvgPool2d(kernel_size=2, stride=2, padding=1)"));
  assert_non_null(strstr(buf, "AdaptiveAvgPool2d(output_size=1)"));
  free(g1);
  free(x);
  fh_model_free(m);
}

/* ---- FLOPs and initialisation -------------------------------------------------- */

static void test_flops_and_init(void **state) {
  (void)state;
  /* cnn1's first layer: 3 -> 16, 5x5 on 32x32, no padding: 28x28 outputs,
   * K = 75, one multiply-add per (output channel, K, position). */
  enum { B = 4 };
  fh_model *m = fh_model_begin("flops", 3, 32, 32, 16 * 7 * 7, B);
  fh_model_append(m, fh_layer_conv2d("conv1", 3, 32, 32, 16, 5, 5, 1, 0, 1));
  fh_model_append(m, fh_layer_conv2d("conv2", 16, 28, 28, 16, 3, 3, 2, 1, 1)); /* -> 14x14 */
  fh_model_append(m, fh_layer_maxpool2d("pool", 16, 14, 14, 2, 2, 0));         /* -> 7x7 */
  assert_int_equal(fh_model_finish(m), 0);
  const double c1 = 2.0 * B * 16 * 75 * 28 * 28, c2 = 2.0 * B * 16 * 144 * 14 * 14;
  assert_float_equal(fh_model_flops_forward(m, B), c1 + c2, 0.5);
  /* The first layer's input gradient is never formed. */
  assert_float_equal(fh_model_flops_backward(m, B), c1 + 2.0 * c2, 0.5);

  /* U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias, fan_in = C kh kw:
   * every draw inside the bound and the extremes close to it. */
  fh_rng r;
  fh_rng_init(&r, 7, FH_RNG_INIT, FH_RNG_NONE, 0);
  fh_model_init(m, &r);
  const double bounds[4] = {1.0 / sqrt(75.0), 1.0 / sqrt(75.0), 1.0 / sqrt(144.0),
                            1.0 / sqrt(144.0)};
  assert_int_equal(fh_model_nviews(m), 4);
  for (int i = 0; i < 4; i++) {
    const fh_param_view *v = fh_model_view(m, i);
    const float *p = fh_model_params(m) + v->offset;
    double lo = 0.0, hi = 0.0, mean = 0.0;
    for (size_t k = 0; k < v->numel; k++) {
      lo = fmin(lo, p[k]), hi = fmax(hi, p[k]);
      mean += p[k];
    }
    mean /= (double)v->numel;
    assert_true(hi <= bounds[i] && lo >= -bounds[i]);
    if (v->numel > 1000) { /* the weights: extremes near the bound, mean near 0 */
      assert_true(hi > 0.98 * bounds[i] && lo < -0.98 * bounds[i]);
      assert_true(fabs(mean) < 0.05 * bounds[i]);
    }
  }
  fh_model_free(m);
}

/* ---- finite differences ---------------------------------------------------------- */

static void conv_gradcheck(const char *what, int C, int H, int W, int O, int kh, int kw,
                           int stride, int pad, int bias) {
  rig r = rig_make(fh_layer_conv2d("conv", C, H, W, O, kh, kw, stride, pad, bias), 2, &g_rng, 0);
  fh_rng_normal_fill(&g_rng, r.params, r.np, 0.0f, 0.5f);
  fh_rng_normal_fill(&g_rng, r.x, (size_t)r.B * r.L.in_size, 0.0f, 1.0f);
  gradcheck_layer(what, &r, 5e-2f, 1e-4, &g_rng);
  rig_free(&r);
}

static void test_conv_gradients(void **state) {
  (void)state;
  conv_gradcheck("conv 3x3 s2 p1 bias", 2, 7, 6, 3, 3, 3, 2, 1, 1);
  conv_gradcheck("conv 3x3 s2 p1 no bias", 2, 7, 6, 3, 3, 3, 2, 1, 0);
  conv_gradcheck("conv 5x5 s2 p1 bias", 2, 8, 9, 3, 5, 5, 2, 1, 1);
  conv_gradcheck("conv 5x5 s2 p1 no bias", 2, 8, 9, 3, 5, 5, 2, 1, 0);
  conv_gradcheck("conv 3x5 s1 p2 bias", 3, 5, 7, 2, 3, 5, 1, 2, 1);
  conv_gradcheck("conv 1x1 s1 p0 bias", 4, 3, 3, 3, 1, 1, 1, 0, 1);
}

/* Distinct inputs 0.1 apart, in random order. */
static void spaced_inputs(float *x, size_t n) {
  int *perm = malloc(n * sizeof(int));
  fh_rng_permutation(&g_rng, perm, (int)n);
  for (size_t i = 0; i < n; i++) x[i] = 0.1f * (float)perm[i] - 0.05f * (float)n;
  free(perm);
}

static void test_pool_gradients(void **state) {
  (void)state;
  rig r = rig_make(fh_layer_maxpool2d("pool", 2, 7, 6, 3, 2, 1), 2, &g_rng, 0);
  spaced_inputs(r.x, (size_t)r.B * r.L.in_size);
  gradcheck_layer("maxpool 3 s2 p1", &r, 1e-2f, 1e-4, &g_rng);
  rig_free(&r);
  r = rig_make(fh_layer_maxpool2d("pool", 3, 6, 6, 2, 2, 0), 2, &g_rng, 0);
  spaced_inputs(r.x, (size_t)r.B * r.L.in_size);
  gradcheck_layer("maxpool 2 s2", &r, 1e-2f, 1e-4, &g_rng);
  rig_free(&r);
  r = rig_make(fh_layer_avgpool2d("pool", 2, 7, 6, 3, 2, 1), 2, &g_rng, 0);
  fh_rng_normal_fill(&g_rng, r.x, (size_t)r.B * r.L.in_size, 0.0f, 1.0f);
  gradcheck_layer("avgpool 3 s2 p1", &r, 5e-2f, 1e-4, &g_rng);
  rig_free(&r);
  r = rig_make(fh_layer_adaptive_avgpool1("gap", 3, 4, 5), 2, &g_rng, 0);
  fh_rng_normal_fill(&g_rng, r.x, (size_t)r.B * r.L.in_size, 0.0f, 1.0f);
  gradcheck_layer("adaptive avgpool", &r, 5e-2f, 1e-4, &g_rng);
  rig_free(&r);
}

/* ---- max-pool ties and NaN --------------------------------------------------------- */

static void test_maxpool_ties_and_nan(void **state) {
  (void)state;
  fh_pool2d_geom g;
  assert_int_equal(fh_pool2d_geometry(&g, 1, 4, 4, 2, 2, 0), 0);
  assert_int_equal(g.out_h * g.out_w, 4);
  float x[16], y[4], dx[16];
  int32_t arg[4];
  for (int i = 0; i < 16; i++) x[i] = 1.0f; /* all tied: the first of each window wins */
  x[10] = NAN, x[11] = NAN;                 /* window (1, 1): the last NaN wins */
  fh_maxpool2d_forward(y, arg, x, 1, &g);
  const int32_t want[4] = {0, 2, 8, 11};
  for (int o = 0; o < 4; o++) assert_int_equal(arg[o], want[o]);
  assert_true(y[0] == 1.0f && isnan(y[3]));
  const float dy[4] = {1.0f, 2.0f, 3.0f, 4.0f};
  fh_maxpool2d_backward(dx, dy, arg, 1, &g);
  for (int i = 0; i < 16; i++) {
    const float expect = i == 0 ? 1.0f : i == 2 ? 2.0f : i == 8 ? 3.0f : i == 11 ? 4.0f : 0.0f;
    assert_true(dx[i] == expect);
  }
  /* Overlapping windows (stride 1) add into a shared winner. */
  assert_int_equal(fh_pool2d_geometry(&g, 1, 3, 3, 2, 1, 0), 0);
  const float x2[9] = {0, 0, 0, 0, 5, 0, 0, 0, 0};
  float y2[4], dx2[9];
  int32_t arg2[4];
  fh_maxpool2d_forward(y2, arg2, x2, 1, &g);
  fh_maxpool2d_backward(dx2, dy, arg2, 1, &g);
  assert_true(dx2[4] == 10.0f);
  /* Impossible geometries are refused: padding above half the window. */
  assert_int_equal(fh_pool2d_geometry(&g, 1, 4, 4, 2, 2, 2), -1);
  fh_conv2d_geom cg;
  assert_int_equal(fh_conv2d_geometry(&cg, 1, 3, 3, 1, 5, 5, 1, 0), -1);
  assert_int_equal(fh_conv2d_geometry(&cg, 1, 3, 3, 1, 5, 5, 1, 1), 0);
  assert_int_equal(cg.out_h, 1);
}

/* The evaluation-only max pool (fh_maxpool2d_infer) against the forward,
 * bit for bit, with relu folded in against fh_relu_forward then the
 * forward: ties between +0 and -0 (the first stays), NaN (wins, the last
 * one), -inf, on every code path of the forward (2x2 stride 2, windows
 * clipped by padding or ceil mode, overlapping windows, the separable
 * 3x3 form). */
static void test_maxpool_infer_bitwise(void **state) {
  (void)state;
  const int geo[][6] = {/* c, h, w, kernel, stride, padding (ceil: last column) */
                        {3, 8, 8, 2, 2, 0}, {2, 7, 9, 2, 2, 0}, {2, 9, 7, 3, 2, 1},
                        {1, 6, 6, 3, 1, 1}, {2, 16, 17, 3, 2, 1}, {2, 7, 7, 2, 2, 1}};
  for (int t = 0; t < 6; t++)
    for (int ceil = 0; ceil < 2; ceil++) {
      fh_pool2d_geom g;
      const int *v = geo[t];
      if (fh_pool2d_geometry_ceil(&g, v[0], v[1], v[2], v[3], v[4], v[5], ceil)) continue;
      const int B = 3;
      const size_t nx = (size_t)B * v[0] * v[1] * v[2], ny = (size_t)B * v[0] * g.out_h * g.out_w;
      float *x = malloc(nx * sizeof(float)), *r = malloc(nx * sizeof(float));
      float *y = malloc(ny * sizeof(float)), *yi = malloc(ny * sizeof(float));
      int32_t *arg = malloc(ny * sizeof(int32_t));
      /* a few values only, so windows tie; signed zeros, NaN, -inf among them */
      const float pick[8] = {-1.0f, 0.0f, -0.0f, 2.0f, -0.0f, 0.0f, -INFINITY, 1.0f};
      for (size_t i = 0; i < nx; i++) {
        x[i] = pick[fh_rng_u32(&g_rng) % 8];
        if (fh_rng_u32(&g_rng) % 97 == 0) x[i] = NAN;
      }
      fh_maxpool2d_forward(y, arg, x, B, &g);
      fh_maxpool2d_infer(yi, x, B, &g, 0);
      assert_memory_equal(yi, y, ny * sizeof(float));
      fh_relu_forward(r, x, nx);
      fh_maxpool2d_forward(y, arg, r, B, &g);
      fh_maxpool2d_infer(yi, x, B, &g, 1);
      assert_memory_equal(yi, y, ny * sizeof(float));
      free(x), free(r), free(y), free(yi), free(arg);
    }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_conv_matches_torch),
      cmocka_unit_test(test_pools_match_torch),
      cmocka_unit_test(test_chain_matches_torch),
      cmocka_unit_test(test_flops_and_init),
      cmocka_unit_test(test_conv_gradients),
      cmocka_unit_test(test_pool_gradients),
      cmocka_unit_test(test_maxpool_ties_and_nan),
      cmocka_unit_test(test_maxpool_infer_bitwise),
  };
  return cmocka_run_group_tests(tests, setup_all, teardown_all);
}
