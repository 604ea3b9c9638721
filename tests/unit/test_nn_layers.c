/* Layer lists (model.arch = layers, src/nn/netspec.c): networks built from a
 * list against PyTorch (tests/fixtures/nn_layers_torch.txt, made by
 * make_layers_fixtures.py: logits, input and parameter gradients), the named
 * networks' parameter counts, the initialisations, and the errors a wrong
 * list gets (the layer, its position and the shapes). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "torch_fixture.h"

#include "core/error.h"
#include "core/rng.h"
#include "nn/layer.h"
#include "nn/model.h"
#include "nn/netspec.h"

static torch_fixture g_fixture;

static int setup_all(void **state) {
  (void)state;
  return torch_fixture_load(&g_fixture, FH_FIXTURES_DIR "/nn_layers_torch.txt");
}

static int teardown_all(void **state) {
  (void)state;
  torch_fixture_free(&g_fixture);
  return 0;
}

/* The lists of the fixture's cases (make_layers_fixtures.py writes the same
 * networks with torch.nn.functional). */
typedef struct {
  const char *name, *layers;
  int classes;
  double rtol; /* BatchNorm1d over 2 samples is ill-conditioned: float
                  rounding grows through it */
} layer_case;

static const layer_case cases[] = {
    {"augfl", NULL, 10, 1e-4}, /* the named network augfl_fmnist */
    {"pools",
     "conv(4,k=3,p=same,bias=0) leakyrelu(0.2) avgpool(3,s=2,p=1,ceil) maxpool(2,ceil) "
     "avgpool(2,s=2,ceil) flatten linear(8,6,bias=0) bn lrelu linear",
     5, 1e-3},
    {"res",
     "conv(8,k=3,p=1,bias=0) bn relu res[conv(8,k=3,p=1,bias=0) bn relu conv(8,k=3,p=1,bias=0) "
     "bn] relu res[conv(16,k=3,s=2,p=1,bias=0) bn relu conv(16,k=3,p=1,bias=0) bn] relu "
     "res(proj=conv)[conv(16,k=1) relu conv(12,k=3,p=1)] elu gap linear",
     4, 1e-4},
    {"evalpad", "conv(2,3,k=3,p=1) leakyrelu maxpool(3,s=1,p=1) avgpool(3,s=2,p=1) flatten linear",
     4, 1e-4},
    {"groups", "conv(4,6,k=3,p=1,g=2) relu conv(6,k=3,groups=6,bias=0) relu flatten linear", 3, 1e-4},
    {"adaptive", "conv(2,3,k=3,p=1) relu adaptiveavgpool(3) flatten linear", 4, 1e-4},
};

static void check_case(const layer_case *c) {
  const torch_tensor *d = fixture_get(&g_fixture, "%s/dims", c->name);
  const int B = (int)d->v[0], C = (int)d->v[1], H = (int)d->v[2], W = (int)d->v[3];
  const int train = (int)fixture_get(&g_fixture, "%s/train", c->name)->v[0];
  const char *spec = c->layers ? c->layers : fh_netspec_named("augfl_fmnist");
  assert_non_null(spec);
  fh_model *m = NULL;
  if (fh_model_create_layers(&m, c->name, spec, C, H, W, c->classes, B) != 0)
    fail_msg("%s: %s", c->name, fh_error_msg());

  /* Same tensors, names and order as the PyTorch network. */
  const int np = (int)fixture_get(&g_fixture, "%s/nparams", c->name)->v[0];
  assert_int_equal(fh_model_nviews(m), np);
  float *params = fh_model_params(m);
  size_t total = 0;
  for (int i = 0; i < np; i++) {
    const fh_param_view *v = fh_model_view(m, i);
    const torch_tensor *t = fixture_get(&g_fixture, "%s/p/%s", c->name, v->name);
    assert_int_equal(t->n, v->numel);
    total += v->numel;
  }
  assert_int_equal(total, fh_model_nparams(m));
  /* BatchNorm starts from PyTorch's running statistics (mean 0, var 1). */
  fh_rng r;
  fh_rng_init(&r, 1, FH_RNG_TEST, 0, 0);
  fh_model_init(m, &r);
  for (int i = 0; i < np; i++) {
    const fh_param_view *v = fh_model_view(m, i);
    to_float(params + v->offset, fixture_get(&g_fixture, "%s/p/%s", c->name, v->name));
  }

  const size_t n = (size_t)B * C * H * W;
  float *x = malloc(n * sizeof(float));
  to_float(x, fixture_get(&g_fixture, "%s/x", c->name));
  const torch_tensor *dyt = fixture_get(&g_fixture, "%s/dy", c->name);
  float *dy = malloc(dyt->n * sizeof(float));
  to_float(dy, dyt);

  char what[128];
  const float *y = fh_model_forward(m, x, B, train);
  snprintf(what, sizeof what, "%s logits", c->name);
  assert_close(what, y, fixture_get(&g_fixture, "%s/y", c->name), c->rtol);
  fh_model_set_input_grad(m, 1);
  fh_model_backward(m, x, dy, B);
  snprintf(what, sizeof what, "%s dx", c->name);
  assert_close(what, fh_model_input_grad(m), fixture_get(&g_fixture, "%s/dx", c->name), c->rtol);
  const float *grads = fh_model_grads(m);
  for (int i = 0; i < np; i++) {
    const fh_param_view *v = fh_model_view(m, i);
    snprintf(what, sizeof what, "%s grad %s", c->name, v->name);
    assert_close(what, grads + v->offset, fixture_get(&g_fixture, "%s/g/%s", c->name, v->name),
                 c->rtol);
  }
  free(x);
  free(dy);
  fh_model_free(m);
}

