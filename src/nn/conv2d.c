/* Conv2d: im2col of the whole batch + one cblas_sgemm, col2im for the input
 * gradient. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/conv2d.h"
#include "nn/conv1x1.h"
#include "nn/conv_dnnl.h"
#include "nn/conv_kernel.h"

int fh_conv2d_geometry(fh_conv2d_geom *g, int in_c, int in_h, int in_w, int out_c, int kernel_h,
                       int kernel_w, int stride, int padding) {
  memset(g, 0, sizeof *g);
  g->in_c = in_c, g->in_h = in_h, g->in_w = in_w;
  g->out_c = out_c, g->kernel_h = kernel_h, g->kernel_w = kernel_w;
  g->stride = stride, g->padding = padding;
  if (in_c < 1 || in_h < 1 || in_w < 1 || out_c < 1 || kernel_h < 1 || kernel_w < 1 ||
      stride < 1 || padding < 0)
    return -1;
  if (in_h + 2 * padding < kernel_h || in_w + 2 * padding < kernel_w) return -1;
  g->out_h = (in_h + 2 * padding - kernel_h) / stride + 1;
  g->out_w = (in_w + 2 * padding - kernel_w) / stride + 1;
  return 0;
}

size_t fh_conv2d_cols_size(const fh_conv2d_geom *g) {
  return (size_t)g->in_c * g->kernel_h * g->kernel_w * (size_t)g->out_h * g->out_w;
}

/* Output columns [lo, hi) whose input column ow*stride - padding + kj lies
 * inside [0, in_w): the rest read padding. */
static void valid_range(const fh_conv2d_geom *g, int kj, int *lo, int *hi) {
  const int s = g->stride, first = g->padding - kj, last = g->in_w - 1 + g->padding - kj;
  int l = first <= 0 ? 0 : (first + s - 1) / s;
  int h = last < 0 ? 0 : last / s + 1;
  if (h > g->out_w) h = g->out_w;
  if (l > h) l = h;
  *lo = l, *hi = h;
}

void fh_im2col(float *cols, const float *x, const fh_conv2d_geom *g) {
  fh_im2col_ld(cols, (size_t)g->out_h * g->out_w, x, g);
}

void fh_im2col_ld(float *cols, size_t ld, const float *x, const fh_conv2d_geom *g) {
  const int H = g->in_h, W = g->in_w, OH = g->out_h, OW = g->out_w, s = g->stride;
  const size_t P = ld;
  float *row = cols;
  for (int c = 0; c < g->in_c; c++) {
    const float *xc = x + (size_t)c * H * W;
    for (int ki = 0; ki < g->kernel_h; ki++)
      for (int kj = 0; kj < g->kernel_w; kj++, row += P) {
        int lo, hi;
        valid_range(g, kj, &lo, &hi);
        for (int oh = 0; oh < OH; oh++) {
          float *out = row + (size_t)oh * OW;
          const int ih = oh * s - g->padding + ki;
          if (ih < 0 || ih >= H) {
            memset(out, 0, (size_t)OW * sizeof(float));
            continue;
          }
          const float *xr = xc + (size_t)ih * W;
          const int shift = kj - g->padding; /* input column of ow = ow s + shift */
          for (int ow = 0; ow < lo; ow++) out[ow] = 0.0f;
          if (s == 1)
            memcpy(out + lo, xr + lo + shift, (size_t)(hi - lo) * sizeof(float));
          else
            for (int ow = lo; ow < hi; ow++) out[ow] = xr[ow * s + shift];
          for (int ow = hi; ow < OW; ow++) out[ow] = 0.0f;
        }
      }
  }
}

void fh_col2im(float *dx, const float *cols, const fh_conv2d_geom *g) {
  fh_col2im_ld(dx, cols, (size_t)g->out_h * g->out_w, g);
}

