/* Tiled im2col + sgemm convolution (see conv_kernel.h). */
#include "nn/conv_kernel.h"

#include <cblas.h>
#include <string.h>

/* Columns of one tile: K x cols floats, at most this many (1 MiB), so that
 * they stay in a core's L2 cache (2 MiB on the machines measured) between the
 * im2col that writes them and the products that read them. */
#ifndef TILE_FLOATS
#define TILE_FLOATS (256 * 1024)
#endif
/* Output positions a tile should reach when a sample has fewer: narrower
 * products run well below sgemm's peak. */
#ifndef TILE_MIN_COLS
#define TILE_MIN_COLS 512
#endif

int fh_conv_kernel_applies(const fh_conv2d_geom *g) {
  return g->out_h * g->out_w >= FH_CONV_KERNEL_MIN_POSITIONS;
}

fh_conv_tiling fh_conv_kernel_tiling(const fh_conv2d_geom *g) {
  const size_t K = (size_t)g->in_c * g->kernel_h * g->kernel_w;
  const size_t P = (size_t)g->out_h * g->out_w;
  fh_conv_tiling t = {1, g->out_h, P};
  if (K * P <= TILE_FLOATS) { /* whole samples: as many as fit, enough to be wide */
    size_t c = (TILE_MIN_COLS + P - 1) / P;
    while (c > 1 && K * P * c > TILE_FLOATS) c--;
    t.chunk = (int)c;
    t.cols = c * P;
    return t;
  }
  /* rows of one sample, at least one (then the tile exceeds the budget) */
  size_t r = TILE_FLOATS / (K * (size_t)g->out_w);
  if (r < 1) r = 1;
  if (r > (size_t)g->out_h) r = (size_t)g->out_h;
  t.rows = (int)r;
  t.cols = r * (size_t)g->out_w;
  return t;
}

