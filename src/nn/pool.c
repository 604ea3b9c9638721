/* MaxPool2d, AvgPool2d and adaptive average pooling to 1x1. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/pool.h"

/* The max pool's argmax lives in the float scratch, one int32 per output. */
_Static_assert(sizeof(int32_t) == sizeof(float), "argmax shares the float scratch");

/* PyTorch's pooling_output_shape (dilation 1). */
static int out_size(int in, int kernel, int stride, int padding, int ceil_mode) {
  const int span = in + 2 * padding - kernel;
  int o = (ceil_mode ? (span + stride - 1) / stride : span / stride) + 1;
  if (ceil_mode && (o - 1) * stride >= in + padding) o--; /* the last window starts in the input */
  return o;
}

int fh_pool2d_geometry_ceil(fh_pool2d_geom *g, int c, int h, int w, int kernel, int stride,
                            int padding, int ceil_mode) {
  memset(g, 0, sizeof *g);
  g->c = c, g->h = h, g->w = w;
  g->kernel = kernel, g->stride = stride, g->padding = padding;
  g->ceil_mode = ceil_mode != 0;
  if (c < 1 || h < 1 || w < 1 || kernel < 1 || stride < 1 || padding < 0) return -1;
  if (2 * padding > kernel) return -1;
  if (h + 2 * padding < kernel || w + 2 * padding < kernel) return -1;
  g->out_h = out_size(h, kernel, stride, padding, g->ceil_mode);
  g->out_w = out_size(w, kernel, stride, padding, g->ceil_mode);
  return 0;
}

int fh_pool2d_geometry(fh_pool2d_geom *g, int c, int h, int w, int kernel, int stride,
                       int padding) {
  return fh_pool2d_geometry_ceil(g, c, h, w, kernel, stride, padding, 0);
}

/* AvgPool2d's divisor for output (oh, ow) (count_include_pad=True): the
 * window's extent clipped to the padded input, as PyTorch's avg_pool2d. */
static double avg_area(const fh_pool2d_geom *g, int oh, int ow) {
  const int hs = oh * g->stride - g->padding, ws = ow * g->stride - g->padding;
  int he = hs + g->kernel, we = ws + g->kernel;
  if (he > g->h + g->padding) he = g->h + g->padding;
  if (we > g->w + g->padding) we = g->w + g->padding;
  return (double)(he - hs) * (double)(we - ws);
}

/* The in-range part [*lo, *hi) of the window starting at o stride - padding. */
static void window(const fh_pool2d_geom *g, int o, int size, int *lo, int *hi) {
  const int start = o * g->stride - g->padding;
  const int end = start + g->kernel;
  *lo = start < 0 ? 0 : start;
  *hi = end > size ? size : end;
}

/* One step of PyTorch's max loop: (v, i) replaces the running maximum
 * (*m, *best) when v > *m or v is NaN (strict >: the first maximum stays;
 * NaN always wins). Selects through masks rather than branches, which random
 * data mispredicts half the time. The step also combines the results of two
 * consecutive runs of the loop (the later as (v, i)): the rule is
 * associative, so rows of a window can be scanned independently and then
 * combined in order, which shortens the chain of dependent steps. */
static inline void take_max(float v, int i, float *m, int *best) {
  const uint32_t mask = 0u - (uint32_t)((v > *m) | (v != v));
  uint32_t vb, mb;
  memcpy(&vb, &v, sizeof vb);
  memcpy(&mb, m, sizeof mb);
  mb = (vb & mask) | (mb & ~mask);
  memcpy(m, &mb, sizeof mb);
  *best = (int)(((uint32_t)i & mask) | ((uint32_t)*best & ~mask));
}

/* The maximum of the row of k = 2 or 3 elements starting at index i. */
static inline void row_max(const float *xp, int i, int k, float *m, int *best) {
  *m = xp[i], *best = i;
  take_max(xp[i + 1], i + 1, m, best);
  if (k == 3) take_max(xp[i + 2], i + 2, m, best);
}

/* Output columns [lo, hi) whose input column ow stride - padding + kj lies in
 * [0, w). */