void fh_col2im_ld(float *dx, const float *cols, size_t ld, const fh_conv2d_geom *g) {
  const int H = g->in_h, W = g->in_w, OH = g->out_h, OW = g->out_w, s = g->stride;
  const size_t P = ld;
  memset(dx, 0, (size_t)g->in_c * H * W * sizeof(float));
  const float *row = cols;
  for (int c = 0; c < g->in_c; c++) {
    float *dxc = dx + (size_t)c * H * W;
    for (int ki = 0; ki < g->kernel_h; ki++)
      for (int kj = 0; kj < g->kernel_w; kj++, row += P) {
        int lo, hi;
        valid_range(g, kj, &lo, &hi);
        const int shift = kj - g->padding;
        for (int oh = 0; oh < OH; oh++) {
          const int ih = oh * s - g->padding + ki;
          if (ih < 0 || ih >= H) continue;
          const float *in = row + (size_t)oh * OW;
          float *dr = dxc + (size_t)ih * W;
          if (s == 1) /* contiguous: vectorises */
            for (int ow = lo; ow < hi; ow++) dr[ow + shift] += in[ow];
          else
            for (int ow = lo; ow < hi; ow++) dr[ow * s + shift] += in[ow];
        }
      }
  }
}

void fh_conv2d_forward(float *y, float *cols, float *ybuf, int chunk, const float *x,
                       const float *W, const float *b, int B, const fh_conv2d_geom *g) {
  const int O = g->out_c, K = g->in_c * g->kernel_h * g->kernel_w, P = g->out_h * g->out_w;
  const size_t N = (size_t)B * P, in_size = (size_t)g->in_c * g->in_h * g->in_w;
  /* Chunk by chunk, so that a chunk's columns are still in cache when the
   * product reads them. */
  for (int n0 = 0; n0 < B; n0 += chunk) {
    const int c = B - n0 < chunk ? B - n0 : chunk;
    float *cn = cols + (size_t)n0 * P;
    for (int j = 0; j < c; j++)
      fh_im2col_ld(cn + (size_t)j * P, N, x + (size_t)(n0 + j) * in_size, g);
    if (chunk == 1) { /* y_n [O, P] (+)= W [O, K] cols_n [K, P], in place */
      float *yn = y + (size_t)n0 * O * P;
      if (b)
        for (int o = 0; o < O; o++)
          for (int p = 0; p < P; p++) yn[(size_t)o * P + p] = b[o];
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, O, P, K, 1.0f, W, K, cn, (int)N,
                  b ? 1.0f : 0.0f, yn, P);
      continue;
    }
    /* ybuf [O, c P] = W [O, K] cols [K, c P], then y [n, O, P] += bias */
    float *yb = ybuf + (size_t)n0 * P;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, O, c * P, K, 1.0f, W, K, cn, (int)N,
                0.0f, yb, (int)N);
    for (int j = 0; j < c; j++)
      for (int o = 0; o < O; o++) {
        const float *src = yb + (size_t)o * N + (size_t)j * P;
        float *dst = y + ((size_t)(n0 + j) * O + o) * P;
        const float bo = b ? b[o] : 0.0f;
        for (int p = 0; p < P; p++) dst[p] = src[p] + bo;
      }
  }
}

/* Sum of n floats in eight independent float lanes (so that it vectorises
 * without reassociation flags), the lanes and the tail added in double. */
static float row_sum(const float *v, int n) {
  float lane[8] = {0};
  int i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; l++) lane[l] += v[i + l];
  double sum = 0.0;
  for (int l = 0; l < 8; l++) sum += lane[l];
  for (; i < n; i++) sum += v[i];
  return (float)sum;
}