size_t fh_conv_kernel_workspace(const fh_conv2d_geom *g) {
  const fh_conv_tiling t = fh_conv_kernel_tiling(g);
  const size_t K = (size_t)g->in_c * g->kernel_h * g->kernel_w;
  /* cols [K, T], dcols [K, T], ybuf / dybuf [O, T] */
  return (2 * K + (size_t)g->out_c) * t.cols;
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

/* Output rows [oh0, oh1) of sample x [C, H, W] -> cols [K, (oh1 - oh0) OW],
 * row k at cols + k ld. */
static void im2col_rows(float *cols, size_t ld, const float *x, const fh_conv2d_geom *g, int oh0,
                        int oh1) {
  const int H = g->in_h, W = g->in_w, OW = g->out_w, s = g->stride;
  float *row = cols;
  for (int c = 0; c < g->in_c; c++) {
    const float *xc = x + (size_t)c * H * W;
    for (int ki = 0; ki < g->kernel_h; ki++)
      for (int kj = 0; kj < g->kernel_w; kj++, row += ld) {
        int lo, hi;
        valid_range(g, kj, &lo, &hi);
        const int shift = kj - g->padding; /* input column of ow = ow s + shift */
        for (int oh = oh0; oh < oh1; oh++) {
          float *out = row + (size_t)(oh - oh0) * OW;
          const int ih = oh * s - g->padding + ki;
          if (ih < 0 || ih >= H) {
            memset(out, 0, (size_t)OW * sizeof(float));
            continue;
          }
          const float *xr = xc + (size_t)ih * W;
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

/* The reverse: dcols of output rows [oh0, oh1) added onto dx [C, H, W]. */
static void col2im_rows_add(float *dx, const float *cols, size_t ld, const fh_conv2d_geom *g,
                            int oh0, int oh1) {
  const int H = g->in_h, W = g->in_w, OW = g->out_w, s = g->stride;
  const float *row = cols;
  for (int c = 0; c < g->in_c; c++) {
    float *dxc = dx + (size_t)c * H * W;
    for (int ki = 0; ki < g->kernel_h; ki++)
      for (int kj = 0; kj < g->kernel_w; kj++, row += ld) {
        int lo, hi;
        valid_range(g, kj, &lo, &hi);
        const int shift = kj - g->padding;
        for (int oh = oh0; oh < oh1; oh++) {
          const int ih = oh * s - g->padding + ki;
          if (ih < 0 || ih >= H) continue;
          const float *in = row + (size_t)(oh - oh0) * OW;
          float *dr = dxc + (size_t)ih * W;
          if (s == 1) /* contiguous: vectorises */
            for (int ow = lo; ow < hi; ow++) dr[ow + shift] += in[ow];
          else
            for (int ow = lo; ow < hi; ow++) dr[ow * s + shift] += in[ow];
        }
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

void fh_conv_kernel_forward(float *y, float *ws, const float *x, const float *W, const float *b,
                            int B, const fh_conv2d_geom *g) {
  const fh_conv_tiling t = fh_conv_kernel_tiling(g);
  const int O = g->out_c, K = g->in_c * g->kernel_h * g->kernel_w, P = g->out_h * g->out_w;
  const int OW = g->out_w;
  const size_t in_size = (size_t)g->in_c * g->in_h * g->in_w, T = t.cols;
  float *cols = ws, *ybuf = ws + 2 * (size_t)K * T;
  if (t.chunk == 1) { /* tiles of rows, straight into y */
    for (int n = 0; n < B; n++) {
      float *yn = y + (size_t)n * O * P;
      const float *xn = x + (size_t)n * in_size;
      if (b)
        for (int o = 0; o < O; o++)
          for (int p = 0; p < P; p++) yn[(size_t)o * P + p] = b[o];
      for (int oh0 = 0; oh0 < g->out_h; oh0 += t.rows) {
        const int oh1 = oh0 + t.rows < g->out_h ? oh0 + t.rows : g->out_h;
        const int w = (oh1 - oh0) * OW;
        im2col_rows(cols, (size_t)w, xn, g, oh0, oh1);
        /* y_n [O, rows] (+)= W [O, K] cols [K, rows] */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, O, w, K, 1.0f, W, K, cols, w,
                    b ? 1.0f : 0.0f, yn + (size_t)oh0 * OW, P);
      }
    }
    return;
  }
  for (int n0 = 0; n0 < B; n0 += t.chunk) {
    const int c = B - n0 < t.chunk ? B - n0 : t.chunk;
    const int w = c * P;
    for (int j = 0; j < c; j++)
      im2col_rows(cols + (size_t)j * P, (size_t)w, x + (size_t)(n0 + j) * in_size, g, 0,
                  g->out_h);
    /* ybuf [O, c P] = W [O, K] cols [K, c P], then y [n, O, P] = ybuf + bias */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, O, w, K, 1.0f, W, K, cols, w, 0.0f,
                ybuf, w);
    for (int j = 0; j < c; j++)
      for (int o = 0; o < O; o++) {
        const float *src = ybuf + (size_t)o * w + (size_t)j * P;
        float *dst = y + ((size_t)(n0 + j) * O + o) * P;
        const float bo = b ? b[o] : 0.0f;
        for (int p = 0; p < P; p++) dst[p] = src[p] + bo;
      }
  }
}

void fh_conv_kernel_backward(float *dx, float *dW, float *db, float *ws, const float *dy,
                             const float *x, const float *W, int B, const fh_conv2d_geom *g) {
  const fh_conv_tiling t = fh_conv_kernel_tiling(g);
  const int O = g->out_c, K = g->in_c * g->kernel_h * g->kernel_w, P = g->out_h * g->out_w;
  const int OW = g->out_w;
  const size_t in_size = (size_t)g->in_c * g->in_h * g->in_w, T = t.cols;
  float *cols = ws, *dcols = ws + (size_t)K * T, *dybuf = ws + 2 * (size_t)K * T;
  if (db)
    for (int n = 0; n < B; n++)
      for (int o = 0; o < O; o++) db[o] += row_sum(dy + ((size_t)n * O + o) * P, P);
  if (t.chunk == 1) { /* tiles of rows, straight from dy */
    for (int n = 0; n < B; n++) {
      const float *dyn = dy + (size_t)n * O * P, *xn = x + (size_t)n * in_size;
      float *dxn = dx ? dx + (size_t)n * in_size : NULL;
      if (dxn) memset(dxn, 0, in_size * sizeof(float));
      for (int oh0 = 0; oh0 < g->out_h; oh0 += t.rows) {
        const int oh1 = oh0 + t.rows < g->out_h ? oh0 + t.rows : g->out_h;
        const int w = (oh1 - oh0) * OW;
        const float *dyt = dyn + (size_t)oh0 * OW;
        im2col_rows(cols, (size_t)w, xn, g, oh0, oh1);
        /* dW [O, K] += dy_n [O, rows] cols^T [rows, K] */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, O, K, w, 1.0f, dyt, P, cols, w,
                    1.0f, dW, K);
        if (!dxn) continue;
        /* dcols [K, rows] = W^T [K, O] dy_n [O, rows], added back onto the input */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, w, O, 1.0f, W, K, dyt, P, 0.0f,
                    dcols, w);
        col2im_rows_add(dxn, dcols, (size_t)w, g, oh0, oh1);
      }
    }
    return;
  }
  for (int n0 = 0; n0 < B; n0 += t.chunk) {
    const int c = B - n0 < t.chunk ? B - n0 : t.chunk;
    const int w = c * P;
    for (int j = 0; j < c; j++) {
      im2col_rows(cols + (size_t)j * P, (size_t)w, x + (size_t)(n0 + j) * in_size, g, 0,
                  g->out_h);
      for (int o = 0; o < O; o++) /* dybuf [O, c P] from dy [c, O, P] */
        memcpy(dybuf + (size_t)o * w + (size_t)j * P, dy + ((size_t)(n0 + j) * O + o) * P,
               (size_t)P * sizeof(float));
    }
    /* dW [O, K] += dybuf [O, c P] cols^T [c P, K] */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, O, K, w, 1.0f, dybuf, w, cols, w, 1.0f,
                dW, K);
    if (!dx) continue;
    /* dcols [K, c P] = W^T [K, O] dybuf [O, c P], folded back onto each input */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, w, O, 1.0f, W, K, dybuf, w, 0.0f,
                dcols, w);
    for (int j = 0; j < c; j++) {
      float *dxj = dx + (size_t)(n0 + j) * in_size;
      memset(dxj, 0, in_size * sizeof(float));
      col2im_rows_add(dxj, dcols + (size_t)j * P, (size_t)w, g, 0, g->out_h);
    }
  }
}
