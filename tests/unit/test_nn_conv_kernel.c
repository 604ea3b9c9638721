/* The tiled convolution kernels (conv_kernel.c) against a direct convolution
 * summed in double, on geometries that take each tiling: row tiles with a
 * partial last tile, chunks of whole samples with a partial last chunk,
 * strides, padding and rectangular kernels; with and without bias and input
 * gradient. Also: the weight gradient accumulates, dx is overwritten, and the
 * layer dispatches to the kernels for large maps (same results as the
 * kernels called directly). The oneDNN path (conv_dnnl.c) against the same
 * reference on the same geometries, batches split into pieces, and its
 * reproducibility: the same call twice gives the same bits, and a sample's
 * forward and input gradient do not depend on the batch it is in (what
 * keeps results independent of the rank count). The 1x1 products
 * (conv1x1.c) against the same reference at strides 1, 2 and 3 on odd maps,
 * with and without bias, and the layer's dispatch to them. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gradcheck.h"
#include "layer_rig.h"

#include "core/rng.h"
#include "nn/conv1x1.h"
#include "nn/conv2d.h"
#include "nn/conv_dnnl.h"
#include "nn/conv_kernel.h"

static fh_rng g_rng;

static int setup_all(void **state) {
  (void)state;
  fh_rng_init(&g_rng, 20261207, FH_RNG_TEST, 0, 0);
  return 0;
}

/* Direct convolution in double with G groups (group k's outputs see input
 * channels [k C / G, (k + 1) C / G); W [O, C / G, kh, kw]): y, and for dy the
 * gradients. */
static void reference_groups(const fh_conv2d_geom *g, int G, int B, const float *x,
                             const float *W, const float *b, const float *dy, double *y,
                             double *dx, double *dW, double *db) {
  const int C = g->in_c, H = g->in_h, Wd = g->in_w, O = g->out_c, kh = g->kernel_h,
            kw = g->kernel_w, OH = g->out_h, OW = g->out_w, s = g->stride, p = g->padding;
  const int Cg = C / G, Og = O / G;
  memset(dx, 0, sizeof(double) * B * C * H * Wd);
  memset(dW, 0, sizeof(double) * O * Cg * kh * kw);
  memset(db, 0, sizeof(double) * O);
  for (int n = 0; n < B; n++)
    for (int o = 0; o < O; o++)
      for (int oh = 0; oh < OH; oh++)
        for (int ow = 0; ow < OW; ow++) {
          const size_t yi = (((size_t)n * O + o) * OH + oh) * OW + ow;
          double acc = b ? b[o] : 0.0;
          const double d = dy[yi];
          db[o] += d;
          for (int c = 0; c < Cg; c++)
            for (int i = 0; i < kh; i++)
              for (int j = 0; j < kw; j++) {
                const int ih = oh * s - p + i, iw = ow * s - p + j;
                if (ih < 0 || ih >= H || iw < 0 || iw >= Wd) continue;
                const size_t xi = (((size_t)n * C + o / Og * Cg + c) * H + ih) * Wd + iw;
                const size_t wi = (((size_t)o * Cg + c) * kh + i) * kw + j;
                acc += (double)W[wi] * x[xi];
                dW[wi] += d * x[xi];
                dx[xi] += d * W[wi];
              }
          y[yi] = acc;
        }
}

static void reference(const fh_conv2d_geom *g, int B, const float *x, const float *W,
                      const float *b, const float *dy, double *y, double *dx, double *dW,
                      double *db) {
  reference_groups(g, 1, B, x, W, b, dy, y, dx, dW, db);
}

static void expect_close(const char *what, const float *got, const double *want, size_t n,
                         double offset) {
  double scale = 0.0, err = 0.0;
  for (size_t i = 0; i < n; i++) {
    if (fabs(want[i] + offset) > scale) scale = fabs(want[i] + offset);
    const double e = fabs(got[i] - (want[i] + offset));
    if (e > err) err = e;
  }
  if (err > 1e-5 * scale + 1e-6) {
    fprintf(stderr, "%s: max error %.3g (scale %.3g)\n", what, err, scale);
    fail();
  }
}