static void valid_cols(const fh_pool2d_geom *g, int kj, int *lo, int *hi) {
  const int s = g->stride, first = g->padding - kj, last = g->w - 1 + g->padding - kj;
  int l = first <= 0 ? 0 : (first + s - 1) / s;
  int h = last < 0 ? 0 : last / s + 1;
  if (h > g->out_w) h = g->out_w;
  if (l > h) l = h;
  *lo = l, *hi = h;
}

/* Rows of the separable form kept on the stack: planes up to this many
 * input rows times output columns (the ResNet stems' 16x16 and 32x32). */
#define SEPARABLE_MAX 4096

/* The same loop, separably: each input row's maximum over every window's
 * columns first (rm, ri [H, OW]), then each output row combines its window's
 * rows in order; the rule is associative, and both passes run along whole
 * output rows, which vectorises. For windows of 3 and more, where the scan
 * per output is longest. */
static void maxpool_separable(float *y, int32_t *argmax, const float *x, int B,
                              const fh_pool2d_geom *g) {
  const int H = g->h, W = g->w, OH = g->out_h, OW = g->out_w, s = g->stride, k = g->kernel;
  float rm[SEPARABLE_MAX];
  int32_t ri[SEPARABLE_MAX];
  for (size_t pl = 0; pl < (size_t)B * g->c; pl++) {
    const float *xp = x + pl * (size_t)H * W;
    for (int ih = 0; ih < H; ih++) {
      float *restrict m = rm + (size_t)ih * OW;
      int32_t *restrict b = ri + (size_t)ih * OW;
      const float *restrict xr = xp + (size_t)ih * W;
      for (int ow = 0; ow < OW; ow++) {
        const int w0 = ow * s - g->padding;
        m[ow] = -INFINITY;
        b[ow] = ih * W + (w0 < 0 ? 0 : w0); /* the row's first element in range */
      }
      for (int kj = 0; kj < k; kj++) {
        int lo, hi;
        valid_cols(g, kj, &lo, &hi);
        const int shift = kj - g->padding;
        for (int ow = lo; ow < hi; ow++) {
          const float v = xr[ow * s + shift];
          const int take = (v > m[ow]) | (v != v);
          m[ow] = take ? v : m[ow];
          b[ow] = take ? ih * W + ow * s + shift : b[ow];
        }
      }
    }
    float *yp = y + pl * (size_t)OH * OW;
    int32_t *ap = argmax + pl * (size_t)OH * OW;
    for (int oh = 0; oh < OH; oh++) {
      int h0, h1;
      window(g, oh, H, &h0, &h1);
      float *restrict m = yp + (size_t)oh * OW;
      int32_t *restrict b = ap + (size_t)oh * OW;
      for (int ow = 0; ow < OW; ow++) m[ow] = -INFINITY, b[ow] = ri[(size_t)h0 * OW + ow];
      for (int ih = h0; ih < h1; ih++) {
        const float *restrict r = rm + (size_t)ih * OW;
        const int32_t *restrict q = ri + (size_t)ih * OW;
        for (int ow = 0; ow < OW; ow++) {
          const float v = r[ow];
          const int take = (v > m[ow]) | (v != v);
          m[ow] = take ? v : m[ow];
          b[ow] = take ? q[ow] : b[ow];
        }
      }
    }
  }
}

