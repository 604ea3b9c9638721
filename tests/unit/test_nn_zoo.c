/* The pFedAFM CNNs cnn1..cnn5 of the zoo and the Flatten layer they use: the
 * state_dict layout of all five against PyTorch, logits, loss and every
 * gradient of cnn1 and cnn5 against PyTorch on one batch
 * (tests/fixtures/nn_zoo_torch.txt, made by make_zoo_fixtures.py), the FLOP
 * counts, the extractor/header split, and the deck errors.
 *
 * The fixture does not carry cnn1's 2.6 million weights: parameters and input
 * come from hashed(), an integer hash of the element index that the fixture
 * script computes identically, rounded once from double to float. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "torch_fixture.h"

#include "core/config.h"
#include "core/error.h"
#include "core/rng.h"
#include "nn/flatten.h"
#include "nn/layer.h"
#include "nn/model.h"

#define CLASSES 10
#define BATCH 4
#define INPUT_SEED 1000

static const char *const ARCHS[] = {"cnn1", "cnn2", "cnn3", "cnn4", "cnn5"};
static const int CONV2[] = {32, 16, 32, 32, 32}, FC1[] = {2000, 2000, 1000, 800, 500};

static torch_fixture g_fixture;

static int setup_all(void **state) {
  (void)state;
  return torch_fixture_load(&g_fixture, FH_FIXTURES_DIR "/nn_zoo_torch.txt");
}

static int teardown_all(void **state) {
  (void)state;
  torch_fixture_free(&g_fixture);
  return 0;
}

/* (2 u - 1) bound with u the top 24 bits of a mix of the index, over 2^24;
 * make_zoo_fixtures.py's hashed(). */
static void hashed(float *dst, uint64_t seed, size_t n, double bound) {
  for (size_t i = 0; i < n; i++) {
    uint64_t z = (uint64_t)(i + 1) * 0x9E3779B97F4A7C15ULL + seed * 0x632BE59BD9B4E019ULL;
    z ^= z >> 31;
    z *= 0xBF58476D1CE4E5B9ULL;
    z ^= z >> 29;
    const double u = (double)(z >> 40) / 16777216.0;
    dst[i] = (float)((2.0 * u - 1.0) * bound);
  }
}

static int cnn_from_deck(fh_model **m, const char *arch, int c, int h, int w, int max_batch) {
  const fh_key_spec *const tables[] = {fh_model_keys};
  char set[64];
  snprintf(set, sizeof set, "model.arch=%s", arch);
  const char *sets[] = {set};
  fh_config *cfg;
  fh_error_clear();
  int rc = fh_config_load(&cfg, NULL, sets, 1, tables, 1);
  if (rc) return rc;
  rc = fh_model_create(m, cfg, c, h, w, CLASSES, max_batch);
  fh_config_free(cfg);
  return rc;
}

/* ---- Flatten ------------------------------------------------------------------ */

static void test_flatten_layer(void **state) {
  (void)state;
  fh_layer L = fh_layer_flatten("flatten", 3, 2, 4);
  assert_int_equal(L.kind, FH_LAYER_FLATTEN);
  assert_string_equal(L.ops->kind_name, "Flatten");
  assert_int_equal(L.out_shape[0], 24);
  assert_int_equal(L.out_shape[1], 1);
  assert_int_equal(L.out_shape[2], 1);
  assert_int_equal(L.in_size, 24);
  assert_int_equal(L.out_size, 24);
  assert_int_equal(L.nparams, 0);
  assert_int_equal(L.scratch_fixed + L.scratch_per_sample, 0);
  assert_true(L.ops->flops_forward(&L, 5) == 0.0 && L.ops->flops_backward(&L, 5) == 0.0);

  /* [B=2, 3, 2, 4] row-major is [2, 24]: the same floats in the same order. */
  enum { B = 2, N = 24 };
  float x[B * N], y[B * N], dy[B * N], dx[B * N];
  for (int i = 0; i < B * N; i++) x[i] = 0.5f * (float)i - 7.0f, dy[i] = (float)(i * i % 11) - 5.0f;
  memset(y, 0xff, sizeof y);
  const fh_layer_ctx c = {NULL, NULL, NULL, NULL, NULL, 1, NULL, NULL};
  L.ops->forward(&L, &c, x, y, B);
  assert_memory_equal(y, x, sizeof x);
  memset(dx, 0xff, sizeof dx);
  L.ops->backward(&L, &c, x, y, dy, dx, B);
  assert_memory_equal(dx, dy, sizeof dy);
  L.ops->backward(&L, &c, x, y, dy, NULL, B); /* the model input's dx: not formed */
}