static void check(const char *name, int C, int H, int W, int O, int kh, int kw, int stride,
                  int pad, int B, int bias, int want_chunk, int want_rows_partial) {
  fh_conv2d_geom g;
  assert_int_equal(fh_conv2d_geometry(&g, C, H, W, O, kh, kw, stride, pad), 0);
  const fh_conv_tiling t = fh_conv_kernel_tiling(&g);
  if (want_chunk) { /* whole samples, the batch not a multiple of the chunk */
    assert_true(t.chunk > 1);
    assert_true(B % t.chunk != 0);
  } else {
    assert_int_equal(t.chunk, 1);
    if (want_rows_partial) assert_true(t.rows < g.out_h && g.out_h % t.rows != 0);
  }
  const size_t xs = (size_t)B * C * H * W, ys = (size_t)B * O * g.out_h * g.out_w,
               ws = (size_t)O * C * kh * kw;
  float *x = malloc(xs * 4), *Wt = malloc(ws * 4), *bb = malloc((size_t)O * 4);
  float *y = malloc(ys * 4), *dy = malloc(ys * 4), *dx = malloc(xs * 4), *dW = malloc(ws * 4);
  float *db = malloc((size_t)O * 4), *work = malloc(fh_conv_kernel_workspace(&g) * 4);
  double *ry = malloc(ys * 8), *rdx = malloc(xs * 8), *rdW = malloc(ws * 8), *rdb = malloc(O * 8);
  fh_rng_normal_fill(&g_rng, x, xs, 0.0f, 1.0f);
  fh_rng_normal_fill(&g_rng, Wt, ws, 0.0f, 0.2f);
  fh_rng_normal_fill(&g_rng, bb, (size_t)O, 0.0f, 0.5f);
  fh_rng_normal_fill(&g_rng, dy, ys, 0.0f, 1.0f);
  reference(&g, B, x, Wt, bias ? bb : NULL, dy, ry, rdx, rdW, rdb);
  char what[128];
  fh_conv_kernel_forward(y, work, x, Wt, bias ? bb : NULL, B, &g);
  snprintf(what, sizeof what, "%s y", name);
  expect_close(what, y, ry, ys, 0.0);
  /* dW and db accumulate onto 1; dx is overwritten over garbage */
  for (size_t i = 0; i < ws; i++) dW[i] = 1.0f;
  for (int o = 0; o < O; o++) db[o] = 1.0f;
  for (size_t i = 0; i < xs; i++) dx[i] = 1e30f;
  fh_conv_kernel_backward(dx, dW, bias ? db : NULL, work, dy, x, Wt, B, &g);
  snprintf(what, sizeof what, "%s dx", name);
  expect_close(what, dx, rdx, xs, 0.0);
  snprintf(what, sizeof what, "%s dW", name);
  expect_close(what, dW, rdW, ws, 1.0);
  if (bias) {
    snprintf(what, sizeof what, "%s db", name);
    expect_close(what, db, rdb, (size_t)O, 1.0);
  }
  /* without dx: the same weight gradient, bit for bit */
  float *dW2 = malloc(ws * 4);
  for (size_t i = 0; i < ws; i++) dW2[i] = 1.0f;
  fh_conv_kernel_backward(NULL, dW2, NULL, work, dy, x, Wt, B, &g);
  assert_memory_equal(dW, dW2, ws * 4);
  free(dW2);
  free(x), free(Wt), free(bb), free(y), free(dy), free(dx), free(dW), free(db), free(work);
  free(ry), free(rdx), free(rdW), free(rdb);
}

static void test_row_tiles(void **state) {
  (void)state;
  check("rows 3x3 p1", 64, 24, 24, 8, 3, 3, 1, 1, 2, 1, 0, 1);
  check("rows 5x5 s2 p2", 32, 40, 38, 5, 5, 5, 2, 2, 2, 0, 0, 1);
  check("rows 3x5 s2 p1", 96, 33, 30, 4, 3, 5, 2, 1, 1, 1, 0, 1);
  check("one tile 5x5", 3, 32, 32, 16, 5, 5, 1, 0, 3, 1, 0, 0);
  check("two samples 7x7 s2 p3", 3, 32, 32, 8, 7, 7, 2, 3, 3, 0, 1, 0);
}

static void test_chunks(void **state) {
  (void)state;
  check("chunk 3x3 p1", 4, 10, 10, 6, 3, 3, 1, 1, 8, 1, 1, 0);
  check("chunk 5x5", 3, 12, 12, 5, 5, 5, 1, 0, 7, 0, 1, 0);
  check("chunk 1x1 s2", 8, 16, 17, 4, 1, 1, 2, 0, 11, 1, 1, 0);
}

/* 1x1 products: forward, dx over garbage (zeros between the sampled
 * positions), dW and db accumulating onto 1, and dW alone without dx. */