void fh_maxpool2d_forward(float *y, int32_t *argmax, const float *x, int B,
                          const fh_pool2d_geom *g) {
  if (g->kernel >= 3 && g->out_w >= 8 && (size_t)g->h * g->out_w <= SEPARABLE_MAX) {
    maxpool_separable(y, argmax, x, B, g);
    return;
  }
  const int H = g->h, W = g->w, OH = g->out_h, OW = g->out_w, k = g->kernel;
  const size_t plane = (size_t)H * W, oplane = (size_t)OH * OW;
  const int fast2 = k == 2 && g->stride == 2 && g->padding == 0 && 2 * OH <= H && 2 * OW <= W;
  for (size_t pl = 0; pl < (size_t)B * g->c; pl++) {
    const float *xp = x + pl * plane;
    float *yp = y + pl * oplane;
    int32_t *ap = argmax + pl * oplane;
    for (int oh = 0; oh < OH; oh++) {
      if (fast2) { /* 2x2 windows, stride 2, inside the input */
        const int r0 = 2 * oh * W, r1 = r0 + W;
        for (int ow = 0; ow < OW; ow++) {
          float m, m1;
          int best, b1;
          row_max(xp, r0 + 2 * ow, 2, &m, &best);
          row_max(xp, r1 + 2 * ow, 2, &m1, &b1);
          take_max(m1, b1, &m, &best);
          yp[oh * OW + ow] = m;
          ap[oh * OW + ow] = best;
        }
        continue;
      }
      int h0, h1;
      window(g, oh, H, &h0, &h1);
      for (int ow = 0; ow < OW; ow++) {
        int w0, w1;
        window(g, ow, W, &w0, &w1);
        float m = -INFINITY;
        int best = h0 * W + w0;
        if ((k == 2 || k == 3) && h1 - h0 == k && w1 - w0 == k) {
          /* a whole 2x2 or 3x3 window: rows scanned apart, then combined */
          float m1, m2 = 0.0f;
          int b1, b2 = 0;
          row_max(xp, h0 * W + w0, k, &m, &best);
          row_max(xp, (h0 + 1) * W + w0, k, &m1, &b1);
          if (k == 3) row_max(xp, (h0 + 2) * W + w0, k, &m2, &b2);
          take_max(m1, b1, &m, &best);
          if (k == 3) take_max(m2, b2, &m, &best);
        } else {
          for (int ih = h0; ih < h1; ih++)
            for (int iw = w0; iw < w1; iw++) take_max(xp[ih * W + iw], ih * W + iw, &m, &best);
        }
        yp[oh * OW + ow] = m;
        ap[oh * OW + ow] = best;
      }
    }
  }
}

/* One step of the max loop on values alone: v replaces m when v > m or v is
 * NaN (take_max without the index). Selects through bit masks, which the
 * compiler vectorises where it leaves conditional expressions as branches. */
static inline float max_step(float m, float v) {
  const uint32_t mask = 0u - (uint32_t)((v > m) | (v != v));
  uint32_t vb, mb;
  memcpy(&vb, &v, sizeof vb);
  memcpy(&mb, &m, sizeof mb);
  mb = (vb & mask) | (mb & ~mask);
  memcpy(&m, &mb, sizeof mb);
  return m;
}

/* x < 0 ? +0 : x, as fh_relu_forward (NaN and -0 pass), by a mask. */
static inline float relu1(float v) {
  uint32_t b;
  memcpy(&b, &v, sizeof b);
  b &= ~(0u - (uint32_t)(v < 0.0f));
  memcpy(&v, &b, sizeof v);
  return v;
}

/* 2x2 windows of stride 2 inside the input, relu (0/1) taken of each
 * element first: the elements of a window in row-major order through
 * max_step, whole output rows at a time. */
static void maxpool2_infer(float *y, const float *x, int B, const fh_pool2d_geom *g, int relu) {
  const int H = g->h, W = g->w, OH = g->out_h, OW = g->out_w;
  for (size_t pl = 0; pl < (size_t)B * g->c; pl++)
    for (int oh = 0; oh < OH; oh++) {
      const float *restrict r0 = x + pl * H * W + (size_t)2 * oh * W, *restrict r1 = r0 + W;
      float *restrict yr = y + pl * OH * OW + (size_t)oh * OW;
      if (relu)
        for (int ow = 0; ow < OW; ow++) {
          float m = relu1(r0[2 * ow]);
          m = max_step(m, relu1(r0[2 * ow + 1]));
          m = max_step(m, relu1(r1[2 * ow]));
          yr[ow] = max_step(m, relu1(r1[2 * ow + 1]));
        }
      else
        for (int ow = 0; ow < OW; ow++) {
          float m = r0[2 * ow];
          m = max_step(m, r0[2 * ow + 1]);
          m = max_step(m, r1[2 * ow]);
          yr[ow] = max_step(m, r1[2 * ow + 1]);
        }
    }
}

