/* BatchNorm1d / BatchNorm2d: per-channel normalisation over batch and space. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "nn/batchnorm.h"

/* The channel sums run in double over LANES = 16 independent lanes, each lane
 * in element order (element i of a row goes to lane i % 16, a row's tail to
 * lane 0), and the lanes are then added in a fixed tree. The order is fixed
 * by the source, not by the instruction set: GCC's generic vectors (4 doubles
 * each, lowered to whatever the target has: one AVX register, two SSE2 ones)
 * hold the lanes, nothing is reassociated, and the result is the same on any
 * CPU. Four vectors keep enough independent additions in flight that a sum
 * runs at the speed the values arrive from cache rather than at one
 * addition's latency per vector (one vector of 4 lanes, as before: 0.45 ms of
 * a 0.86 ms forward on a [10, 64, 32, 32] batch). */
#define LANES 16
#define NV (LANES / 4)

typedef float v4f __attribute__((vector_size(16)));
typedef int v4i __attribute__((vector_size(16)));
typedef double v4d __attribute__((vector_size(32)));

static inline v4f load4f(const float *p) {
  v4f v;
  memcpy(&v, p, sizeof v);
  return v;
}

/* a macro, not a function: a 32-byte vector returned by value would take a
 * different ABI without AVX (-Wpsabi) */
#define load4(p) __builtin_convertvector(load4f(p), v4d)

/* 0 where y <= 0, else dy (torch's threshold_backward; a NaN y keeps dy) */
static inline v4f mask4(v4f dy, v4f y) { return (v4f)((v4i)dy & ~(v4i)(y <= 0.0f)); }

static void lanes_load(v4d *v, const double *l) { memcpy(v, l, NV * sizeof *v); }
static void lanes_store(double *l, const v4d *v) { memcpy(l, v, NV * sizeof *v); }

static double lanes_total(const double *l) {
  double t[LANES / 2];
  for (int k = 0; k < LANES / 2; k++) t[k] = l[k] + l[k + LANES / 2];
  for (int w = LANES / 4; w >= 1; w /= 2)
    for (int k = 0; k < w; k++) t[k] += t[k + w];
  return t[0];
}

/* l[k] += the row's values at k, k + LANES, ... */
static void lane_sum(double *l, const float *v, int n) {
  v4d acc[NV];
  lanes_load(acc, l);
  int i = 0;
  for (; i + LANES <= n; i += LANES)
    for (int j = 0; j < NV; j++) acc[j] += load4(v + i + 4 * j);
  lanes_store(l, acc);
  for (; i < n; i++) l[0] += (double)v[i];
}

/* l[k] += (v - mean)^2 likewise */
static void lane_sum_sq(double *l, const float *v, int n, double mean) {
  v4d acc[NV];
  lanes_load(acc, l);
  int i = 0;
  for (; i + LANES <= n; i += LANES)
    for (int j = 0; j < NV; j++) {
      const v4d d = load4(v + i + 4 * j) - mean;
      acc[j] += d * d;
    }
  lanes_store(l, acc);
  for (; i < n; i++) {
    const double d = (double)v[i] - mean;
    l[0] += d * d;
  }
}

/* a[k] += g, b[k] += g (x - mu) with g = dy, or with y (the fused ReLU's
 * output; NULL: none) g = 0 where y <= 0 and dy elsewhere. */
static void lane_sum_dy(double *a, double *b, const float *dy, const float *x, const float *y,
                        int n, double mu) {
  v4d va[NV], vb[NV];
  lanes_load(va, a);
  lanes_load(vb, b);
  int i = 0;
  for (; i + LANES <= n; i += LANES)
    for (int j = 0; j < NV; j++) {
      const int o = i + 4 * j;
      const v4f g4 = y ? mask4(load4f(dy + o), load4f(y + o)) : load4f(dy + o);
      const v4d g = __builtin_convertvector(g4, v4d);
      va[j] += g;
      vb[j] += g * (load4(x + o) - mu);
    }
  lanes_store(a, va);
  lanes_store(b, vb);
  for (; i < n; i++) {
    const double g = y && y[i] <= 0.0f ? 0.0 : (double)dy[i];
    a[0] += g;
    b[0] += g * ((double)x[i] - mu);
  }
}