static void check_1x1(const char *name, int C, int H, int W, int O, int stride, int B,
                      int bias) {
  fh_conv2d_geom g;
  assert_int_equal(fh_conv2d_geometry(&g, C, H, W, O, 1, 1, stride, 0), 0);
  assert_true(fh_conv1x1_applies(&g));
  const size_t xs = (size_t)B * C * H * W, ys = (size_t)B * O * g.out_h * g.out_w,
               ws = (size_t)O * C, nw = fh_conv1x1_workspace(&g);
  float *x = malloc(xs * 4), *Wt = malloc(ws * 4), *bb = malloc((size_t)O * 4);
  float *y = malloc(ys * 4), *dy = malloc(ys * 4), *dx = malloc(xs * 4), *dW = malloc(ws * 4);
  float *db = malloc((size_t)O * 4), *work = nw ? malloc(nw * 4) : NULL, *dW2 = malloc(ws * 4);
  double *ry = malloc(ys * 8), *rdx = malloc(xs * 8), *rdW = malloc(ws * 8), *rdb = malloc(O * 8);
  fh_rng_normal_fill(&g_rng, x, xs, 0.0f, 1.0f);
  fh_rng_normal_fill(&g_rng, Wt, ws, 0.0f, 0.2f);
  fh_rng_normal_fill(&g_rng, bb, (size_t)O, 0.0f, 0.5f);
  fh_rng_normal_fill(&g_rng, dy, ys, 0.0f, 1.0f);
  reference(&g, B, x, Wt, bias ? bb : NULL, dy, ry, rdx, rdW, rdb);
  char what[128];
  fh_conv1x1_forward(y, work, x, Wt, bias ? bb : NULL, B, &g);
  snprintf(what, sizeof what, "%s y", name);
  expect_close(what, y, ry, ys, 0.0);
  for (size_t i = 0; i < ws; i++) dW[i] = dW2[i] = 1.0f;
  for (int o = 0; o < O; o++) db[o] = 1.0f;
  for (size_t i = 0; i < xs; i++) dx[i] = 1e30f;
  fh_conv1x1_backward(dx, dW, bias ? db : NULL, work, dy, x, Wt, B, &g);
  snprintf(what, sizeof what, "%s dx", name);
  expect_close(what, dx, rdx, xs, 0.0);
  snprintf(what, sizeof what, "%s dW", name);
  expect_close(what, dW, rdW, ws, 1.0);
  if (bias) {
    snprintf(what, sizeof what, "%s db", name);
    expect_close(what, db, rdb, (size_t)O, 1.0);
  }
  fh_conv1x1_backward(NULL, dW2, NULL, work, dy, x, Wt, B, &g);
  assert_memory_equal(dW, dW2, ws * 4);
  free(x), free(Wt), free(bb), free(y), free(dy), free(dx), free(dW), free(db), free(work);
  free(dW2), free(ry), free(rdx), free(rdW), free(rdb);
}

static void test_1x1(void **state) {
  (void)state;
  check_1x1("1x1 s1", 12, 8, 9, 7, 1, 3, 1);
  check_1x1("1x1 s2 odd", 10, 17, 15, 6, 2, 3, 0);
  check_1x1("1x1 s2 bias", 9, 16, 16, 5, 2, 2, 1);
  check_1x1("1x1 s3", 5, 25, 26, 4, 3, 2, 1);
  /* padding, a larger kernel or a small map keep the other kernels */
  fh_conv2d_geom g;
  fh_conv2d_geometry(&g, 8, 16, 16, 8, 1, 1, 1, 1);
  assert_false(fh_conv1x1_applies(&g));
  fh_conv2d_geometry(&g, 8, 16, 16, 8, 3, 3, 1, 1);
  assert_false(fh_conv1x1_applies(&g));
  fh_conv2d_geometry(&g, 8, 15, 15, 8, 1, 1, 2, 0); /* 8x8: 64 positions */
  assert_true(fh_conv1x1_applies(&g));
  fh_conv2d_geometry(&g, 8, 14, 14, 8, 1, 1, 2, 0); /* 7x7 */
  assert_false(fh_conv1x1_applies(&g));
}