void fh_maxpool2d_infer(float *y, const float *x, int B, const fh_pool2d_geom *g, int relu) {
  if (g->kernel == 2 && g->stride == 2 && g->padding == 0 && 2 * g->out_h <= g->h &&
      2 * g->out_w <= g->w) {
    maxpool2_infer(y, x, B, g, relu);
    return;
  }
  /* Any other window: its in-range elements in row-major order. The
   * forward's orders (rows apart, then combined; the separable passes) give
   * the same values: the step is associative. */
  const int H = g->h, W = g->w, OH = g->out_h, OW = g->out_w;
  for (size_t pl = 0; pl < (size_t)B * g->c; pl++) {
    const float *xp = x + pl * H * W;
    float *yp = y + pl * OH * OW;
    for (int oh = 0; oh < OH; oh++) {
      int h0, h1;
      window(g, oh, H, &h0, &h1);
      for (int ow = 0; ow < OW; ow++) {
        int w0, w1;
        window(g, ow, W, &w0, &w1);
        float m = -INFINITY;
        for (int ih = h0; ih < h1; ih++)
          for (int iw = w0; iw < w1; iw++) {
            const float v = xp[ih * W + iw];
            m = max_step(m, relu ? relu1(v) : v);
          }
        yp[oh * OW + ow] = m;
      }
    }
  }
}

void fh_maxpool2d_backward(float *dx, const float *dy, const int32_t *argmax, int B,
                           const fh_pool2d_geom *g) {
  const size_t plane = (size_t)g->h * g->w, oplane = (size_t)g->out_h * g->out_w;
  memset(dx, 0, (size_t)B * g->c * plane * sizeof(float));
  for (size_t pl = 0; pl < (size_t)B * g->c; pl++) {
    float *dxp = dx + pl * plane;
    const float *dyp = dy + pl * oplane;
    const int32_t *ap = argmax + pl * oplane;
    for (size_t o = 0; o < oplane; o++) dxp[ap[o]] += dyp[o]; /* windows may overlap */
  }
}

void fh_avgpool2d_forward(float *y, const float *x, int B, const fh_pool2d_geom *g) {
  const size_t plane = (size_t)g->h * g->w, oplane = (size_t)g->out_h * g->out_w;
  for (size_t pl = 0; pl < (size_t)B * g->c; pl++) {
    const float *xp = x + pl * plane;
    float *yp = y + pl * oplane;
    for (int oh = 0; oh < g->out_h; oh++) {
      int h0, h1;
      window(g, oh, g->h, &h0, &h1);
      for (int ow = 0; ow < g->out_w; ow++) {
        int w0, w1;
        window(g, ow, g->w, &w0, &w1);
        double sum = 0.0;
        for (int ih = h0; ih < h1; ih++)
          for (int iw = w0; iw < w1; iw++) sum += xp[ih * g->w + iw];
        yp[oh * g->out_w + ow] = (float)(sum / avg_area(g, oh, ow));
      }
    }
  }
}

void fh_avgpool2d_backward(float *dx, const float *dy, int B, const fh_pool2d_geom *g) {
  const size_t plane = (size_t)g->h * g->w, oplane = (size_t)g->out_h * g->out_w;
  memset(dx, 0, (size_t)B * g->c * plane * sizeof(float));
  for (size_t pl = 0; pl < (size_t)B * g->c; pl++) {
    float *dxp = dx + pl * plane;
    const float *dyp = dy + pl * oplane;
    for (int oh = 0; oh < g->out_h; oh++) {
      int h0, h1;
      window(g, oh, g->h, &h0, &h1);
      for (int ow = 0; ow < g->out_w; ow++) {
        int w0, w1;
        window(g, ow, g->w, &w0, &w1);
        const float d = dyp[oh * g->out_w + ow] * (1.0f / (float)avg_area(g, oh, ow));
        for (int ih = h0; ih < h1; ih++)
          for (int iw = w0; iw < w1; iw++) dxp[ih * g->w + iw] += d;
      }
    }
  }
}

void fh_global_avgpool_forward(float *y, const float *x, int B, int C, int HW) {
  for (size_t pl = 0; pl < (size_t)B * C; pl++) {
    const float *xp = x + pl * HW;
    double sum = 0.0;
    for (int i = 0; i < HW; i++) sum += xp[i];
    y[pl] = (float)(sum / HW);
  }
}