/* ---- the state_dict layout of all five --------------------------------------- */

static void test_cnn_layout_matches_torch(void **state) {
  (void)state;
  for (int a = 0; a < 5; a++) {
    fh_model *m;
    assert_int_equal(cnn_from_deck(&m, ARCHS[a], 3, 32, 32, 2), 0);
    assert_string_equal(fh_model_arch(m), ARCHS[a]);
    assert_int_equal(fh_model_num_classes(m), CLASSES);
    assert_int_equal(fh_model_input_size(m), 3 * 32 * 32);
    assert_int_equal(fh_model_nbuffers(m), 0);

    /* Every view against the state_dict key of the same position. */
    char prefix[32];
    snprintf(prefix, sizeof prefix, "%s/shape/", ARCHS[a]);
    int nkeys = 0;
    size_t offset = 0;
    for (int t = 0; t < g_fixture.count; t++) {
      const torch_tensor *want = &g_fixture.tensors[t];
      if (strncmp(want->name, prefix, strlen(prefix)) != 0) continue;
      const fh_param_view *v = fh_model_view(m, nkeys++);
      assert_non_null(v);
      assert_string_equal(v->name, want->name + strlen(prefix));
      assert_int_equal(v->ndim, (int)want->n);
      size_t numel = 1;
      for (int d = 0; d < v->ndim; d++) {
        assert_int_equal(v->shape[d], (int)want->v[d]);
        numel *= (size_t)want->v[d];
      }
      assert_int_equal(v->numel, numel);
      assert_int_equal(v->offset, offset);
      offset += numel;
    }
    assert_int_equal(nkeys, 10);
    assert_int_equal(fh_model_nviews(m), nkeys);
    assert_int_equal(fh_model_nparams(m), offset);
    assert_int_equal(fh_model_nparams(m), (size_t)fixture_get(&g_fixture, "%s/nparams", ARCHS[a])->v[0]);

    /* conv-ReLU-pool twice, flatten, fc-ReLU twice, the header. */
    const fh_layer_kind kinds[] = {FH_LAYER_CONV2D, FH_LAYER_RELU,    FH_LAYER_MAXPOOL2D,
                                   FH_LAYER_CONV2D, FH_LAYER_RELU,    FH_LAYER_MAXPOOL2D,
                                   FH_LAYER_FLATTEN, FH_LAYER_LINEAR, FH_LAYER_RELU,
                                   FH_LAYER_LINEAR, FH_LAYER_RELU,    FH_LAYER_LINEAR};
    assert_int_equal(fh_model_nlayers(m), 12);
    for (int i = 0; i < 12; i++) assert_int_equal(fh_model_layer(m, i)->kind, kinds[i]);
    const fh_layer *flat = fh_model_layer(m, 6);
    assert_int_equal(flat->in_shape[0], CONV2[a]);
    assert_int_equal(flat->in_shape[1], 5);
    assert_int_equal(flat->in_shape[2], 5);
    fh_model_free(m);
  }
}

/* ---- the extractor / header split -------------------------------------------- */

static void test_header_split(void **state) {
  (void)state;
  for (int a = 0; a < 5; a++) {
    fh_model *m;
    assert_int_equal(cnn_from_deck(&m, ARCHS[a], 3, 32, 32, 1), 0);
    const int h = fh_model_header_first_view(m);
    assert_int_equal(h, 8);
    assert_string_equal(fh_model_view(m, h)->name, "fc3.weight");
    assert_string_equal(fh_model_view(m, h + 1)->name, "fc3.bias");
    assert_int_equal(fh_model_nviews(m), h + 2);
    assert_int_equal(fh_model_feature_dim(m), 500);
    assert_int_equal(fh_model_view(m, h)->shape[1], fh_model_feature_dim(m));
    /* The extractor is everything before the header, contiguous from 0. */
    assert_int_equal(fh_model_view(m, h)->offset,
                     fh_model_nparams(m) - (size_t)(500 + 1) * CLASSES);
    fh_model_free(m);
  }
  /* The same rule on an MLP (its last Linear) and on softmax regression (no
   * extractor at all). */
  fh_model *m;
  assert_int_equal(fh_model_create_mlp(&m, 6, (const int[]){7, 5}, 2, 4, 1), 0);
  assert_int_equal(fh_model_header_first_view(m), 4);
  assert_int_equal(fh_model_feature_dim(m), 5);
  fh_model_free(m);
  assert_int_equal(fh_model_create_mlp(&m, 6, NULL, 0, 4, 1), 0);
  assert_int_equal(fh_model_header_first_view(m), 0);
  assert_int_equal(fh_model_feature_dim(m), 6);
  fh_model_free(m);
}