/* The layer on a large map runs the kernels (a fixed work space). */
static void test_layer_dispatch(void **state) {
  (void)state;
  assert_int_equal(fh_conv_backend_set(FH_CONV_PORTABLE), 0);
  fh_layer L = fh_layer_conv2d("conv", 3, 32, 32, 16, 5, 5, 1, 0, 1);
  fh_conv2d_geom g;
  fh_conv2d_geometry(&g, 3, 32, 32, 16, 5, 5, 1, 0);
  assert_true(fh_conv_kernel_applies(&g));
  assert_int_equal(L.scratch_per_sample, 0);
  assert_int_equal(L.scratch_fixed, fh_conv_kernel_workspace(&g));
  rig r = rig_make(L, 3, &g_rng, 0);
  fh_rng_normal_fill(&g_rng, r.params, r.np, 0.0f, 0.2f);
  fh_rng_normal_fill(&g_rng, r.x, (size_t)r.B * r.L.in_size, 0.0f, 1.0f);
  rig_forward(&r);
  float *y = malloc((size_t)r.B * L.out_size * 4), *work = malloc(L.scratch_fixed * 4);
  fh_conv_kernel_forward(y, work, r.x, r.params + r.L.param[0].offset, r.params + r.L.param[1].offset,
                         r.B, &g);
  assert_memory_equal(y, r.y, (size_t)r.B * L.out_size * 4);
  free(y), free(work);
  rig_free(&r);
  /* gradients of the layer through the kernels, against finite differences */
  const int geo[][9] = {{2, 10, 10, 3, 3, 3, 1, 1, 1}, {2, 17, 16, 2, 5, 3, 2, 2, 0}};
  for (int k = 0; k < 2; k++) {
    const int *v = geo[k];
    fh_conv2d_geom gk;
    fh_conv2d_geometry(&gk, v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]);
    assert_true(fh_conv_kernel_applies(&gk));
    rig q = rig_make(fh_layer_conv2d("conv", v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8]),
                     2, &g_rng, 0);
    fh_rng_normal_fill(&g_rng, q.params, q.np, 0.0f, 0.5f);
    fh_rng_normal_fill(&g_rng, q.x, (size_t)q.B * q.L.in_size, 0.0f, 1.0f);
    gradcheck_layer(k ? "tiled conv 5x3 s2 p2" : "tiled conv 3x3 p1 bias", &q, 5e-2f, 1e-4, &g_rng);
    rig_free(&q);
  }
  fh_conv_backend_set(FH_CONV_AUTO);
}

/* ---- oneDNN ------------------------------------------------------------------ */

static void check_dnnl_groups(const char *name, int C, int H, int W, int O, int kh, int kw,
                              int stride, int pad, int B, int bias, int G) {
  fh_conv2d_geom g;
  assert_int_equal(fh_conv2d_geometry(&g, C, H, W, O, kh, kw, stride, pad), 0);
  const size_t xs = (size_t)B * C * H * W, ys = (size_t)B * O * g.out_h * g.out_w,
               ws = (size_t)O * (C / G) * kh * kw, x1 = (size_t)C * H * W,
               y1 = (size_t)O * g.out_h * g.out_w;
  float *x = malloc(xs * 4), *Wt = malloc(ws * 4), *bb = malloc((size_t)O * 4);
  float *y = malloc(ys * 4), *dy = malloc(ys * 4), *dx = malloc(xs * 4), *dW = malloc(ws * 4);
  float *db = malloc((size_t)O * 4), *y2 = malloc(ys * 4), *dx2 = malloc(xs * 4);
  float *dW2 = malloc(ws * 4), *db2 = malloc((size_t)O * 4);
  double *ry = malloc(ys * 8), *rdx = malloc(xs * 8), *rdW = malloc(ws * 8), *rdb = malloc(O * 8);
  fh_rng_normal_fill(&g_rng, x, xs, 0.0f, 1.0f);
  fh_rng_normal_fill(&g_rng, Wt, ws, 0.0f, 0.2f);
  fh_rng_normal_fill(&g_rng, bb, (size_t)O, 0.0f, 0.5f);
  fh_rng_normal_fill(&g_rng, dy, ys, 0.0f, 1.0f);
  reference_groups(&g, G, B, x, Wt, bias ? bb : NULL, dy, ry, rdx, rdW, rdb);
  char what[128];
  assert_int_equal(fh_conv_dnnl_forward(y, x, Wt, bias ? bb : NULL, B, &g, G), 0);
  snprintf(what, sizeof what, "oneDNN %s y", name);
  expect_close(what, y, ry, ys, 0.0);
  for (size_t i = 0; i < ws; i++) dW[i] = dW2[i] = 1.0f;
  for (int o = 0; o < O; o++) db[o] = db2[o] = 1.0f;
  for (size_t i = 0; i < xs; i++) dx[i] = 1e30f;
  assert_int_equal(fh_conv_dnnl_backward(dx, dW, bias ? db : NULL, dy, x, Wt, B, &g, G), 0);
  snprintf(what, sizeof what, "oneDNN %s dx", name);
  expect_close(what, dx, rdx, xs, 0.0);
  snprintf(what, sizeof what, "oneDNN %s dW", name);
  expect_close(what, dW, rdW, ws, 1.0);
  if (bias) {
    snprintf(what, sizeof what, "oneDNN %s db", name);
    expect_close(what, db, rdb, (size_t)O, 1.0);
  }
  /* the same calls again: the same bits (dW, db accumulate onto 1 again) */
  assert_int_equal(fh_conv_dnnl_forward(y2, x, Wt, bias ? bb : NULL, B, &g, G), 0);
  assert_memory_equal(y, y2, ys * 4);
  assert_int_equal(fh_conv_dnnl_backward(dx2, dW2, bias ? db2 : NULL, dy, x, Wt, B, &g, G), 0);
  assert_memory_equal(dx, dx2, xs * 4);
  assert_memory_equal(dW, dW2, ws * 4);
  if (bias) assert_memory_equal(db, db2, (size_t)O * 4);
  /* each sample alone: the same bits as within the batch */
  for (int n = 0; n < B; n++) {
    assert_int_equal(fh_conv_dnnl_forward(y2, x + n * x1, Wt, bias ? bb : NULL, 1, &g, G), 0);
    assert_memory_equal(y + n * y1, y2, y1 * 4);
    assert_int_equal(fh_conv_dnnl_backward(dx2, dW2, NULL, dy + n * y1, x + n * x1, Wt, 1, &g, G), 0);
    assert_memory_equal(dx + n * x1, dx2, x1 * 4);
  }
  free(x), free(Wt), free(bb), free(y), free(dy), free(dx), free(dW), free(db);
  free(y2), free(dx2), free(dW2), free(db2);
  free(ry), free(rdx), free(rdW), free(rdb);
}