void fh_global_avgpool_backward(float *dx, const float *dy, int B, int C, int HW) {
  for (size_t pl = 0; pl < (size_t)B * C; pl++) {
    const float d = dy[pl] / (float)HW;
    float *dxp = dx + pl * HW;
    for (int i = 0; i < HW; i++) dxp[i] = d;
  }
}

/* ---- the layers ---------------------------------------------------------------- */

/* iarg: kernel, stride, padding, ceil_mode. */
static fh_pool2d_geom layer_geom(const fh_layer *L) {
  fh_pool2d_geom g;
  fh_pool2d_geometry_ceil(&g, L->in_shape[0], L->in_shape[1], L->in_shape[2], L->iarg[0],
                          L->iarg[1], L->iarg[2], L->iarg[3]);
  return g;
}

static void maxpool_forward(const fh_layer *L, const fh_layer_ctx *c, const float *x, float *y,
                            int B) {
  const fh_pool2d_geom g = layer_geom(L);
  fh_maxpool2d_forward(y, (int32_t *)c->scratch, x, B, &g);
}

static void maxpool_infer(const fh_layer *L, const fh_layer_ctx *c, const float *x, float *y,
                          int B) {
  (void)c;
  const fh_pool2d_geom g = layer_geom(L);
  fh_maxpool2d_infer(y, x, B, &g, 0);
}

static void maxpool_infer_relu(const fh_layer *L, const fh_layer_ctx *c, const float *x,
                               float *y, int B) {
  (void)c;
  const fh_pool2d_geom g = layer_geom(L);
  fh_maxpool2d_infer(y, x, B, &g, 1);
}

static void maxpool_backward(const fh_layer *L, const fh_layer_ctx *c, const float *x,
                             const float *y, const float *dy, float *dx, int B) {
  (void)x, (void)y;
  const fh_pool2d_geom g = layer_geom(L);
  if (dx) fh_maxpool2d_backward(dx, dy, (const int32_t *)c->scratch, B, &g);
}

static void avgpool_forward(const fh_layer *L, const fh_layer_ctx *c, const float *x, float *y,
                            int B) {
  (void)c;
  const fh_pool2d_geom g = layer_geom(L);
  fh_avgpool2d_forward(y, x, B, &g);
}

static void avgpool_backward(const fh_layer *L, const fh_layer_ctx *c, const float *x,
                             const float *y, const float *dy, float *dx, int B) {
  (void)c, (void)x, (void)y;
  const fh_pool2d_geom g = layer_geom(L);
  if (dx) fh_avgpool2d_backward(dx, dy, B, &g);
}

static void global_forward(const fh_layer *L, const fh_layer_ctx *c, const float *x, float *y,
                           int B) {
  (void)c;
  fh_global_avgpool_forward(y, x, B, L->in_shape[0], L->in_shape[1] * L->in_shape[2]);
}

static void global_backward(const fh_layer *L, const fh_layer_ctx *c, const float *x,
                            const float *y, const float *dy, float *dx, int B) {
  (void)c, (void)x, (void)y;
  if (dx) fh_global_avgpool_backward(dx, dy, B, L->in_shape[0], L->in_shape[1] * L->in_shape[2]);
}

/* Adaptive average pooling to oh x ow (iarg[0], iarg[1]), PyTorch's bins:
 * output row i averages input rows floor(i H / oh) .. ceil((i + 1) H / oh) - 1,
 * likewise for columns (bins may overlap when H is not a multiple of oh).
 * x [B, C, H, W] -> y [B, C, oh, ow]. */