/* ---- logits, loss and gradients against PyTorch ------------------------------- */

/* View k gets hashed(k + 1, numel, bound): sqrt(6 / fan_in) for weights,
 * 1 / sqrt(fan_in) for biases (the fan_in of the layer's weight). */
static void load_hashed(fh_model *m) {
  double fan = 1.0;
  for (int k = 0; k < fh_model_nviews(m); k++) {
    const fh_param_view *v = fh_model_view(m, k);
    const int weight = strstr(v->name, ".weight") != NULL;
    if (weight) fan = (double)(v->numel / (size_t)v->shape[0]);
    hashed(fh_model_params(m) + v->offset, (uint64_t)k + 1, v->numel,
           weight ? sqrt(6.0 / fan) : 1.0 / sqrt(fan));
  }
}

static void check_against_torch(const char *arch) {
  fh_model *m;
  assert_int_equal(cnn_from_deck(&m, arch, 3, 32, 32, BATCH), 0);
  load_hashed(m);
  float *x = malloc((size_t)BATCH * 3 * 32 * 32 * sizeof(float));
  hashed(x, INPUT_SEED, (size_t)BATCH * 3 * 32 * 32, 1.0);
  int32_t y[BATCH];
  for (int i = 0; i < BATCH; i++) y[i] = (int32_t)fixture_get(&g_fixture, "%s/y", arch)->v[i];
  char what[96];

  snprintf(what, sizeof what, "%s logits", arch);
  assert_close(what, fh_model_forward(m, x, BATCH, 1), fixture_get(&g_fixture, "%s/logits", arch),
               1e-4);
  const float loss = fh_model_loss_grad(m, x, y, BATCH);
  const double want = fixture_get(&g_fixture, "%s/loss", arch)->v[0];
  if (!(fabs(loss - want) <= 1e-4 * fabs(want)))
    fail_msg("%s loss %.9g, PyTorch %.9g", arch, (double)loss, want);

  /* Every gradient: whole, or at the fixture's sampled positions. */
  float *picked = malloc(1000 * sizeof(float));
  for (int k = 0; k < fh_model_nviews(m); k++) {
    const fh_param_view *v = fh_model_view(m, k);
    const float *g = fh_model_grads(m) + v->offset;
    snprintf(what, sizeof what, "%s grad %s", arch, v->name);
    char full[96];
    snprintf(full, sizeof full, "%s/grad/%s", arch, v->name);
    int whole = 0;
    for (int t = 0; t < g_fixture.count; t++) whole |= strcmp(g_fixture.tensors[t].name, full) == 0;
    if (whole) {
      const torch_tensor *gt = fixture_get(&g_fixture, "%s", full);
      assert_int_equal(gt->n, v->numel);
      assert_close(what, g, gt, 1e-4);
      continue;
    }
    const torch_tensor *idx = fixture_get(&g_fixture, "%s/gidx/%s", arch, v->name);
    const torch_tensor *val = fixture_get(&g_fixture, "%s/gval/%s", arch, v->name);
    assert_true(idx->n == val->n && idx->n <= 1000);
    for (size_t i = 0; i < idx->n; i++) {
      assert_true(idx->v[i] >= 0 && (size_t)idx->v[i] < v->numel);
      picked[i] = g[(size_t)idx->v[i]];
    }
    assert_close(what, picked, val, 1e-4);
  }
  free(picked);
  free(x);
  fh_model_free(m);
}

static void test_cnn5_matches_torch(void **state) {
  (void)state;
  check_against_torch("cnn5");
}

static void test_cnn1_matches_torch(void **state) {
  (void)state;
  check_against_torch("cnn1");
}

/* ---- FLOP counts ------------------------------------------------------------- */

static void test_flop_counts(void **state) {
  (void)state;
  for (int a = 0; a < 5; a++) {
    fh_model *m;
    assert_int_equal(cnn_from_deck(&m, ARCHS[a], 3, 32, 32, 1), 0);
    const double c2 = CONV2[a], h1 = FC1[a];
    const double conv1 = 16.0 * 28 * 28 * (3 * 25), conv2 = c2 * 10 * 10 * (16 * 25);
    const double fc = c2 * 25 * h1 + h1 * 500 + 500.0 * CLASSES;
    const double macs = conv1 + conv2 + fc;
    assert_true(fh_model_flops_forward(m, 64) == 2.0 * 64 * macs);
    /* Backward: weight and input gradients, but conv1 forms no input gradient. */
    assert_true(fh_model_flops_backward(m, 64) == 4.0 * 64 * macs - 2.0 * 64 * conv1);
    fh_model_free(m);
  }
}

