/* Grouped convolution as one ordinary convolution per group. */
#include "nn/conv2d_grouped.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/conv2d.h"
#include "nn/conv_dnnl.h"

/* The whole layer's geometry (C -> O channels; oneDNN takes the groups). */
static fh_conv2d_geom layer_geom(const fh_layer *L) {
  fh_conv2d_geom g;
  fh_conv2d_geometry(&g, L->in_shape[0], L->in_shape[1], L->in_shape[2], L->out_shape[0],
                     L->iarg[0], L->iarg[1], L->iarg[2], L->iarg[3]);
  return g;
}

/* One group's geometry: C / G -> O / G channels. */
static fh_conv2d_geom group_geom(const fh_layer *L) {
  const int G = L->iarg[5];
  fh_conv2d_geom g;
  fh_conv2d_geometry(&g, L->in_shape[0] / G, L->in_shape[1], L->in_shape[2],
                     L->out_shape[0] / G, L->iarg[0], L->iarg[1], L->iarg[2], L->iarg[3]);
  return g;
}

/* Scratch: dcols [Kg, P] (fixed), then per batch: the columns of every group
 * [G][Kg, B P], the gathered input of one group [B, Cg H W], its output or
 * output gradient [B, Og P], and its input gradient [B, Cg H W]. */
typedef struct {
  float *dcols, *cols, *xg, *yg, *dxg;
} grouped_scratch;

static grouped_scratch carve(const fh_layer *L, const fh_conv2d_geom *g, float *s, int B) {
  const int G = L->iarg[5];
  const size_t kp = fh_conv2d_cols_size(g), in_g = (size_t)g->in_c * g->in_h * g->in_w;
  const size_t out_g = (size_t)g->out_c * g->out_h * g->out_w;
  grouped_scratch r;
  r.dcols = s;
  r.cols = s + L->scratch_fixed;
  r.xg = r.cols + (size_t)G * B * kp;
  r.yg = r.xg + (size_t)B * in_g;
  r.dxg = r.yg + (size_t)B * out_g;
  return r;
}

/* rows of n floats: dst row b = src + b * stride (gather), or the reverse. */
static void gather(float *dst, const float *src, size_t n, size_t stride, int B) {
  for (int b = 0; b < B; b++) memcpy(dst + (size_t)b * n, src + (size_t)b * stride, n * sizeof(float));
}

static void scatter(float *dst, const float *src, size_t n, size_t stride, int B) {
  for (int b = 0; b < B; b++) memcpy(dst + (size_t)b * stride, src + (size_t)b * n, n * sizeof(float));
}

static void grouped_forward(const fh_layer *L, const fh_layer_ctx *c, const float *x, float *y,
                            int B) {
  const fh_conv2d_geom g = group_geom(L), whole = layer_geom(L);
  const int G = L->iarg[5];
  const float *W = c->params + L->param[0].offset;
  const float *bias = L->iarg[4] ? c->params + L->param[1].offset : NULL;
  if (fh_conv_dnnl_forward(y, x, W, bias, B, &whole, G) == 0) return; /* oneDNN */
  grouped_scratch s = carve(L, &g, c->scratch, B);
  const size_t kp = fh_conv2d_cols_size(&g), in_g = (size_t)g.in_c * g.in_h * g.in_w;
  const size_t out_g = (size_t)g.out_c * g.out_h * g.out_w, wg = (size_t)g.out_c * g.in_c * g.kernel_h * g.kernel_w;
  for (int k = 0; k < G; k++) {
    gather(s.xg, x + (size_t)k * in_g, in_g, L->in_size, B);
    fh_conv2d_forward(s.yg, s.cols + (size_t)k * B * kp, NULL, 1, s.xg, W + (size_t)k * wg,
                      bias ? bias + (size_t)k * g.out_c : NULL, B, &g);
    scatter(y + (size_t)k * out_g, s.yg, out_g, L->out_size, B);
  }
}