static void adaptive_forward(const fh_layer *L, const fh_layer_ctx *c, const float *x, float *y, int B) {
  (void)c;
  const int C = L->in_shape[0], H = L->in_shape[1], W = L->in_shape[2], oh = L->iarg[0], ow = L->iarg[1];
  for (int bc = 0; bc < B * C; bc++) {
    const float *xp = x + (size_t)bc * H * W;
    float *yp = y + (size_t)bc * oh * ow;
    for (int i = 0; i < oh; i++) {
      const int h0 = i * H / oh, h1 = ((i + 1) * H + oh - 1) / oh;
      for (int j = 0; j < ow; j++) {
        const int w0 = j * W / ow, w1 = ((j + 1) * W + ow - 1) / ow;
        float sum = 0.0f;
        for (int h = h0; h < h1; h++)
          for (int w = w0; w < w1; w++) sum += xp[h * W + w];
        yp[i * ow + j] = sum / (float)((h1 - h0) * (w1 - w0));
      }
    }
  }
}

static void adaptive_backward(const fh_layer *L, const fh_layer_ctx *c, const float *x, const float *y,
                              const float *dy, float *dx, int B) {
  (void)c, (void)x, (void)y;
  if (!dx) return;
  const int C = L->in_shape[0], H = L->in_shape[1], W = L->in_shape[2], oh = L->iarg[0], ow = L->iarg[1];
  memset(dx, 0, (size_t)B * C * H * W * sizeof(float));
  for (int bc = 0; bc < B * C; bc++) {
    float *dxp = dx + (size_t)bc * H * W;
    const float *dyp = dy + (size_t)bc * oh * ow;
    for (int i = 0; i < oh; i++) {
      const int h0 = i * H / oh, h1 = ((i + 1) * H + oh - 1) / oh;
      for (int j = 0; j < ow; j++) {
        const int w0 = j * W / ow, w1 = ((j + 1) * W + ow - 1) / ow;
        const float g = dyp[i * ow + j] / (float)((h1 - h0) * (w1 - w0));
        for (int h = h0; h < h1; h++)
          for (int w = w0; w < w1; w++) dxp[h * W + w] += g;
      }
    }
  }
}

/* Comparisons and window sums are element-wise, memory-bound work: no products
 * to count. */
static double no_flops(const fh_layer *L, int B) {
  (void)L, (void)B;
  return 0.0;
}

/* As PyTorch prints the modules. */
static void maxpool_describe(const fh_layer *L, char *buf, size_t cap) {
  snprintf(buf, cap, "MaxPool2d(kernel_size=%d, stride=%d, padding=%d, dilation=1, ceil_mode=%s)",
           L->iarg[0], L->iarg[1], L->iarg[2], L->iarg[3] ? "True" : "False");
}

static void avgpool_describe(const fh_layer *L, char *buf, size_t cap) {
  snprintf(buf, cap, "AvgPool2d(kernel_size=%d, stride=%d, padding=%d%s)", L->iarg[0], L->iarg[1],
           L->iarg[2], L->iarg[3] ? ", ceil_mode=True" : "");
}

static void global_describe(const fh_layer *L, char *buf, size_t cap) {
  (void)L;
  snprintf(buf, cap, "AdaptiveAvgPool2d(output_size=1)");
}

static void adaptive_describe(const fh_layer *L, char *buf, size_t cap) {
  snprintf(buf, cap, "AdaptiveAvgPool2d(output_size=(%d, %d))", L->iarg[0], L->iarg[1]);
}

static const fh_layer_ops adaptive_ops = {
    .kind_name = "AdaptiveAvgPool2d",
    .forward = adaptive_forward,
    .backward = adaptive_backward,
    .init = NULL,
    .flops_forward = no_flops,
    .flops_backward = no_flops,
    .describe = adaptive_describe,
};

static const fh_layer_ops maxpool_ops = {
    .kind_name = "MaxPool2d",
    .forward = maxpool_forward,
    .backward = maxpool_backward,
    .init = NULL,
    .flops_forward = no_flops,
    .flops_backward = no_flops,
    .describe = maxpool_describe,
    .infer = maxpool_infer,
    .infer_relu = maxpool_infer_relu,
};

static const fh_layer_ops avgpool_ops = {
    .kind_name = "AvgPool2d",
    .forward = avgpool_forward,
    .backward = avgpool_backward,
    .init = NULL,
    .flops_forward = no_flops,
    .flops_backward = no_flops,
    .describe = avgpool_describe,
};

static const fh_layer_ops global_ops = {
    .kind_name = "AdaptiveAvgPool2d",
    .forward = global_forward,
    .backward = global_backward,
    .init = NULL,
    .flops_forward = no_flops,
    .flops_backward = no_flops,
    .describe = global_describe,
};