static void test_augfl_matches_torch(void **state) {
  (void)state;
  check_case(&cases[0]);
}

static void test_pools_matches_torch(void **state) {
  (void)state;
  check_case(&cases[1]);
}

static void test_res_matches_torch(void **state) {
  (void)state;
  check_case(&cases[2]);
}

static void test_evalpad_matches_torch(void **state) {
  (void)state;
  check_case(&cases[3]);
}

static void test_groups_matches_torch(void **state) {
  (void)state;
  check_case(&cases[4]);
}

/* AdaptiveAvgPool2d to 3x3 on a 7x5 map: PyTorch's overlapping bins. */
static void test_adaptive_matches_torch(void **state) {
  (void)state;
  check_case(&cases[5]);
}

/* ---- named networks ------------------------------------------------------------ */

static size_t count_params(const char *arch, int c, int h, int w, int classes) {
  fh_model *m = NULL;
  if (fh_model_create_layers(&m, arch, fh_netspec_named(arch), c, h, w, classes, 4) != 0)
    fail_msg("%s: %s", arch, fh_error_msg());
  const size_t n = fh_model_nparams(m);
  fh_model_free(m);
  return n;
}

static void test_named_networks(void **state) {
  (void)state;
  /* Published or computed by hand from the papers' layer sizes. */
  assert_int_equal(count_params("mcmahan_cnn", 1, 28, 28, 10), 1663370);
  assert_int_equal(count_params("mnist_cnn", 1, 28, 28, 10), 582026);
  assert_int_equal(count_params("lenet5", 1, 28, 28, 10), 61706);
  assert_int_equal(count_params("augfl_fmnist", 1, 28, 28, 10),
                   32 * 9 + 32 + 64 * 32 * 9 + 64 + 3136 * 10 + 10);
  assert_null(fh_netspec_named("nonesuch"));
}

/* trunc_normal_(std 0.1, [-0.2, 0.2]) weights and 0.1 biases (AugFL). */
static void test_trunc_normal_and_constant_bias(void **state) {
  (void)state;
  fh_model *m = NULL;
  assert_int_equal(
      fh_model_create_layers(&m, "augfl_fmnist", fh_netspec_named("augfl_fmnist"), 1, 28, 28, 10, 2),
      0);
  fh_rng r;
  fh_rng_init(&r, 7, FH_RNG_TEST, 0, 0);
  fh_model_init(m, &r);
  const float *p = fh_model_params(m);
  for (int i = 0; i < fh_model_nviews(m); i++) {
    const fh_param_view *v = fh_model_view(m, i);
    const int is_bias = strstr(v->name, ".bias") != NULL;
    double s = 0, s2 = 0;
    for (size_t k = 0; k < v->numel; k++) {
      const float a = p[v->offset + k];
      if (is_bias) {
        assert_true(a == 0.1f);
        continue;
      }
      assert_true(a >= -0.2f && a <= 0.2f);
      s += a, s2 += (double)a * a;
    }
    if (!is_bias && v->numel > 1000) {
      /* N(0, 0.01) truncated at 2 std: sd 0.1 * 0.8796 */
      const double mean = s / v->numel, sd = sqrt(s2 / v->numel - mean * mean);
      assert_true(fabs(mean) < 0.005);
      assert_true(fabs(sd - 0.08796) < 0.004);
    }
  }
  fh_model_free(m);
}