/* The B rows of a channel are S floats apart by C S: each one a fresh
 * stream for the hardware prefetcher, which stops at page ends (a 32x32 row
 * is one 4 KB page). Asking early for the head of the row read next (the
 * next sample's, or the next channel's first) hides that restart. */
#define HEAD_FLOATS 256 /* 1 KB: 16 cache lines */

static const float *next_row(const float *base, int b, int c, int B, int C, int S) {
  const size_t cs = (size_t)C * S;
  if (b + 1 < B) return base + (b + 1) * cs + (size_t)c * S;
  return c + 1 < C ? base + (size_t)(c + 1) * S : NULL;
}

static void prefetch_head(const float *p, int S, int write) {
  if (!p) return;
  const int n = S < HEAD_FLOATS ? S : HEAD_FLOATS;
  for (int i = 0; i < n; i += 16) {
    if (write)
      __builtin_prefetch(p + i, 1);
    else
      __builtin_prefetch(p + i, 0);
  }
}

/* The forwards and backward below with an optional fused ReLU (relu = 1: the
 * layer's output is max(bn(x), 0), which NaN passes as in torch.relu). */
static float relu_or_not(float v, int relu) { return relu && v < 0.0f ? 0.0f : v; }

static void forward_train(float *y, float *saved_mean, float *saved_invstd, const float *x,
                          const float *weight, const float *bias, float *running_mean,
                          float *running_var, int B, int C, int S, float eps, float momentum,
                          int relu) {
  const size_t cs = (size_t)C * S;
  const double N = (double)B * S;
  for (int c = 0; c < C; c++) {
    /* Two passes (mean, then squared deviations): no cancellation. The
     * channel's B S values (40 KB for [10, 64, 32, 32]) stay in cache between
     * the passes. */
    double l[LANES] = {0.0};
    for (int b = 0; b < B; b++) {
      prefetch_head(next_row(x, b, c, B, C, S), S, 0);
      lane_sum(l, x + b * cs + (size_t)c * S, S);
    }
    const double mean = lanes_total(l) / N;
    memset(l, 0, sizeof l);
    for (int b = 0; b < B; b++) lane_sum_sq(l, x + b * cs + (size_t)c * S, S, mean);
    const double ss = lanes_total(l);
    const double var = ss / N;
    const double invstd = 1.0 / sqrt(var + (double)eps);
    const float scale = (float)(weight[c] * invstd), fmean = (float)mean, shift = bias[c];
    for (int b = 0; b < B; b++) {
      const float *xc = x + b * cs + (size_t)c * S;
      float *yc = y + b * cs + (size_t)c * S;
      prefetch_head(next_row(y, b, c, B, C, S), S, 1);
      if (relu)
        for (int s = 0; s < S; s++) yc[s] = relu_or_not((xc[s] - fmean) * scale + shift, 1);
      else
        for (int s = 0; s < S; s++) yc[s] = (xc[s] - fmean) * scale + shift;
    }
    saved_mean[c] = fmean;
    saved_invstd[c] = (float)invstd;
    if (N > 1.0) {
      const double m = momentum;
      running_mean[c] = (float)((1.0 - m) * running_mean[c] + m * mean);
      running_var[c] = (float)((1.0 - m) * running_var[c] + m * ss / (N - 1.0));
    }
  }
}

static void forward_eval(float *y, const float *x, const float *weight, const float *bias,
                         const float *running_mean, const float *running_var, int B, int C,
                         int S, float eps, int relu) {
  const size_t cs = (size_t)C * S;
  for (int c = 0; c < C; c++) {
    const double invstd = 1.0 / sqrt((double)running_var[c] + (double)eps);
    const float scale = (float)(weight[c] * invstd);
    const float shift = (float)(bias[c] - running_mean[c] * weight[c] * invstd);
    for (int b = 0; b < B; b++) {
      const float *xc = x + b * cs + (size_t)c * S;
      float *yc = y + b * cs + (size_t)c * S;
      if (relu)
        for (int s = 0; s < S; s++) yc[s] = relu_or_not(xc[s] * scale + shift, 1);
      else
        for (int s = 0; s < S; s++) yc[s] = xc[s] * scale + shift;
    }
  }
}