void fh_conv2d_backward(float *dx, float *dW, float *db, float *dcols, float *dybuf, int chunk,
                        const float *dy, const float *cols, const float *W, int B,
                        const fh_conv2d_geom *g) {
  const int O = g->out_c, K = g->in_c * g->kernel_h * g->kernel_w, P = g->out_h * g->out_w;
  const size_t N = (size_t)B * P, in_size = (size_t)g->in_c * g->in_h * g->in_w;
  if (chunk == 1) { /* wide samples: one product per sample, straight from dy */
    for (int n = 0; n < B; n++) {
      const float *cn = cols + (size_t)n * P, *dyn = dy + (size_t)n * O * P;
      /* dW [O, K] += dy_n [O, P] cols_n^T [P, K] */
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, O, K, P, 1.0f, dyn, P, cn, (int)N,
                  1.0f, dW, K);
      if (db)
        for (int o = 0; o < O; o++) db[o] += row_sum(dyn + (size_t)o * P, P);
      if (dx) { /* dcols [K, P] = W^T [K, O] dy_n [O, P], folded back onto the input */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, P, O, 1.0f, W, K, dyn, P, 0.0f,
                    dcols, P);
        fh_col2im(dx + (size_t)n * in_size, dcols, g);
      }
    }
    return;
  }
  /* dybuf [O, B, P] from dy [B, O, P] */
  for (int n = 0; n < B; n++)
    for (int o = 0; o < O; o++)
      memcpy(dybuf + (size_t)o * N + (size_t)n * P, dy + ((size_t)n * O + o) * P,
             (size_t)P * sizeof(float));
  if (db)
    for (int o = 0; o < O; o++) db[o] += row_sum(dybuf + (size_t)o * N, (int)N);
  /* dW [O, K] += dybuf [O, B P] cols^T [B P, K] */
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, O, K, (int)N, 1.0f, dybuf, (int)N, cols,
              (int)N, 1.0f, dW, K);
  if (!dx) return;
  /* chunk samples at a time: dcols [K, c P] = W^T [K, O] dybuf [O, c P],
   * folded back onto each sample's input */
  for (int n0 = 0; n0 < B; n0 += chunk) {
    const int c = B - n0 < chunk ? B - n0 : chunk;
    const size_t ld = (size_t)c * P;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, (int)ld, O, 1.0f, W, K,
                dybuf + (size_t)n0 * P, (int)N, 0.0f, dcols, (int)ld);
    for (int j = 0; j < c; j++)
      fh_col2im_ld(dx + (size_t)(n0 + j) * in_size, dcols + (size_t)j * P, ld, g);
  }
}

/* ---- the layer ---------------------------------------------------------------- */

/* iarg: kernel_h, kernel_w, stride, padding, bias (0/1), chunk. */
static fh_conv2d_geom layer_geom(const fh_layer *L) {
  fh_conv2d_geom g;
  fh_conv2d_geometry(&g, L->in_shape[0], L->in_shape[1], L->in_shape[2], L->out_shape[0],
                     L->iarg[0], L->iarg[1], L->iarg[2], L->iarg[3]);
  return g;
}

/* Scratch: dcols [K, chunk P] (scratch_fixed; chunk in iarg[5]), then cols
 * [K, B P] and, for chunks of several samples, ybuf [O, B P] (per sample
 * K P + O P); for the tiled kernels and 1x1 products, their fixed work
 * space alone. */
static void conv_forward(const fh_layer *L, const fh_layer_ctx *c, const float *x, float *y,
                         int B) {
  const fh_conv2d_geom g = layer_geom(L);
  const float *W = c->params + L->param[0].offset;
  const float *b = L->iarg[4] ? c->params + L->param[1].offset : NULL;
  if (fh_conv1x1_applies(&g)) { /* plain products (conv1x1.c) */
    fh_conv1x1_forward(y, c->scratch, x, W, b, B, &g);
    return;
  }
  if (fh_conv_dnnl_forward(y, x, W, b, B, &g, 1) == 0) return; /* oneDNN (conv_dnnl.c) */
  if (fh_conv_kernel_applies(&g)) { /* tiled kernels (conv_kernel.c) */
    fh_conv_kernel_forward(y, c->scratch, x, W, b, B, &g);
    return;
  }
  float *cols = c->scratch + L->scratch_fixed;
  float *ybuf = cols + (size_t)B * fh_conv2d_cols_size(&g);
  fh_conv2d_forward(y, cols, ybuf, L->iarg[5], x, W, b, B, &g);
}