static void grouped_backward(const fh_layer *L, const fh_layer_ctx *c, const float *x,
                             const float *y, const float *dy, float *dx, int B) {
  (void)y;
  const fh_conv2d_geom g = group_geom(L), whole = layer_geom(L);
  const int G = L->iarg[5];
  const float *W = c->params + L->param[0].offset;
  float *dW = c->grads + L->param[0].offset;
  float *db = L->iarg[4] ? c->grads + L->param[1].offset : NULL;
  if (fh_conv_dnnl_backward(dx, dW, db, dy, x, W, B, &whole, G) == 0) return; /* oneDNN */
  grouped_scratch s = carve(L, &g, c->scratch, B);
  const size_t kp = fh_conv2d_cols_size(&g), in_g = (size_t)g.in_c * g.in_h * g.in_w;
  const size_t out_g = (size_t)g.out_c * g.out_h * g.out_w, wg = (size_t)g.out_c * g.in_c * g.kernel_h * g.kernel_w;
  for (int k = 0; k < G; k++) {
    gather(s.yg, dy + (size_t)k * out_g, out_g, L->out_size, B);
    fh_conv2d_backward(dx ? s.dxg : NULL, dW + (size_t)k * wg, db ? db + (size_t)k * g.out_c : NULL,
                       s.dcols, NULL, 1, s.yg, s.cols + (size_t)k * B * kp, W + (size_t)k * wg, B, &g);
    if (dx) scatter(dx + (size_t)k * in_g, s.dxg, in_g, L->in_size, B);
  }
}

static double grouped_flops_forward(const fh_layer *L, int B) {
  const fh_conv2d_geom g = group_geom(L);
  return 2.0 * B * (double)L->iarg[5] * g.out_c * (double)fh_conv2d_cols_size(&g);
}

static double grouped_flops_backward(const fh_layer *L, int B) {
  return (L->input >= 0 ? 2.0 : 1.0) * grouped_flops_forward(L, B);
}

static void grouped_describe(const fh_layer *L, char *buf, size_t cap) {
  snprintf(buf, cap,
           "Conv2d(%d, %d, kernel_size=(%d, %d), stride=(%d, %d), padding=(%d, %d), groups=%d%s)",
           L->in_shape[0], L->out_shape[0], L->iarg[0], L->iarg[1], L->iarg[2], L->iarg[2],
           L->iarg[3], L->iarg[3], L->iarg[5], L->iarg[4] ? "" : ", bias=False");
}

static const fh_layer_ops grouped_ops = {
    .kind_name = "Conv2d",
    .forward = grouped_forward,
    .backward = grouped_backward,
    .init = fh_conv2d_init, /* fan_in = C / G kh kw: the layer's own */
    .flops_forward = grouped_flops_forward,
    .flops_backward = grouped_flops_backward,
    .describe = grouped_describe,
};

fh_layer fh_layer_conv2d_grouped(const char *name, int in_c, int in_h, int in_w, int out_c,
                                 int kernel, int stride, int padding, int groups, int bias) {
  fh_conv2d_geom g;
  if (groups < 1 || in_c % groups || out_c % groups ||
      fh_conv2d_geometry(&g, in_c / groups, in_h, in_w, out_c / groups, kernel, kernel, stride,
                         padding)) {
    fprintf(stderr,
            "fedhpc: internal error: conv layer '%s': kernel %d, stride %d, padding %d, groups "
            "%d cannot apply to input [%d, %d, %d] with %d output channels\n",
            name, kernel, stride, padding, groups, in_c, in_h, in_w, out_c);
    abort();
  }
  fh_layer L;
  memset(&L, 0, sizeof L);
  L.kind = FH_LAYER_CONV2D;
  L.ops = &grouped_ops;
  snprintf(L.name, sizeof L.name, "%s", name);
  L.input = -1;
  L.in_shape[0] = in_c, L.in_shape[1] = in_h, L.in_shape[2] = in_w;
  L.out_shape[0] = out_c, L.out_shape[1] = g.out_h, L.out_shape[2] = g.out_w;
  L.in_size = (size_t)in_c * in_h * in_w;
  L.out_size = (size_t)out_c * g.out_h * g.out_w;
  L.nparams = bias ? 2 : 1;
  fh_view_set(&L.param[0], name, "weight", 4, (const int[]){out_c, in_c / groups, kernel, kernel});
  if (bias) fh_view_set(&L.param[1], name, "bias", 1, (const int[]){out_c});
  const size_t kp = fh_conv2d_cols_size(&g);
  const size_t in_g = (size_t)g.in_c * in_h * in_w, out_g = (size_t)g.out_c * g.out_h * g.out_w;
  L.scratch_fixed = kp;
  L.scratch_per_sample = (size_t)groups * kp + 2 * in_g + out_g;
  L.fan_in = in_c / groups * kernel * kernel;
  L.iarg[0] = kernel, L.iarg[1] = kernel, L.iarg[2] = stride, L.iarg[3] = padding;
  L.iarg[4] = bias ? 1 : 0;
  L.iarg[5] = groups;
  return L;
}