/* y: the fused ReLU's output, whose zeros mask dy (NULL: no ReLU). */
static void backward(float *dx, float *dweight, float *dbias, const float *dy, const float *x,
                     const float *y, const float *mean, const float *invstd, const float *weight,
                     int B, int C, int S, int train) {
  const size_t cs = (size_t)C * S;
  const double N = (double)B * S;
  for (int c = 0; c < C; c++) {
    const double mu = mean[c], is = invstd[c];
    double a[LANES] = {0.0}, d[LANES] = {0.0};
    for (int b = 0; b < B; b++) {
      const size_t o = b * cs + (size_t)c * S;
      prefetch_head(next_row(dy, b, c, B, C, S), S, 0);
      prefetch_head(next_row(x, b, c, B, C, S), S, 0);
      if (y) prefetch_head(next_row(y, b, c, B, C, S), S, 0);
      lane_sum_dy(a, d, dy + o, x + o, y ? y + o : NULL, S, mu);
    }
    const double sum_dy = lanes_total(a), sum_dy_xhat = lanes_total(d) * is;
    dweight[c] += (float)sum_dy_xhat;
    dbias[c] += (float)sum_dy;
    if (!dx) continue;
    const double k = (double)weight[c] * is;
    /* Training: the batch mean and variance depend on x too. In double: with
     * the few values per channel of a deep stage, dy and its mean nearly
     * cancel, and float rounding here grows through the layers below.
     *   dx = k (g - mean(g)) - k is mean(g xhat) (x - mu) */
    const double k_mean = train ? k * (sum_dy / N) : 0.0;
    const double kx = train ? -k * is * (sum_dy_xhat / N) : 0.0;
    for (int b = 0; b < B; b++) {
      const size_t o = b * cs + (size_t)c * S;
      const float *xc = x + o, *dyc = dy + o;
      float *dxc = dx + o;
      prefetch_head(next_row(dx, b, c, B, C, S), S, 1);
      int s = 0;
      for (; s + 4 <= S; s += 4) {
        const v4f g4 = y ? mask4(load4f(dyc + s), load4f(y + o + s)) : load4f(dyc + s);
        const v4d r = k * __builtin_convertvector(g4, v4d) - k_mean + kx * (load4(xc + s) - mu);
        const v4f r4 = __builtin_convertvector(r, v4f);
        memcpy(dxc + s, &r4, sizeof r4);
      }
      for (; s < S; s++) {
        const double g = y && y[o + s] <= 0.0f ? 0.0 : (double)dyc[s];
        dxc[s] = (float)(k * g - k_mean + kx * ((double)xc[s] - mu));
      }
    }
  }
}

void fh_batchnorm_forward_train(float *y, float *saved_mean, float *saved_invstd, const float *x,
                                const float *weight, const float *bias, float *running_mean,
                                float *running_var, int B, int C, int S, float eps,
                                float momentum) {
  forward_train(y, saved_mean, saved_invstd, x, weight, bias, running_mean, running_var, B, C, S,
                eps, momentum, 0);
}

void fh_batchnorm_forward_eval(float *y, const float *x, const float *weight, const float *bias,
                               const float *running_mean, const float *running_var, int B, int C,
                               int S, float eps) {
  forward_eval(y, x, weight, bias, running_mean, running_var, B, C, S, eps, 0);
}

void fh_batchnorm_backward(float *dx, float *dweight, float *dbias, const float *dy,
                           const float *x, const float *mean, const float *invstd,
                           const float *weight, int B, int C, int S, int train) {
  backward(dx, dweight, dbias, dy, x, NULL, mean, invstd, weight, B, C, S, train);
}

/* ---- the layer ---------------------------------------------------------------- */

/* Channels C = in_shape[0], S = in_size / C; farg: eps, momentum.
 * Scratch: mean [C], then invstd [C]. */
static void bn_forward(const fh_layer *L, const fh_layer_ctx *c, const float *x, float *y,
                       int B) {
  const int C = L->in_shape[0], S = (int)(L->in_size / (size_t)C);
  const float *w = c->params + L->param[0].offset, *b = c->params + L->param[1].offset;
  float *rm = c->buffers + L->buffer[0].offset, *rv = c->buffers + L->buffer[1].offset;
  if (c->train)
    forward_train(y, c->scratch, c->scratch + C, x, w, b, rm, rv, B, C, S, L->farg[0],
                  L->farg[1], L->fused_relu);
  else
    forward_eval(y, x, w, b, rm, rv, B, C, S, L->farg[0], L->fused_relu);
}