static void conv_backward(const fh_layer *L, const fh_layer_ctx *c, const float *x,
                          const float *y, const float *dy, float *dx, int B) {
  (void)y;
  const fh_conv2d_geom g = layer_geom(L);
  if (fh_conv1x1_applies(&g)) { /* plain products (conv1x1.c) */
    fh_conv1x1_backward(dx, c->grads + L->param[0].offset,
                        L->iarg[4] ? c->grads + L->param[1].offset : NULL, c->scratch, dy, x,
                        c->params + L->param[0].offset, B, &g);
    return;
  }
  if (fh_conv_dnnl_backward(dx, c->grads + L->param[0].offset,
                            L->iarg[4] ? c->grads + L->param[1].offset : NULL, dy, x,
                            c->params + L->param[0].offset, B, &g, 1) == 0)
    return; /* oneDNN (conv_dnnl.c) */
  if (fh_conv_kernel_applies(&g)) { /* tiled kernels (conv_kernel.c) */
    fh_conv_kernel_backward(dx, c->grads + L->param[0].offset,
                            L->iarg[4] ? c->grads + L->param[1].offset : NULL, c->scratch, dy, x,
                            c->params + L->param[0].offset, B, &g);
    return;
  }
  const float *cols = c->scratch + L->scratch_fixed;
  float *ybuf = c->scratch + L->scratch_fixed + (size_t)B * fh_conv2d_cols_size(&g);
  fh_conv2d_backward(dx, c->grads + L->param[0].offset,
                     L->iarg[4] ? c->grads + L->param[1].offset : NULL, c->scratch, ybuf,
                     L->iarg[5], dy, cols, c->params + L->param[0].offset, B, &g);
}

/* nn.Conv2d.reset_parameters: kaiming_uniform_(W, a=sqrt(5)) is
 * U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = C kh kw; the bias has the
 * same bound. FH_INIT_KAIMING_FAN_OUT (the ResNets and VGG):
 * kaiming_normal_(W, mode='fan_out', nonlinearity='relu'), N(0, 2 / fan_out)
 * with fan_out = O kh kw, and a zero bias. */
void fh_conv2d_init(const fh_layer *L, float *params, float *buffers, fh_rng *r) {
  (void)buffers;
  if (L->init_kind == FH_INIT_KAIMING_FAN_OUT) {
    const double fan_out = (double)L->out_shape[0] * L->iarg[0] * L->iarg[1];
    fh_rng_normal_fill(r, params + L->param[0].offset, L->param[0].numel, 0.0f,
                       (float)sqrt(2.0 / fan_out));
    if (L->nparams > 1) memset(params + L->param[1].offset, 0, L->param[1].numel * sizeof(float));
    return;
  }
  const double bound = 1.0 / sqrt((double)L->fan_in);
  for (int k = 0; k < L->nparams; k++) {
    float *p = params + L->param[k].offset;
    for (size_t i = 0; i < L->param[k].numel; i++)
      p[i] = (float)((2.0 * fh_rng_uniform(r) - 1.0) * bound);
  }
}

/* One GEMM of O x K x P per sample. */
static double conv_gemm_flops(const fh_layer *L, int B) {
  const fh_conv2d_geom g = layer_geom(L);
  return 2.0 * B * (double)g.out_c * (double)fh_conv2d_cols_size(&g);
}

static double conv_flops_forward(const fh_layer *L, int B) { return conv_gemm_flops(L, B); }

static double conv_flops_backward(const fh_layer *L, int B) {
  /* dW always; dx only when there is a layer below to receive it. */
  return (L->input >= 0 ? 2.0 : 1.0) * conv_gemm_flops(L, B);
}