/* ---- errors --------------------------------------------------------------------- */

static void expect_error(const char *spec, int c, int h, int w, const char *a, const char *b) {
  fh_model *m = NULL;
  fh_error_clear();
  const int rc = fh_model_create_layers(&m, "layers", spec, c, h, w, 10, 2);
  if (rc != FH_ERR_CONFIG) fail_msg("'%s' gave %d, not a deck error", spec, rc);
  assert_null(m);
  const char *msg = fh_error_msg();
  if (!strstr(msg, a) || (b && !strstr(msg, b)))
    fail_msg("'%s': message '%s' lacks '%s' / '%s'", spec, msg, a, b ? b : "");
  fh_error_clear();
}

static void test_errors_name_layer_and_shapes(void **state) {
  (void)state;
  const char *augfl = "conv(32,k=3,p=same) elu maxpool(3,s=2,ceil) conv(64,k=3,p=same) elu "
                      "maxpool(3,s=2,ceil) flatten linear(3000,10)";
  expect_error(augfl, 1, 28, 28, "layer 8 linear(3000,10)", "3136");
  expect_error("conv(8,k=3) relu linear", 1, 28, 28, "layer 3 linear", "[8, 26, 26]");
  expect_error("conv(8,k=9) conv(8,k=30)", 1, 28, 28, "layer 2 conv(8,k=30)", "[8, 20, 20]");
  expect_error("conv(3,8,k=3)", 1, 28, 28, "layer 1 conv(3,8,k=3)", "3 input channels");
  expect_error("flatten frob linear", 1, 28, 28, "layer 2 frob", "unknown layer kind");
  expect_error("conv(8,k=4,p=same)", 1, 28, 28, "layer 1", "even kernel");
  expect_error("conv(8,k=3,s=2,p=same)", 1, 28, 28, "layer 1", "stride 1");
  expect_error("conv(8,q=3)", 1, 28, 28, "layer 1", "unknown option 'q'");
  expect_error("maxpool(3,p=2)", 1, 28, 28, "layer 1 maxpool(3,p=2)", "half the window");
  expect_error("res(proj=identity)[conv(8,k=3,p=1)] flatten linear", 1, 8, 8, "identity",
               "[1, 8, 8]");
  expect_error("flatten linear(20)", 1, 4, 4, "ends in [20, 1, 1]", "10 classes");
  expect_error("res[conv(8,k=3,p=1) flatten linear", 1, 4, 4, "not closed", NULL);
  expect_error("conv(8,k=3", 1, 4, 4, "not closed", NULL);
  expect_error("", 1, 4, 4, "empty", NULL);
  expect_error("conv(8,ceil) flatten linear", 1, 4, 4, "layer 1 conv(8,ceil)", "maxpool and avgpool");
  expect_error("conv(8,k=3,init=uniform) flatten linear", 1, 4, 4, "init = 'uniform'", NULL);
  expect_error("conv(6,k=3,g=4) flatten linear", 4, 4, 4, "groups = 4", "must divide");
}

/* A projection shortcut accepted by res[...] (the res case above has the
 * identity and the projections); and a residual block whose body reads the
 * shortcut's shape. */
static void test_res_auto_projection(void **state) {
  (void)state;
  const char *spec = "res[conv(8,k=3,s=2,p=1,bias=0) bn] relu gap linear";
  fh_model *m = NULL;
  assert_int_equal(fh_model_create_layers(&m, "layers", spec, 3, 9, 9, 10, 2), 0);
  assert_non_null(fh_model_find_view(m, "res1.downsample.0.weight"));
  assert_non_null(fh_model_find_view(m, "res1.downsample.1.weight"));
  assert_null(fh_model_find_view(m, "res1.downsample.0.bias"));
  /* Every conv inside a block is a LIPS middle layer. */
  for (int i = 0; i < fh_model_nviews(m); i++)
    if (strstr(fh_model_view(m, i)->name, "conv") || strstr(fh_model_view(m, i)->name, "downsample.0"))
      assert_int_equal(fh_model_view_is_middle(m, i), 1);
  fh_model_free(m);
}