/* With a fused ReLU, dy is the gradient of the ReLU's output y (this layer's
 * output), masked here by y's zeros. */
static void bn_backward(const fh_layer *L, const fh_layer_ctx *c, const float *x,
                        const float *y, const float *dy, float *dx, int B) {
  const int C = L->in_shape[0], S = (int)(L->in_size / (size_t)C);
  float *mean = c->scratch, *invstd = c->scratch + C;
  if (!c->train) { /* the statistics the evaluation forward used */
    const float *rm = c->buffers + L->buffer[0].offset, *rv = c->buffers + L->buffer[1].offset;
    for (int k = 0; k < C; k++) {
      mean[k] = rm[k];
      invstd[k] = (float)(1.0 / sqrt((double)rv[k] + (double)L->farg[0]));
    }
  }
  backward(dx, c->grads + L->param[0].offset, c->grads + L->param[1].offset, dy, x,
           L->fused_relu ? y : NULL, mean, invstd, c->params + L->param[0].offset, B, C, S,
           c->train);
}

static void bn_init(const fh_layer *L, float *params, float *buffers, fh_rng *r) {
  (void)r;
  const size_t C = (size_t)L->in_shape[0];
  for (size_t k = 0; k < C; k++) {
    params[L->param[0].offset + k] = 1.0f;
    params[L->param[1].offset + k] = 0.0f;
    buffers[L->buffer[0].offset + k] = 0.0f;
    buffers[L->buffer[1].offset + k] = 1.0f;
  }
}

/* Element-wise work only: no products are counted. */
static double no_flops(const fh_layer *L, int B) {
  (void)L, (void)B;
  return 0.0;
}

static void bn_describe(const fh_layer *L, char *buf, size_t cap) {
  snprintf(buf, cap, "%s(%d, eps=%g, momentum=%g, affine=True, track_running_stats=True)",
           L->ops->kind_name, L->in_shape[0], (double)L->farg[0], (double)L->farg[1]);
}

static const fh_layer_ops bn2d_ops = {
    .kind_name = "BatchNorm2d",
    .forward = bn_forward,
    .backward = bn_backward,
    .init = bn_init,
    .flops_forward = no_flops,
    .flops_backward = no_flops,
    .describe = bn_describe,
};

static const fh_layer_ops bn1d_ops = {
    .kind_name = "BatchNorm1d",
    .forward = bn_forward,
    .backward = bn_backward,
    .init = bn_init,
    .flops_forward = no_flops,
    .flops_backward = no_flops,
    .describe = bn_describe,
};

static fh_layer batchnorm(fh_layer_kind kind, const fh_layer_ops *ops, const char *name, int c,
                          int h, int w) {
  fh_layer L;
  memset(&L, 0, sizeof L);
  L.kind = kind;
  L.ops = ops;
  snprintf(L.name, sizeof L.name, "%s", name);
  L.input = -1;
  L.in_shape[0] = L.out_shape[0] = c;
  L.in_shape[1] = L.out_shape[1] = h;
  L.in_shape[2] = L.out_shape[2] = w;
  L.in_size = L.out_size = (size_t)c * h * w;
  const int shape[1] = {c};
  L.nparams = 2;
  fh_view_set(&L.param[0], name, "weight", 1, shape);
  fh_view_set(&L.param[1], name, "bias", 1, shape);
  L.nbuffers = 2;
  fh_view_set(&L.buffer[0], name, "running_mean", 1, shape);
  fh_view_set(&L.buffer[1], name, "running_var", 1, shape);
  L.scratch_fixed = 2 * (size_t)c;
  L.farg[0] = FH_BATCHNORM_EPS;
  L.farg[1] = FH_BATCHNORM_MOMENTUM;
  return L;
}

fh_layer fh_layer_batchnorm2d(const char *name, int c, int h, int w) {
  return batchnorm(FH_LAYER_BATCHNORM2D, &bn2d_ops, name, c, h, w);
}

fh_layer fh_layer_batchnorm1d(const char *name, int c) {
  return batchnorm(FH_LAYER_BATCHNORM1D, &bn1d_ops, name, c, 1, 1);
}
