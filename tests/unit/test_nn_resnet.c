/* Residual nets and VGG of the zoo (resnet4/6/8/10/18, vgg11_bn, resnet8x4,
 * resnet32x4) and the pieces they add: the Add join, the model's sum of the
 * gradients of an output read twice, the input gradient, evaluation-mode
 * backward, LIPS middle layers, the layer table, the stem's max pool.
 *
 * Against PyTorch (tests/fixtures/nn_resnet_torch.txt, made by
 * make_resnet_fixtures.py from analysis/fedhpc_zoo.py, in float64 from the
 * float32 weights): the state_dict layout (names, shapes, order, counts) of
 * every model, then on one small batch in training mode the logits and the
 * loss (relative tolerance 1e-4), the gradients of the input and of every
 * parameter, BatchNorm's included (1e-3; resnet18 and resnet32x4 in
 * evaluation mode, see the fixture script), the running statistics after that
 * forward (1e-4), and the evaluation-mode logits after one SGD step with
 * momentum and weight decay (1e-4). Weights and inputs come from hashed(),
 * recomputed here bit for bit.
 *
 * Against finite differences (gradcheck.h: |analytic - numeric| <= 1e-2
 * max(|a|, |n|) + atol, and every check must reject the gradient with its sign
 * flipped or scaled by 1.05): the Add layer, a model whose join reads one
 * output twice (which must also reject half the gradient: what a backward
 * that overwrote instead of summing would give), and a tiny net of two
 * BasicBlocks, one with the 1x1 projection and one without. */
#include <math.h>
#include <regex.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gradcheck.h"
#include "layer_rig.h"
#include "torch_fixture.h"

#include "core/config.h"
#include "core/error.h"
#include "core/rng.h"
#include "nn/batchnorm.h"
#include "nn/conv2d.h"
#include "nn/layer.h"
#include "nn/model.h"
#include "nn/model_build.h"
#include "nn/optim.h"
#include "nn/pool.h"

#define BUFFER_SEED 5000

static const char *const ARCHS[] = {"resnet4",  "resnet6",  "resnet8",   "resnet10",
                                    "resnet18", "vgg11_bn", "resnet8x4", "resnet32x4"};
#define NARCHS (int)(sizeof ARCHS / sizeof ARCHS[0])

static torch_fixture g_fixture;
static fh_rng g_rng;

static int setup_all(void **state) {
  (void)state;
  fh_rng_init(&g_rng, 20240611, FH_RNG_TEST, 0, 0);
  return torch_fixture_load(&g_fixture, FH_FIXTURES_DIR "/nn_resnet_torch.txt");
}

static int teardown_all(void **state) {
  (void)state;
  torch_fixture_free(&g_fixture);
  return 0;
}

static int has_tensor(const char *fmt, const char *a, const char *b) {
  char name[192];
  snprintf(name, sizeof name, fmt, a, b);
  for (int t = 0; t < g_fixture.count; t++)
    if (strcmp(g_fixture.tensors[t].name, name) == 0) return 1;
  return 0;
}

/* ---- hashed weights (fedhpc_zoo.hashed_value / load_hashed) --------------------- */

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

/* 1 + 0.5 h (offset 1) or 0.5 h (offset 0), h = hashed(seed, n, 1) as float. */
static void hashed_around(float *dst, uint64_t seed, size_t n, double offset) {
  hashed(dst, seed, n, 1.0);
  for (size_t i = 0; i < n; i++) dst[i] = (float)(offset + 0.5 * (double)dst[i]);
}