/* ---- deck errors --------------------------------------------------------------- */

static void test_deck_errors(void **state) {
  (void)state;
  /* too small for two 5x5 convolutions and two 2x2 pools: refused */
  const int small[][3] = {{1, 15, 28}, {3, 32, 12}, {60, 1, 1}};
  for (int s = 0; s < 3; s++) {
    fh_model *m = (fh_model *)&m;
    assert_int_equal(cnn_from_deck(&m, "cnn3", small[s][0], small[s][1], small[s][2], 4), FH_ERR_CONFIG);
    assert_null(m);
    assert_non_null(strstr(fh_error_msg(), "model.arch"));
    assert_non_null(strstr(fh_error_msg(), "cnn3"));
    assert_non_null(strstr(fh_error_msg(), "at least 16x16"));
  }
  /* other images adapt the flatten width to c2 h' w', h' = ((H - 4) / 2 - 4) / 2 (w' alike), with
   * the features (500) unchanged; 1x28x28 (Fashion-MNIST): 4 x 4 x 32 = 512 */
  const int other[][4] = {{1, 28, 28, 4 * 4}, {3, 28, 28, 4 * 4}, {4, 32, 32, 5 * 5}, {3, 32, 31, 5 * 4}};
  for (int s = 0; s < 4; s++) {
    fh_model *m;
    assert_int_equal(cnn_from_deck(&m, "cnn3", other[s][0], other[s][1], other[s][2], 4), 0);
    const fh_param_view *fc1 = fh_model_find_view(m, "fc1.weight"), *fc2 = fh_model_find_view(m, "fc2.weight");
    assert_non_null(fc1);
    assert_int_equal(fc1->shape[1], 32 * other[s][3]); /* cnn3: c2 = 32 */
    assert_int_equal(fc2->shape[0], 500);
    fh_model_free(m);
  }
  fh_model *m;
  assert_int_equal(cnn_from_deck(&m, "cnn6", 3, 32, 32, 4), FH_ERR_CONFIG);
  assert_non_null(strstr(fh_error_msg(), "model.arch"));
  fh_error_clear();
}

/* ---- throughput (printed, not asserted) ----------------------------------------- */

static double now_s(void) {
  struct timespec t;
  timespec_get(&t, TIME_UTC);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void test_cnn1_step_rate(void **state) {
  (void)state;
  enum { B = 64, STEPS = 5 };
  fh_model *m;
  assert_int_equal(cnn_from_deck(&m, "cnn1", 3, 32, 32, B), 0);
  fh_rng r;
  fh_rng_init(&r, 7, FH_RNG_INIT, FH_RNG_NONE, FH_RNG_NONE);
  fh_model_init(m, &r);
  float *x = malloc((size_t)B * 3 * 32 * 32 * sizeof(float));
  hashed(x, INPUT_SEED, (size_t)B * 3 * 32 * 32, 1.0);
  int32_t y[B];
  for (int i = 0; i < B; i++) y[i] = i % CLASSES;
  float loss = fh_model_loss_grad(m, x, y, B); /* warm-up */
  const double t0 = now_s();
  for (int s = 0; s < STEPS; s++) loss = fh_model_loss_grad(m, x, y, B);
  const double dt = (now_s() - t0) / STEPS;
  assert_true(isfinite(loss));
  const double flops = fh_model_flops_forward(m, B) + fh_model_flops_backward(m, B);
  print_message("cnn1, batch %d: %.3g GFLOP per step (forward %.3g), %.2f ms per step, "
                "%.2f GFLOP/s\n",
                B, flops * 1e-9, fh_model_flops_forward(m, B) * 1e-9, dt * 1e3,
                flops / dt * 1e-9);
  free(x);
  fh_model_free(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_flatten_layer),
      cmocka_unit_test(test_cnn_layout_matches_torch),
      cmocka_unit_test(test_header_split),
      cmocka_unit_test(test_cnn5_matches_torch),
      cmocka_unit_test(test_cnn1_matches_torch),
      cmocka_unit_test(test_flop_counts),
      cmocka_unit_test(test_deck_errors),
      cmocka_unit_test(test_cnn1_step_rate),
  };
  return cmocka_run_group_tests(tests, setup_all, teardown_all);
}