static fh_layer pool_layer(const char *name, const fh_layer_ops *ops, fh_layer_kind kind, int c,
                           int h, int w, int oh, int ow) {
  fh_layer L;
  memset(&L, 0, sizeof L);
  L.kind = kind;
  L.ops = ops;
  snprintf(L.name, sizeof L.name, "%s", name);
  L.input = -1;
  L.in_shape[0] = c, L.in_shape[1] = h, L.in_shape[2] = w;
  L.out_shape[0] = c, L.out_shape[1] = oh, L.out_shape[2] = ow;
  L.in_size = (size_t)c * h * w;
  L.out_size = (size_t)c * oh * ow;
  return L;
}

static fh_layer windowed(const char *name, const fh_layer_ops *ops, fh_layer_kind kind, int c, int h,
                         int w, int kernel, int stride, int padding, int ceil_mode) {
  fh_pool2d_geom g;
  if (fh_pool2d_geometry_ceil(&g, c, h, w, kernel, stride, padding, ceil_mode)) {
    fprintf(stderr,
            "fedhpc: internal error: %s layer '%s': kernel %d, stride %d, padding %d cannot "
            "apply to input [%d, %d, %d]\n",
            ops->kind_name, name, kernel, stride, padding, c, h, w);
    abort();
  }
  fh_layer L = pool_layer(name, ops, kind, c, h, w, g.out_h, g.out_w);
  L.iarg[0] = kernel, L.iarg[1] = stride, L.iarg[2] = padding, L.iarg[3] = g.ceil_mode;
  return L;
}

fh_layer fh_layer_maxpool2d_ceil(const char *name, int c, int h, int w, int kernel, int stride,
                                 int padding, int ceil_mode) {
  fh_layer L = windowed(name, &maxpool_ops, FH_LAYER_MAXPOOL2D, c, h, w, kernel, stride, padding,
                        ceil_mode);
  L.scratch_per_sample = L.out_size; /* argmax */
  return L;
}

fh_layer fh_layer_avgpool2d_ceil(const char *name, int c, int h, int w, int kernel, int stride,
                                 int padding, int ceil_mode) {
  return windowed(name, &avgpool_ops, FH_LAYER_AVGPOOL2D, c, h, w, kernel, stride, padding,
                  ceil_mode);
}

fh_layer fh_layer_maxpool2d(const char *name, int c, int h, int w, int kernel, int stride,
                            int padding) {
  return fh_layer_maxpool2d_ceil(name, c, h, w, kernel, stride, padding, 0);
}

fh_layer fh_layer_avgpool2d(const char *name, int c, int h, int w, int kernel, int stride,
                            int padding) {
  return fh_layer_avgpool2d_ceil(name, c, h, w, kernel, stride, padding, 0);
}

fh_layer fh_layer_adaptive_avgpool1(const char *name, int c, int h, int w) {
  if (c < 1 || h < 1 || w < 1) {
    fprintf(stderr, "fedhpc: internal error: AdaptiveAvgPool2d layer '%s': input [%d, %d, %d]\n",
            name, c, h, w);
    abort();
  }
  return pool_layer(name, &global_ops, FH_LAYER_ADAPTIVE_AVGPOOL2D, c, h, w, 1, 1);
}

fh_layer fh_layer_adaptive_avgpool(const char *name, int c, int h, int w, int oh, int ow) {
  if (oh == 1 && ow == 1) return fh_layer_adaptive_avgpool1(name, c, h, w);
  if (c < 1 || h < 1 || w < 1 || oh < 1 || ow < 1) {
    fprintf(stderr, "fedhpc: internal error: AdaptiveAvgPool2d layer '%s': input [%d, %d, %d] to %dx%d\n", name, c,
            h, w, oh, ow);
    abort();
  }
  fh_layer L = pool_layer(name, &adaptive_ops, FH_LAYER_ADAPTIVE_AVGPOOL2D, c, h, w, oh, ow);
  L.iarg[0] = oh, L.iarg[1] = ow;
  return L;
}