static void check_dnnl(const char *name, int C, int H, int W, int O, int kh, int kw, int stride,
                       int pad, int B, int bias) {
  check_dnnl_groups(name, C, H, W, O, kh, kw, stride, pad, B, bias, 1);
}

static void test_onednn(void **state) {
  (void)state;
  if (!fh_conv_dnnl_built() || strcmp(fh_conv_backend_name(), "onednn")) skip();
  check_dnnl("3x3 p1", 64, 24, 24, 8, 3, 3, 1, 1, 2, 1);
  check_dnnl("5x5 s2 p2", 32, 40, 38, 5, 5, 5, 2, 2, 2, 0);
  check_dnnl("3x5 s2 p1", 96, 33, 30, 4, 3, 5, 2, 1, 1, 1);
  check_dnnl("first layer 5x5", 3, 32, 32, 16, 5, 5, 1, 0, 3, 1);
  check_dnnl("7x7 s2 p3", 3, 32, 32, 8, 7, 7, 2, 3, 3, 0);
  check_dnnl("small map 3x3 p1", 4, 10, 10, 6, 3, 3, 1, 1, 8, 1);
  check_dnnl("1x1 s2", 8, 16, 17, 4, 1, 1, 2, 0, 11, 1);
  check_dnnl("resnet 3x3 p1", 32, 8, 8, 32, 3, 3, 1, 1, 5, 0);
  /* above one piece (64 samples): a full piece and the rest */
  check_dnnl("pieces 3x3 p1", 6, 6, 6, 16, 3, 3, 1, 1, 70, 1);
  /* grouped and depthwise (conv2d_grouped.c's layer) */
  check_dnnl_groups("groups 2, 3x3 p1", 4, 9, 9, 6, 3, 3, 1, 1, 3, 1, 2);
  check_dnnl_groups("depthwise 3x3 s2 p1", 8, 12, 12, 8, 3, 3, 2, 1, 4, 0, 8);
  /* the layer through oneDNN, against finite differences */
  const int geo[][9] = {{2, 10, 10, 3, 3, 3, 1, 1, 1}, {2, 17, 16, 2, 5, 3, 2, 2, 0}};
  for (int k = 0; k < 2; k++) {
    const int *v = geo[k];
    rig q = rig_make(fh_layer_conv2d("conv", v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8]),
                     2, &g_rng, 0);
    fh_rng_normal_fill(&g_rng, q.params, q.np, 0.0f, 0.5f);
    fh_rng_normal_fill(&g_rng, q.x, (size_t)q.B * q.L.in_size, 0.0f, 1.0f);
    gradcheck_layer(k ? "oneDNN conv 5x3 s2 p2" : "oneDNN conv 3x3 p1 bias", &q, 5e-2f, 1e-4,
                    &g_rng);
    rig_free(&q);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_row_tiles),
      cmocka_unit_test(test_chunks),
      cmocka_unit_test(test_1x1),
      cmocka_unit_test(test_layer_dispatch),
      cmocka_unit_test(test_onednn),
  };
  return cmocka_run_group_tests(tests, setup_all, NULL);
}