static int ends_with(const char *s, const char *suffix) {
  const size_t n = strlen(s), k = strlen(suffix);
  return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* Parameter k gets hashed_value(k + 1): conv/linear weights He-uniform
 * (sqrt(6 / fan_in)), their biases 1 / sqrt(fan_in), BatchNorm weights
 * 1 + U(-0.5, 0.5), biases U(-0.5, 0.5); buffer j gets hashed_value(5000 + j):
 * running means U(-0.5, 0.5), running variances 1 + U(-0.5, 0.5). */
static void load_hashed(fh_model *m) {
  double fan = 1.0;
  int prev_bn = 0;
  for (int k = 0; k < fh_model_nviews(m); k++) {
    const fh_param_view *v = fh_model_view(m, k);
    float *p = fh_model_params(m) + v->offset;
    if (ends_with(v->name, ".weight") && v->ndim > 1) {
      fan = (double)(v->numel / (size_t)v->shape[0]);
      hashed(p, (uint64_t)k + 1, v->numel, sqrt(6.0 / fan));
      prev_bn = 0;
    } else if (ends_with(v->name, ".weight")) {
      hashed_around(p, (uint64_t)k + 1, v->numel, 1.0);
      prev_bn = 1;
    } else if (prev_bn) {
      hashed_around(p, (uint64_t)k + 1, v->numel, 0.0);
      prev_bn = 0;
    } else {
      hashed(p, (uint64_t)k + 1, v->numel, 1.0 / sqrt(fan));
    }
  }
  for (int j = 0; j < fh_model_nbuffer_views(m); j++) {
    const fh_param_view *v = fh_model_buffer_view(m, j);
    hashed_around(fh_model_buffers(m) + v->offset, BUFFER_SEED + (uint64_t)j, v->numel,
                  ends_with(v->name, ".running_var") ? 1.0 : 0.0);
  }
}

static int model_from_deck(fh_model **m, const char *arch, int c, int h, int w, int classes,
                           int max_batch) {
  const fh_key_spec *const tables[] = {fh_model_keys};
  char set[64];
  snprintf(set, sizeof set, "model.arch=%s", arch);
  const char *sets[] = {set};
  fh_config *cfg;
  fh_error_clear();
  int rc = fh_config_load(&cfg, NULL, sets, 1, tables, 1);
  if (rc) return rc;
  rc = fh_model_create(m, cfg, c, h, w, classes, max_batch);
  fh_config_free(cfg);
  return rc;
}

/* ---- the state_dict layout ----------------------------------------------------- */

static int is_buffer_name(const char *name) {
  return ends_with(name, ".running_mean") || ends_with(name, ".running_var");
}

/* The fixture's keys of one kind (parameters or buffers), in order, against
 * the model's views of that kind: names, shapes, contiguous offsets. */
static void check_views(const char *arch, fh_model *m, int buffers) {
  char prefix[48];
  snprintf(prefix, sizeof prefix, "%s/shape/", arch);
  int k = 0;
  size_t offset = 0;
  for (int t = 0; t < g_fixture.count; t++) {
    const torch_tensor *want = &g_fixture.tensors[t];
    if (strncmp(want->name, prefix, strlen(prefix)) != 0) continue;
    const char *key = want->name + strlen(prefix);
    if (is_buffer_name(key) != buffers) continue;
    const fh_param_view *v = buffers ? fh_model_buffer_view(m, k) : fh_model_view(m, k);
    k++;
    if (!v) fail_msg("%s: the model has no view for %s", arch, key);
    if (strcmp(v->name, key) != 0) fail_msg("%s: view %d is %s, PyTorch %s", arch, k - 1, v->name, key);
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
  assert_int_equal(buffers ? fh_model_nbuffer_views(m) : fh_model_nviews(m), k);
  assert_int_equal(buffers ? fh_model_nbuffers(m) : fh_model_nparams(m), offset);
  assert_int_equal(offset, (size_t)fixture_get(&g_fixture, "%s/%s", arch,
                                               buffers ? "nbuffers" : "nparams")->v[0]);
}

static void test_layout_matches_torch(void **state) {
  (void)state;
  for (int a = 0; a < NARCHS; a++) {
    fh_model *m;
    assert_int_equal(model_from_deck(&m, ARCHS[a], 3, 32, 32, 5, 2), 0);
    assert_string_equal(fh_model_arch(m), ARCHS[a]);
    check_views(ARCHS[a], m, 0);
    check_views(ARCHS[a], m, 1);
    /* The classifier is the last layer and the extractor's output its input. */
    const int h = fh_model_header_first_view(m);
    assert_true(strcmp(fh_model_view(m, h)->name, "fc.weight") == 0 ||
                strcmp(fh_model_view(m, h)->name, "classifier.0.weight") == 0);
    assert_int_equal(fh_model_view(m, h)->shape[1], fh_model_feature_dim(m));
    fh_model_free(m);
  }
}

/* ---- LIPS middle layers ---------------------------------------------------------- */

static void test_middle_layers(void **state) {
  (void)state;
  /* The rule, by name: convs inside the residual stages (conv1, conv2,
   * downsample.0 of every block); VGG: every conv weight (4-D) but the first. */
  regex_t block;
  assert_int_equal(
      regcomp(&block, "^layer[0-9]+\\.[0-9]+\\.(conv1|conv2|downsample\\.0)\\.weight$", REG_EXTENDED),
      0);
  static const int counts[NARCHS] = {2, 5, 8, 11, 19, 7, 9, 33};
  for (int a = 0; a < NARCHS; a++) {
    fh_model *m;
    assert_int_equal(model_from_deck(&m, ARCHS[a], 3, 32, 32, 5, 1), 0);
    const int vgg = strncmp(ARCHS[a], "vgg", 3) == 0;
    int n = 0;
    for (int i = 0; i < fh_model_nviews(m); i++) {
      const fh_param_view *v = fh_model_view(m, i);
      const int want = vgg ? v->ndim == 4 && strcmp(v->name, "features.0.weight") != 0
                           : regexec(&block, v->name, 0, NULL, 0) == 0;
      if (fh_model_view_is_middle(m, i) != want)
        fail_msg("%s: %s is%s a middle layer", ARCHS[a], v->name, want ? " not" : "");
      n += want;
      /* The owning layer carries the view. */
      const fh_layer *L = fh_model_layer(m, fh_model_view_layer(m, i));
      int found = 0;
      for (int k = 0; k < L->nparams; k++) found |= strcmp(L->param[k].name, v->name) == 0;
      assert_true(found);
    }
    assert_int_equal(n, counts[a]);
    assert_int_equal(fh_model_view_is_middle(m, -1), 0);
    assert_int_equal(fh_model_view_is_middle(m, fh_model_nviews(m)), 0);
    fh_model_free(m);
  }
  regfree(&block);
  /* No middle layers in the MLP and the pFedAFM CNNs. */
  fh_model *m;
  assert_int_equal(model_from_deck(&m, "cnn1", 3, 32, 32, 5, 1), 0);
  for (int i = 0; i < fh_model_nviews(m); i++) assert_int_equal(fh_model_view_is_middle(m, i), 0);
  fh_model_free(m);
}

/* ---- the layer table ------------------------------------------------------------------ */

/* fedhpc model prints it: every view with its offset, "middle" on exactly the
 * middle views, every join with the two layers it reads, the totals. */
static void test_layer_table(void **state) {
  (void)state;
  fh_model *m;
  assert_int_equal(model_from_deck(&m, "resnet8", 3, 32, 32, 10, 1), 0);
  FILE *f = tmpfile();
  assert_non_null(f);
  fh_model_print_table(m, f, 32);
  const long size = ftell(f);
  assert_true(size > 0);
  char *text = calloc((size_t)size + 1, 1);
  rewind(f);
  assert_int_equal(fread(text, 1, (size_t)size, f), (size_t)size);
  fclose(f);
  int middle = 0;
  for (int i = 0; i < fh_model_nviews(m); i++) {
    const fh_param_view *v = fh_model_view(m, i);
    char line[160];
    snprintf(line, sizeof line, "param  %-36s", v->name);
    const char *at = strstr(text, line);
    if (!at) fail_msg("the table lacks %s", v->name);
    const char *eol = strchr(at, '\n');
    char offset[40];
    snprintf(offset, sizeof offset, "offset %9zu", v->offset);
    const char *o = strstr(at, offset);
    assert_true(o && o < eol);
    const char *mid = strstr(at, "middle");
    assert_int_equal(mid && mid < eol, fh_model_view_is_middle(m, i));
    middle += fh_model_view_is_middle(m, i);
  }
  for (int j = 0; j < fh_model_nbuffer_views(m); j++) {
    char line[160];
    snprintf(line, sizeof line, "buffer %-36s", fh_model_buffer_view(m, j)->name);
    assert_non_null(strstr(text, line));
  }
  /* layer2.0's join reads bn2 and the projection's BatchNorm. */
  for (int i = 0; i < fh_model_nlayers(m); i++) {
    const fh_layer *L = fh_model_layer(m, i);
    if (strcmp(L->name, "layer2.0.add") != 0) continue;
    assert_string_equal(fh_model_layer(m, L->input)->name, "layer2.0.bn2");
    assert_string_equal(fh_model_layer(m, L->input2)->name, "layer2.0.downsample.1");
    char reads[64];
    snprintf(reads, sizeof reads, "layer2.0.add           %d + %d", L->input, L->input2);
    assert_non_null(strstr(text, reads));
  }
  char total[128];
  snprintf(total, sizeof total, "(%d middle,", middle);
  assert_non_null(strstr(text, total));
  snprintf(total, sizeof total, "%zu parameters, %zu buffer floats; batch 32", fh_model_nparams(m),
           fh_model_nbuffers(m));
  assert_non_null(strstr(text, total));
  free(text);
  fh_model_free(m);
}

/* ---- FLOP counts -------------------------------------------------------------------- */

/* From the views and the output shapes, apart from the layers' own counts:
 * 2 B numel(W) OH OW per conv, 2 B in out per linear; the backward doubles
 * that except the stem, which forms no input gradient. */
static void test_flop_counts(void **state) {
  (void)state;
  enum { B = 3 };
  for (int a = 0; a < NARCHS; a++) {
    fh_model *m;
    assert_int_equal(model_from_deck(&m, ARCHS[a], 3, 32, 32, 5, B), 0);
    double fwd = 0.0, stem = 0.0;
    for (int i = 0; i < fh_model_nlayers(m); i++) {
      const fh_layer *L = fh_model_layer(m, i);
      double f = 0.0;
      if (L->kind == FH_LAYER_CONV2D)
        f = 2.0 * B * (double)L->param[0].numel * L->out_shape[1] * L->out_shape[2];
      else if (L->kind == FH_LAYER_LINEAR)
        f = 2.0 * B * (double)L->param[0].numel;
      fwd += f;
      if (L->input == FH_LAYER_MODEL_INPUT) stem += f;
    }
    assert_true(fwd > 0.0 && stem > 0.0);
    assert_true(fabs(fh_model_flops_forward(m, B) - fwd) <= 1e-9 * fwd);
    assert_true(fabs(fh_model_flops_backward(m, B) - (2.0 * fwd - stem)) <= 1e-9 * fwd);
    fh_model_free(m);
  }
}

/* ---- deck errors ---------------------------------------------------------------------- */

static void test_deck_errors(void **state) {
  (void)state;
  fh_model *m = (fh_model *)&m;
  /* Flat features have no image axes. */
  assert_int_equal(model_from_deck(&m, "resnet8", 60, 1, 1, 10, 4), FH_ERR_CONFIG);
  assert_null(m);
  assert_non_null(strstr(fh_error_msg(), "model.arch = resnet8"));
  /* Five 2x2 pools need 32 pixels. */
  assert_int_equal(model_from_deck(&m, "vgg11_bn", 3, 16, 16, 10, 4), FH_ERR_CONFIG);
  assert_non_null(strstr(fh_error_msg(), "vgg11_bn"));
  assert_int_equal(model_from_deck(&m, "resnet32x4", 3, 32, 32, 0, 4), FH_ERR_CONFIG);
  assert_int_equal(model_from_deck(&m, "resnet12", 3, 32, 32, 10, 4), FH_ERR_CONFIG);
  assert_non_null(strstr(fh_error_msg(), "model.arch"));
  fh_error_clear();
  /* Other input sizes build: grey 28x28 and 64x64 images. */
  assert_int_equal(model_from_deck(&m, "resnet18", 1, 28, 28, 10, 2), 0);
  fh_model_free(m);
  assert_int_equal(model_from_deck(&m, "vgg11_bn", 3, 64, 64, 10, 2), 0);
  assert_int_equal(fh_model_feature_dim(m), 512 * 2 * 2);
  fh_model_free(m);
}

/* ---- against PyTorch ----------------------------------------------------------------- */

/* got [n] whole or at the fixture's sampled positions. */
static void compare_maybe_sampled(const char *arch, const char *whole, const char *idx,
                                  const char *val, const char *key, const float *got, size_t n,
                                  double rtol, const char *what) {
  char label[160], wname[160];
  snprintf(label, sizeof label, "%s %s %s", arch, what, key);
  snprintf(wname, sizeof wname, "%s/%s", whole, key);
  if (has_tensor("%s/%s", arch, wname)) {
    const torch_tensor *t = fixture_get(&g_fixture, "%s/%s", arch, wname);
    assert_int_equal(t->n, n);
    assert_close(label, got, t, rtol);
    return;
  }
  const torch_tensor *ti = fixture_get(&g_fixture, "%s/%s/%s", arch, idx, key);
  const torch_tensor *tv = fixture_get(&g_fixture, "%s/%s/%s", arch, val, key);
  assert_true(ti->n == tv->n);
  float *picked = malloc(ti->n * sizeof(float));
  for (size_t i = 0; i < ti->n; i++) {
    assert_true(ti->v[i] >= 0 && (size_t)ti->v[i] < n);
    picked[i] = got[(size_t)ti->v[i]];
  }
  assert_close(label, picked, tv, rtol);
  free(picked);
}

/* The input's gradient, then every parameter's, against <arch>/<mode>grad
 * ... (1e-3). */
static void compare_grads(const char *arch, const char *mode, fh_model *m) {
  char whole[16], idx[16], val[16];
  snprintf(whole, sizeof whole, "%sgrad", mode);
  snprintf(idx, sizeof idx, "%sgidx", mode);
  snprintf(val, sizeof val, "%sgval", mode);
  const size_t nx = (size_t)fh_model_max_batch(m) * fh_model_input_size(m);
  compare_maybe_sampled(arch, whole, idx, val, "input", fh_model_input_grad(m), nx, 1e-3, "grad");
  for (int k = 0; k < fh_model_nviews(m); k++) {
    const fh_param_view *v = fh_model_view(m, k);
    const fh_layer *L = fh_model_layer(m, fh_model_view_layer(m, k));
    if (L->kind == FH_LAYER_CONV2D && L->nparams > 1 && strcmp(L->param[1].name, v->name) == 0 &&
        fh_model_layer(m, fh_model_view_layer(m, k) + 1)->kind == FH_LAYER_BATCHNORM2D &&
        !has_tensor("%s/%s", arch, "e/logits")) {
      /* A conv bias under training-mode BatchNorm (vgg11_bn) shifts every
       * value of its channel alike, which the batch mean takes out again: its
       * gradient is zero but for rounding, in PyTorch as here. Both must be
       * negligible next to the conv weight's gradient. */
      const float *g = fh_model_grads(m) + v->offset, *gw = fh_model_grads(m) + L->param[0].offset;
      double wmax = 0.0, bmax = 0.0;
      for (size_t i = 0; i < L->param[0].numel; i++) wmax = fmax(wmax, fabs(gw[i]));
      for (size_t i = 0; i < v->numel; i++) bmax = fmax(bmax, fabs(g[i]));
      const torch_tensor *t = fixture_get(&g_fixture, "%s/%s/%s", arch, whole, v->name);
      for (size_t i = 0; i < t->n; i++) assert_true(fabs(t->v[i]) <= 1e-4 * wmax);
      if (!(bmax <= 1e-4 * wmax)) fail_msg("%s grad %s: %g, not ~0", arch, v->name, bmax);
      continue;
    }
    compare_maybe_sampled(arch, whole, idx, val, v->name, fh_model_grads(m) + v->offset, v->numel,
                          1e-3, "grad");
  }
}

/* d(mean cross-entropy)/d(logits) [B, C], in double. */
static void ce_grad(float *dz, const float *z, const int32_t *y, int B, int C) {
  for (int b = 0; b < B; b++) {
    double mx = z[b * C], s = 0.0;
    for (int j = 1; j < C; j++) mx = fmax(mx, z[b * C + j]);
    for (int j = 0; j < C; j++) s += exp((double)z[b * C + j] - mx);
    for (int j = 0; j < C; j++)
      dz[b * C + j] = (float)((exp((double)z[b * C + j] - mx) / s - (j == y[b])) / B);
  }
}

static void check_against_torch(const char *arch) {
  const int B = (int)fixture_get(&g_fixture, "%s/batch", arch)->v[0];
  const int C = (int)fixture_get(&g_fixture, "%s/classes", arch)->v[0];
  const int hw = (int)fixture_get(&g_fixture, "%s/hw", arch)->v[0];
  fh_model *m;
  assert_int_equal(model_from_deck(&m, arch, 3, hw, hw, C, B), 0);
  load_hashed(m);
  const size_t d = 3 * (size_t)hw * hw;
  float *x = malloc((size_t)B * d * sizeof(float));
  hashed(x, (uint64_t)fixture_get(&g_fixture, "%s/input_seed", arch)->v[0], (size_t)B * d, 1.0);
  int32_t *y = malloc((size_t)B * sizeof(int32_t));
  for (int i = 0; i < B; i++) y[i] = (int32_t)fixture_get(&g_fixture, "%s/y", arch)->v[i];
  char what[96];

  /* Training mode: logits and loss (1e-4); the buffers move once per forward,
   * so the running statistics are checked after exactly one. */
  fh_model_set_input_grad(m, 1);
  const float loss = fh_model_loss_grad(m, x, y, B);
  snprintf(what, sizeof what, "%s loss", arch);
  assert_scalar_close(what, loss, fixture_get(&g_fixture, "%s/loss", arch)->v[0], 1e-4);
  for (int j = 0; j < fh_model_nbuffer_views(m); j++) {
    const fh_param_view *v = fh_model_buffer_view(m, j);
    compare_maybe_sampled(arch, "rs", "rsidx", "rsval", v->name, fh_model_buffers(m) + v->offset,
                          v->numel, 1e-4, "running statistic");
  }
  /* Gradients (1e-3): the input's, then every parameter's (the deep nets:
   * in evaluation mode, below). */
  if (!has_tensor("%s/%s", arch, "e/logits")) compare_grads(arch, "", m);
  /* The logits of that forward, again in training mode (the statistics are
   * the batch's, whatever the buffers hold). */
  snprintf(what, sizeof what, "%s logits", arch);
  assert_close(what, fh_model_forward(m, x, B, 1), fixture_get(&g_fixture, "%s/logits", arch), 1e-4);

  /* One SGD step from the gradients, then evaluation mode, which reads the
   * running statistics: PyTorch's saw one training forward, m's two by now,
   * so a fresh model repeats the first step exactly. */
  fh_model *ref;
  assert_int_equal(model_from_deck(&ref, arch, 3, hw, hw, C, B), 0);
  load_hashed(ref);
  fh_model_loss_grad(ref, x, y, B); /* one training forward: buffers as PyTorch's */
  const size_t n = fh_model_nparams(ref);
  float *mom = calloc(n, sizeof(float));
  long long steps = 0;
  const fh_sgd sgd = {0.05f, 0.9f, 0.0f, 5e-4f, 0};
  fh_sgd_step(&sgd, fh_model_params(ref), fh_model_grads(ref), mom, n, &steps);
  snprintf(what, sizeof what, "%s eval logits after SGD", arch);
  float *zf = malloc((size_t)B * C * sizeof(float));
  memcpy(zf, fh_model_forward(ref, x, B, 0), (size_t)B * C * sizeof(float));
  assert_close(what, zf, fixture_get(&g_fixture, "%s/eval_logits", arch), 1e-4);
  /* the evaluation-only forward: the same logits, bit for bit */
  snprintf(what, sizeof what, "%s eval logits by fh_model_infer", arch);
  const float *zi = fh_model_infer(ref, x, B);
  assert_close(what, zi, fixture_get(&g_fixture, "%s/eval_logits", arch), 1e-4);
  assert_memory_equal(zi, zf, (size_t)B * C * sizeof(float));
  free(zf);
  free(mom);
  fh_model_free(ref);

  if (has_tensor("%s/%s", arch, "e/logits")) {
    /* The deep nets' gradients, in evaluation mode from the hashed weights
     * and running statistics: forward, the loss's gradient, backward. */
    assert_int_equal(model_from_deck(&ref, arch, 3, hw, hw, C, B), 0);
    load_hashed(ref);
    fh_model_set_input_grad(ref, 1);
    const float *z = fh_model_forward(ref, x, B, 0);
    snprintf(what, sizeof what, "%s eval logits", arch);
    assert_close(what, z, fixture_get(&g_fixture, "%s/e/logits", arch), 1e-4);
    float *dz = malloc((size_t)B * C * sizeof(float));
    ce_grad(dz, z, y, B, C);
    fh_model_backward(ref, x, dz, B);
    compare_grads(arch, "e/", ref);
    free(dz);
    fh_model_free(ref);
  }
  free(x);
  free(y);
  fh_model_free(m);
}

static void test_resnet4_matches_torch(void **state) { (void)state, check_against_torch("resnet4"); }
static void test_resnet6_matches_torch(void **state) { (void)state, check_against_torch("resnet6"); }
static void test_resnet8_matches_torch(void **state) { (void)state, check_against_torch("resnet8"); }
static void test_resnet10_matches_torch(void **state) { (void)state, check_against_torch("resnet10"); }
static void test_resnet18_matches_torch(void **state) { (void)state, check_against_torch("resnet18"); }
/* vgg11_lips, the LIPS code's configuration 'A' (64, M, 128, M, 256, M, 512,
 * M, 512, M with BatchNorm, Linear(512, C)): torchvision's names at the
 * Sequential indices of that list, its parameter and buffer counts counted
 * by hand, the four convs after the first as middle layers, 1-channel
 * images taken, inputs under 32x32 refused. */
static void test_vgg11_lips_layout(void **state) {
  (void)state;
  static const char *const names[] = {"features.0.weight",  "features.0.bias",  "features.1.weight",
                                      "features.1.bias",    "features.4.weight", "features.4.bias",
                                      "features.5.weight",  "features.5.bias",   "features.8.weight",
                                      "features.8.bias",    "features.9.weight", "features.9.bias",
                                      "features.12.weight", "features.12.bias",  "features.13.weight",
                                      "features.13.bias",   "features.16.weight", "features.16.bias",
                                      "features.17.weight", "features.17.bias",  "classifier.0.weight",
                                      "classifier.0.bias"};
  for (int in_c = 1; in_c <= 3; in_c += 2) {
    fh_model *m;
    assert_int_equal(model_from_deck(&m, "vgg11_lips", in_c, 32, 32, 5, 2), 0);
    assert_int_equal(fh_model_nviews(m), (int)(sizeof names / sizeof names[0]));
    int middle = 0;
    for (int i = 0; i < fh_model_nviews(m); i++) {
      assert_string_equal(fh_model_view(m, i)->name, names[i]);
      middle += fh_model_view_is_middle(m, i);
    }
    assert_int_equal(middle, 4);
    const size_t convs = (size_t)in_c * 64 * 9 + 64 + 64 * 128 * 9 + 128 + 128 * 256 * 9 + 256 +
                         256 * 512 * 9 + 512 + 512 * 512 * 9 + 512;
    const size_t bn = 2 * (64 + 128 + 256 + 512 + 512);
    assert_int_equal(fh_model_nparams(m), convs + bn + 512 * 5 + 5);
    assert_int_equal(fh_model_nbuffers(m), bn);
    assert_int_equal(fh_model_feature_dim(m), 512);
    fh_model_free(m);
  }
  fh_model *m;
  assert_int_equal(model_from_deck(&m, "vgg11_lips", 1, 28, 28, 10, 2), FH_ERR_CONFIG);
  assert_non_null(strstr(fh_error_msg(), "vgg11_lips"));
}

static void test_vgg11_bn_matches_torch(void **state) { (void)state, check_against_torch("vgg11_bn"); }
static void test_resnet8x4_matches_torch(void **state) {
  (void)state, check_against_torch("resnet8x4");
}
static void test_resnet32x4_matches_torch(void **state) {
  (void)state, check_against_torch("resnet32x4");
}

/* ---- the Add layer ---------------------------------------------------------------------- */

/* J = sum(w * (x + x2)) through the layer's ops, as a function of x2 (the
 * second input travels in the context). */
typedef struct {
  rig *r;
  const float *w;
} add_objective_ctx;

static double add_objective(void *ctx) {
  const add_objective_ctx *o = ctx;
  rig_forward(o->r);
  double s = 0.0;
  for (size_t i = 0; i < (size_t)o->r->B * o->r->L.out_size; i++) s += (double)o->w[i] * o->r->y[i];
  return s;
}

static void test_add_layer(void **state) {
  (void)state;
  enum { B = 2, C = 3, H = 2, W = 4, N = B * C * H * W };
  fh_layer L = fh_layer_add("add", C, H, W);
  assert_int_equal(L.kind, FH_LAYER_ADD);
  assert_string_equal(L.ops->kind_name, "Add");
  assert_int_equal(L.nparams + L.nbuffers, 0);
  assert_int_equal(L.scratch_fixed + L.scratch_per_sample, 0);
  assert_true(L.ops->flops_forward(&L, B) == 0.0 && L.ops->flops_backward(&L, B) == 0.0);
  rig r = rig_make(L, B, &g_rng, 0);
  float x2[N], dx2[N], w[N];
  fh_rng_normal_fill(&g_rng, r.x, N, 0.0f, 1.0f);
  fh_rng_normal_fill(&g_rng, x2, N, 0.0f, 1.0f);
  fh_rng_normal_fill(&g_rng, w, N, 0.0f, 1.0f);
  r.ctx.x2 = x2;
  rig_forward(&r);
  for (int i = 0; i < N; i++) assert_true(r.y[i] == r.x[i] + x2[i]);
  /* The first input's gradient, as for any layer. */
  gradcheck_layer("add dx", &r, 1e-2f, 1e-5, &g_rng);
  /* The second's, through the context. */
  memset(dx2, 0xff, sizeof dx2);
  r.ctx.dx2 = dx2;
  rig_forward(&r);
  rig_backward(&r, w, r.dx);
  double ana[N], num[N];
  add_objective_ctx J = {&r, w};
  for (int i = 0; i < N; i++) ana[i] = dx2[i];
  gradcheck_numeric(x2, N, 1e-2f, add_objective, &J, num);
  assert_gradients("add dx2", ana, num, N, 1e-5);
  rig_free(&r);
}

/* ---- models with joins, against finite differences ----------------------------------------- */

typedef struct {
  fh_model *m;
  const float *x;
  const int32_t *y;
  int B;
} loss_problem;

static double loss_objective(void *ctx) {
  const loss_problem *q = ctx;
  return fh_model_loss_grad(q->m, q->x, q->y, q->B);
}

/* Every parameter and the input of m against differences of the mean
 * cross-entropy, view by view (one-sided ones too: the ReLUs make the loss
 * piecewise smooth); returns the analytic parameter gradient (caller frees).
 * The loss is float (about 1e-7 relative), so over a step of h the quotients
 * carry noise of about 1e-7 / h: atol is a few times that. */
static double *gradcheck_model(const char *what, fh_model *m, float *x, const int32_t *y, int B,
                               float h, double atol) {
  fh_model_set_input_grad(m, 1);
  const size_t n = fh_model_nparams(m), nx = (size_t)B * fh_model_input_size(m);
  fh_model_loss_grad(m, x, y, B);
  const size_t most = n > nx ? n : nx;
  double *ana = malloc(n * sizeof(double)), *ax = malloc(nx * sizeof(double));
  double *c = malloc(most * sizeof(double)), *l = malloc(most * sizeof(double));
  double *r = malloc(most * sizeof(double));
  for (size_t i = 0; i < n; i++) ana[i] = fh_model_grads(m)[i];
  for (size_t i = 0; i < nx; i++) ax[i] = fh_model_input_grad(m)[i];
  loss_problem J = {m, x, y, B};
  gradcheck_numeric_sided(fh_model_params(m), n, h, loss_objective, &J, c, l, r);
  char label[128];
  for (int v = 0; v < fh_model_nviews(m); v++) {
    const fh_param_view *pv = fh_model_view(m, v);
    snprintf(label, sizeof label, "%s d/d %s", what, pv->name);
    assert_gradients_sided(label, ana + pv->offset, c + pv->offset, l + pv->offset, r + pv->offset,
                           pv->numel, atol);
  }
  gradcheck_numeric_sided(x, nx, h, loss_objective, &J, c, l, r);
  snprintf(label, sizeof label, "%s d/dx", what);
  assert_gradients_sided(label, ax, c, l, r, nx, atol);
  free(ax), free(c), free(l), free(r);
  return ana;
}

/* x [2, 3, 3] -> conv 3x3 pad 1 (4 channels) = a -> add(a, a) -> relu ->
 * avgpool -> fc: the join reads one output twice, so a's gradient is the sum
 * of two equal halves. */
static void test_join_sums_gradients(void **state) {
  (void)state;
  enum { B = 3, C = 3 };
  fh_model *m = fh_model_begin("selfjoin", 2, 3, 3, C, B);
  const int a = fh_model_append_from(m, fh_layer_conv2d("conv", 2, 3, 3, 4, 3, 3, 1, 1, 1),
                                     FH_LAYER_MODEL_INPUT);
  fh_model_append_join(m, fh_layer_add("add", 4, 3, 3), a, a);
  fh_model_append(m, fh_layer_relu("relu", 4, 3, 3));
  fh_model_append(m, fh_layer_adaptive_avgpool1("avgpool", 4, 3, 3));
  fh_model_append(m, fh_layer_linear("fc", 4, C));
  assert_int_equal(fh_model_finish(m), 0);
  fh_rng init;
  fh_rng_init(&init, 11, FH_RNG_INIT, FH_RNG_NONE, FH_RNG_NONE);
  fh_model_init(m, &init);
  float x[B * 18];
  fh_rng_normal_fill(&g_rng, x, B * 18, 0.0f, 1.0f);
  const int32_t y[B] = {2, 0, 1};
  double *ana = gradcheck_model("self-join", m, x, y, B, 2e-3f, 5e-4);
  /* The negative control: the conv's gradient with one reader's share lost. */
  const fh_param_view *w = fh_model_find_view(m, "conv.weight");
  double c[4 * 2 * 9], l[4 * 2 * 9], r[4 * 2 * 9];
  loss_problem J = {m, x, y, B};
  gradcheck_numeric_sided(fh_model_params(m) + w->offset, w->numel, 2e-3f, loss_objective, &J, c,
                          l, r);
  assert_true(gradcheck_compare_sided(ana + w->offset, c, l, r, w->numel, 0.5, 5e-4).bad > 0);
  free(ana);
  fh_model_free(m);
}

/* Appends conv (no bias) + BatchNorm reading src; returns the BatchNorm. */
static int conv_bn(fh_model *m, int src, const char *name, int in_c, int hw, int out_c, int k,
                   int stride, int pad) {
  char c[32], b[32];
  snprintf(c, sizeof c, "%s.conv", name), snprintf(b, sizeof b, "%s.bn", name);
  fh_layer conv = fh_layer_conv2d(c, in_c, hw, hw, out_c, k, k, stride, pad, 0);
  const int i = fh_model_append_from(m, conv, src);
  const int *o = fh_model_layer(m, i)->out_shape;
  return fh_model_append_from(m, fh_layer_batchnorm2d(b, o[0], o[1], o[2]), i);
}

/* A BasicBlock as the zoo builds it; proj: the 1x1 projection shortcut. */
static int block(fh_model *m, const char *p, int src, int in_c, int hw, int planes, int stride) {
  char n[32];
  snprintf(n, sizeof n, "%s.1", p);
  int a = conv_bn(m, src, n, in_c, hw, planes, 3, stride, 1);
  const int *o = fh_model_layer(m, a)->out_shape;
  const int ohw = o[1];
  snprintf(n, sizeof n, "%s.relu1", p);
  a = fh_model_append_from(m, fh_layer_relu(n, planes, ohw, ohw), a);
  snprintf(n, sizeof n, "%s.2", p);
  a = conv_bn(m, a, n, planes, ohw, planes, 3, 1, 1);
  int s = src;
  if (stride != 1 || in_c != planes) {
    snprintf(n, sizeof n, "%s.down", p);
    s = conv_bn(m, src, n, in_c, hw, planes, 1, stride, 0);
  }
  snprintf(n, sizeof n, "%s.add", p);
  a = fh_model_append_join(m, fh_layer_add(n, planes, ohw, ohw), a, s);
  snprintf(n, sizeof n, "%s.relu2", p);
  return fh_model_append_from(m, fh_layer_relu(n, planes, ohw, ohw), a);
}

/* x [2, 4, 4] -> stem conv-bn-relu (3 channels) -> block with projection
 * (4 channels, stride 2) -> block with identity -> avgpool -> fc. Small, so
 * that the ReLUs' kinks (every unit's, since BatchNorm couples them all) lie
 * far enough apart for the quotients. */
static void test_basic_block_gradients(void **state) {
  (void)state;
  enum { B = 2, C = 3 };
  fh_model *m = fh_model_begin("tinyres", 2, 4, 4, C, B);
  int x0 = conv_bn(m, FH_LAYER_MODEL_INPUT, "stem", 2, 4, 3, 3, 1, 1);
  x0 = fh_model_append_from(m, fh_layer_relu("stem.relu", 3, 4, 4), x0);
  x0 = block(m, "b1", x0, 3, 4, 4, 2);
  const fh_layer *last = fh_model_layer(m, x0);
  assert_int_equal(last->out_shape[1], 2);
  x0 = block(m, "b2", x0, 4, 2, 4, 1);
  x0 = fh_model_append_from(m, fh_layer_adaptive_avgpool1("avgpool", 4, 2, 2), x0);
  fh_model_append_from(m, fh_layer_linear("fc", 4, C), x0);
  assert_int_equal(fh_model_finish(m), 0);
  /* The projection exists in b1 only; b2's join reads b1's output. */
  assert_non_null(fh_model_find_view(m, "b1.down.conv.weight"));
  assert_null(fh_model_find_view(m, "b2.down.conv.weight"));
  fh_rng init;
  fh_rng_init(&init, 12, FH_RNG_INIT, FH_RNG_NONE, FH_RNG_NONE);
  fh_model_init(m, &init);
  float x[B * 32];
  fh_rng_normal_fill(&g_rng, x, B * 32, 0.0f, 1.0f);
  const int32_t y[B] = {1, 2};
  free(gradcheck_model("two BasicBlocks", m, x, y, B, 1e-3f, 4e-4));
  fh_model_free(m);
}

/* ---- the stem's max pool ---------------------------------------------------------------- */

/* PyTorch's loop, as plainly as it reads: every window row by row, v taken
 * when v > max or v is NaN, padding never. */
static void maxpool_reference(float *y, int32_t *am, const float *x, int planes,
                              const fh_pool2d_geom *g) {
  for (int pl = 0; pl < planes; pl++)
    for (int oh = 0; oh < g->out_h; oh++)
      for (int ow = 0; ow < g->out_w; ow++) {
        float m = -INFINITY;
        int best = -1;
        for (int ki = 0; ki < g->kernel; ki++)
          for (int kj = 0; kj < g->kernel; kj++) {
            const int ih = oh * g->stride - g->padding + ki, iw = ow * g->stride - g->padding + kj;
            if (ih < 0 || ih >= g->h || iw < 0 || iw >= g->w) continue;
            const float v = x[(size_t)pl * g->h * g->w + ih * g->w + iw];
            if (best < 0) best = ih * g->w + iw;
            if (v > m || isnan(v)) m = v, best = ih * g->w + iw;
          }
        y[(size_t)pl * g->out_h * g->out_w + oh * g->out_w + ow] = m;
        am[(size_t)pl * g->out_h * g->out_w + oh * g->out_w + ow] = best;
      }
}

/* The ResNets' 3x3 stride-2 pad-1 pool (and a stride-1 one) on planes wide
 * enough for its separable path, on ReLU-like data full of ties, with NaNs
 * and -inf: the same maxima and the same winners as the plain loop. */
static void test_maxpool_windows(void **state) {
  (void)state;
  const int geo[][4] = {{16, 3, 2, 1}, {18, 3, 2, 1}, {17, 3, 1, 1}, {20, 4, 2, 1}, {7, 3, 2, 1}};
  for (size_t c = 0; c < sizeof geo / sizeof geo[0]; c++) {
    fh_pool2d_geom g;
    assert_int_equal(fh_pool2d_geometry(&g, 3, geo[c][0], geo[c][0], geo[c][1], geo[c][2], geo[c][3]), 0);
    const int B = 2, planes = B * 3;
    const size_t n = (size_t)planes * g.h * g.w, no = (size_t)planes * g.out_h * g.out_w;
    float *x = malloc(n * sizeof(float)), *y = malloc(no * sizeof(float)), *yr = malloc(no * sizeof(float));
    int32_t *am = malloc(no * sizeof(int32_t)), *ar = malloc(no * sizeof(int32_t));
    fh_rng_normal_fill(&g_rng, x, n, 0.0f, 1.0f);
    for (size_t i = 0; i < n; i++) {
      x[i] = x[i] < 0.0f ? 0.0f : roundf(4.0f * x[i]) / 4.0f; /* zeros and ties */
      if (i % 97 == 5) x[i] = NAN;
      if (i % 89 == 7) x[i] = -INFINITY;
    }
    fh_maxpool2d_forward(y, am, x, B, &g);
    maxpool_reference(yr, ar, x, planes, &g);
    for (size_t i = 0; i < no; i++) {
      if (!(y[i] == yr[i] || (isnan(y[i]) && isnan(yr[i]))) || am[i] != ar[i])
        fail_msg("maxpool %d/%d/%d on %dx%d, output %zu: %g at %d, the loop %g at %d", g.kernel,
                 g.stride, g.padding, g.h, g.w, i, (double)y[i], am[i], (double)yr[i], ar[i]);
    }
    free(x), free(y), free(yr), free(am), free(ar);
  }
}

/* ---- the model's other backward entry points -------------------------------------------------- */

static void test_backward_and_input_grad(void **state) {
  (void)state;
  enum { B = 2, C = 4 };
  fh_model *m;
  assert_int_equal(model_from_deck(&m, "resnet4", 3, 8, 8, C, B), 0);
  fh_rng init;
  fh_rng_init(&init, 13, FH_RNG_INIT, FH_RNG_NONE, FH_RNG_NONE);
  fh_model_init(m, &init);
  assert_null(fh_model_input_grad(m)); /* off by default */
  float x[B * 192];
  fh_rng_normal_fill(&g_rng, x, B * 192, 0.0f, 1.0f);
  const int32_t y[B] = {3, 1};
  const size_t n = fh_model_nparams(m);
  float *g1 = malloc(n * sizeof(float));
  fh_model_set_input_grad(m, 1);
  fh_model_loss_grad(m, x, y, B);
  memcpy(g1, fh_model_grads(m), n * sizeof(float));
  float dx1[B * 192];
  memcpy(dx1, fh_model_input_grad(m), sizeof dx1);
  /* forward + the cross-entropy's gradient by hand + fh_model_backward: the
   * same gradients (the same kernels in the same order). */
  const float *z = fh_model_forward(m, x, B, 1);
  float dz[B * C];
  ce_grad(dz, z, y, B, C);
  fh_model_backward(m, x, dz, B);
  /* dz here is rounded from double, the library's from float: equal to
   * about 1e-7, which the backward carries over. */
  double gmax = 0.0, xmax = 0.0;
  for (size_t i = 0; i < n; i++) gmax = fmax(gmax, fabs(g1[i]));
  for (int i = 0; i < B * 192; i++) xmax = fmax(xmax, fabs(dx1[i]));
  for (size_t i = 0; i < n; i++)
    assert_float_equal(fh_model_grads(m)[i], g1[i], 1e-4 * (fabs(g1[i]) + 1e-2 * gmax));
  for (int i = 0; i < B * 192; i++)
    assert_float_equal(fh_model_input_grad(m)[i], dx1[i], 1e-4 * (fabs(dx1[i]) + 1e-2 * xmax));
  /* Off again: no input gradient, the parameter gradients unchanged. */
  fh_model_set_input_grad(m, 0);
  fh_model_loss_grad(m, x, y, B);
  assert_null(fh_model_input_grad(m));
  assert_memory_equal(fh_model_grads(m), g1, n * sizeof(float));
  free(g1);
  fh_model_free(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_layout_matches_torch),
      cmocka_unit_test(test_middle_layers),
      cmocka_unit_test(test_layer_table),
      cmocka_unit_test(test_flop_counts),
      cmocka_unit_test(test_deck_errors),
      cmocka_unit_test(test_add_layer),
      cmocka_unit_test(test_join_sums_gradients),
      cmocka_unit_test(test_basic_block_gradients),
      cmocka_unit_test(test_maxpool_windows),
      cmocka_unit_test(test_backward_and_input_grad),
      cmocka_unit_test(test_resnet4_matches_torch),
      cmocka_unit_test(test_resnet6_matches_torch),
      cmocka_unit_test(test_resnet8_matches_torch),
      cmocka_unit_test(test_resnet10_matches_torch),
      cmocka_unit_test(test_resnet18_matches_torch),
      cmocka_unit_test(test_vgg11_bn_matches_torch),
      cmocka_unit_test(test_vgg11_lips_layout),
      cmocka_unit_test(test_resnet8x4_matches_torch),
      cmocka_unit_test(test_resnet32x4_matches_torch),
  };
  return cmocka_run_group_tests(tests, setup_all, teardown_all);
}