/* ---- evaluation-only forward ------------------------------------------------------ */

/* fh_model_infer against fh_model_forward in evaluation mode, bit for bit:
 * the leading map layers in pieces of rows (a batch of 40 spans several),
 * ReLUs folded into the max pools after them (not one with two readers),
 * residual joins inside the pieces, BatchNorm with moved running statistics
 * and dropout in the head; fh_model_infer_rows gives the wanted rows the
 * same logits. The forward is itself checked against PyTorch above. */
static void test_infer_matches_forward(void **state) {
  (void)state;
  const struct {
    const char *spec;
    int c, h, w;
  } nets[] = {
      {NULL, 1, 28, 28}, /* mnist_cnn, the PFLlib workload's network */
      {"conv(16,k=3,p=1,bias=0) bn relu res[conv(16,k=3,p=1,bias=0) bn relu conv(16,k=3,p=1,bias=0) "
       "bn] relu maxpool(2) res(proj=conv)[conv(32,k=3,s=2,p=1) relu] relu maxpool(3,s=2,p=1) gap linear",
       3, 32, 32},
      {"conv(4,k=3,p=same,bias=0) leakyrelu(0.2) avgpool(3,s=2,p=1,ceil) relu maxpool(2,ceil) "
       "elu avgpool(2,s=2,ceil) flatten linear(8,bias=0) bn relu linear",
       3, 40, 36},
      {"conv(8,k=3) relu maxpool(2) flatten dropout(0.5) linear(20) bn1d relu linear", 2, 30, 30},
      /* a ReLU read by a max pool and by a join: not folded */
      {"conv(8,k=3,p=1) relu res(proj=identity)[maxpool(3,s=1,p=1) conv(8,k=3,p=1)] relu gap linear",
       3, 24, 24},
  };
  const int B = 40, K = 10;
  for (size_t t = 0; t < sizeof nets / sizeof nets[0]; t++) {
    const char *spec = nets[t].spec ? nets[t].spec : fh_netspec_named("mnist_cnn");
    fh_model *m = NULL;
    if (fh_model_create_layers(&m, "infer", spec, nets[t].c, nets[t].h, nets[t].w, K, B) != 0)
      fail_msg("net %zu: %s", t, fh_error_msg());
    fh_rng r;
    fh_rng_init(&r, 11, FH_RNG_TEST, (uint32_t)t, 0);
    fh_model_init(m, &r);
    const size_t d = fh_model_input_size(m);
    float *x = malloc((size_t)B * d * sizeof(float));
    fh_rng_normal_fill(&r, x, (size_t)B * d, 0.0f, 1.0f);
    fh_model_set_rng(m, &r);
    fh_model_forward(m, x, B, 1); /* moves BatchNorm's running statistics */
    fh_model_set_rng(m, NULL);
    float *want = malloc((size_t)B * K * sizeof(float));
    for (int b = B; b >= 5; b -= 35) {
      memcpy(want, fh_model_forward(m, x, b, 0), (size_t)b * K * sizeof(float));
      assert_memory_equal(fh_model_infer(m, x, b), want, (size_t)b * K * sizeof(float));
      const int lo = b / 5, hi = b - b / 4;
      const float *z = fh_model_infer_rows(m, x, b, lo, hi);
      assert_memory_equal(z + (size_t)lo * K, want + (size_t)lo * K, (size_t)(hi - lo) * K * sizeof(float));
    }
    free(want);
    free(x);
    fh_model_free(m);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_augfl_matches_torch),
      cmocka_unit_test(test_pools_matches_torch),
      cmocka_unit_test(test_res_matches_torch),
      cmocka_unit_test(test_evalpad_matches_torch),
      cmocka_unit_test(test_groups_matches_torch),
      cmocka_unit_test(test_adaptive_matches_torch),
      cmocka_unit_test(test_named_networks),
      cmocka_unit_test(test_trunc_normal_and_constant_bias),
      cmocka_unit_test(test_errors_name_layer_and_shapes),
      cmocka_unit_test(test_res_auto_projection),
      cmocka_unit_test(test_infer_matches_forward),
  };
  return cmocka_run_group_tests(tests, setup_all, teardown_all);
}