static void conv_describe(const fh_layer *L, char *buf, size_t cap) {
  /* As PyTorch prints the module. */
  const int n = snprintf(buf, cap, "Conv2d(%d, %d, kernel_size=(%d, %d), stride=(%d, %d)",
                         L->in_shape[0], L->out_shape[0], L->iarg[0], L->iarg[1], L->iarg[2],
                         L->iarg[2]);
  if (n < 0 || (size_t)n >= cap) return;
  size_t used = (size_t)n;
  if (L->iarg[3]) {
    const int m = snprintf(buf + used, cap - used, ", padding=(%d, %d)", L->iarg[3], L->iarg[3]);
    if (m < 0 || (size_t)m >= cap - used) return;
    used += (size_t)m;
  }
  snprintf(buf + used, cap - used, "%s)", L->iarg[4] ? "" : ", bias=False");
}

static const fh_layer_ops conv_ops = {
    .kind_name = "Conv2d",
    .forward = conv_forward,
    .backward = conv_backward,
    .init = fh_conv2d_init,
    .flops_forward = conv_flops_forward,
    .flops_backward = conv_flops_backward,
    .describe = conv_describe,
};

fh_layer fh_layer_conv2d(const char *name, int in_c, int in_h, int in_w, int out_c, int kernel_h,
                         int kernel_w, int stride, int padding, int bias) {
  fh_conv2d_geom g;
  if (fh_conv2d_geometry(&g, in_c, in_h, in_w, out_c, kernel_h, kernel_w, stride, padding)) {
    fprintf(stderr,
            "fedhpc: internal error: conv layer '%s': kernel %dx%d, stride %d, padding %d "
            "cannot apply to input [%d, %d, %d] with %d output channels\n",
            name, kernel_h, kernel_w, stride, padding, in_c, in_h, in_w, out_c);
    abort();
  }
  fh_layer L;
  memset(&L, 0, sizeof L);
  L.kind = FH_LAYER_CONV2D;
  L.ops = &conv_ops;
  snprintf(L.name, sizeof L.name, "%s", name);
  L.input = -1;
  L.in_shape[0] = in_c, L.in_shape[1] = in_h, L.in_shape[2] = in_w;
  L.out_shape[0] = out_c, L.out_shape[1] = g.out_h, L.out_shape[2] = g.out_w;
  L.in_size = (size_t)in_c * in_h * in_w;
  L.out_size = (size_t)out_c * g.out_h * g.out_w;
  L.nparams = bias ? 2 : 1;
  fh_view_set(&L.param[0], name, "weight", 4, (const int[]){out_c, in_c, kernel_h, kernel_w});
  if (bias) fh_view_set(&L.param[1], name, "bias", 1, (const int[]){out_c});
  /* The products cover chunk samples at a time, at least
   * FH_CONV2D_CHUNK_COLUMNS output positions: wide enough for sgemm to run
   * near its peak, small enough for the chunk's columns to stay in cache. */
  const int P = g.out_h * g.out_w;
  const int chunk = P >= FH_CONV2D_CHUNK_COLUMNS ? 1 : (FH_CONV2D_CHUNK_COLUMNS + P - 1) / P;
  L.scratch_fixed = fh_conv2d_cols_size(&g) * (size_t)chunk;
  L.scratch_per_sample = fh_conv2d_cols_size(&g) + (chunk > 1 ? (size_t)out_c * P : 0);
  if (fh_conv_kernel_applies(&g)) /* a fixed work space, whatever the batch */
    L.scratch_fixed = fh_conv_kernel_workspace(&g), L.scratch_per_sample = 0;
  if (fh_conv1x1_applies(&g)) /* 1x1: per-sample products (conv1x1.c) */
    L.scratch_fixed = fh_conv1x1_workspace(&g), L.scratch_per_sample = 0;
  L.fan_in = in_c * kernel_h * kernel_w;
  L.iarg[0] = kernel_h, L.iarg[1] = kernel_w, L.iarg[2] = stride, L.iarg[3] = padding;
  L.iarg[4] = bias ? 1 : 0;
  L.iarg[5] = chunk;
  return L;
}
