/* Linear (fully connected) layer: y = x W^T + b, W in PyTorch's [out, in]. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "nn/layer.h"

void fh_linear_forward(float *y, const float *x, const float *W, const float *b, int B, int in,
                       int out) {
  /* Broadcast the bias into y, then y += x W^T in one product. */
  if (b)
    for (int i = 0; i < B; i++) memcpy(y + (size_t)i * out, b, (size_t)out * sizeof(float));
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, out, in, 1.0f, x, in, W, in,
              b ? 1.0f : 0.0f, y, out);
}

void fh_linear_backward(float *dx, float *dW, float *db, const float *dy, const float *x,
                        const float *W, int B, int in, int out) {
  if (dx) /* dx [B, in] = dy [B, out] W [out, in] */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, in, out, 1.0f, dy, out, W, in, 0.0f,
                dx, in);
  /* dW [out, in] += dy^T [out, B] x [B, in] */
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, B, 1.0f, dy, out, x, in, 1.0f, dW,
              in);
  if (db)
    for (int i = 0; i < B; i++) {
      const float *row = dy + (size_t)i * out;
      for (int o = 0; o < out; o++) db[o] += row[o];
    }
}

static void linear_forward(const fh_layer *L, const fh_layer_ctx *c, const float *x, float *y,
                           int B) {
  fh_linear_forward(y, x, c->params + L->param[0].offset,
                    L->nparams > 1 ? c->params + L->param[1].offset : NULL, B,
                    (int)L->in_size, (int)L->out_size);
}

static void linear_backward(const fh_layer *L, const fh_layer_ctx *c, const float *x,
                            const float *y, const float *dy, float *dx, int B) {
  (void)y;
  fh_linear_backward(dx, c->grads + L->param[0].offset, L->nparams > 1 ? c->grads + L->param[1].offset : NULL, dy, x,
                     c->params + L->param[0].offset, B, (int)L->in_size, (int)L->out_size);
}

/* nn.Linear.reset_parameters: kaiming_uniform_(W, a=sqrt(5)) is U(-1/sqrt(fan_in),
 * 1/sqrt(fan_in)), and the bias has the same bound. FH_INIT_NORMAL_001
 * (torchvision's VGG classifier): W ~ N(0, 0.01^2), bias 0. */
static void linear_init(const fh_layer *L, float *params, float *buffers, fh_rng *r) {
  (void)buffers;
  if (L->init_kind == FH_INIT_NORMAL_001) {
    fh_rng_normal_fill(r, params + L->param[0].offset, L->param[0].numel, 0.0f, 0.01f);
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

static double linear_flops_forward(const fh_layer *L, int B) {
  return 2.0 * B * (double)L->in_size * (double)L->out_size;
}

static double linear_flops_backward(const fh_layer *L, int B) {
  /* dW always; dx only when there is a layer below to receive it. */
  return (L->input >= 0 ? 4.0 : 2.0) * B * (double)L->in_size * (double)L->out_size;
}

static void linear_describe(const fh_layer *L, char *buf, size_t cap) {
  snprintf(buf, cap, "Linear(%zu, %zu%s)", L->in_size, L->out_size,
           L->nparams > 1 ? "" : ", bias=False");
}

static const fh_layer_ops linear_ops = {
    .kind_name = "Linear",
    .forward = linear_forward,
    .backward = linear_backward,
    .init = linear_init,
    .flops_forward = linear_flops_forward,
    .flops_backward = linear_flops_backward,
    .describe = linear_describe,
};

fh_layer fh_layer_linear(const char *name, int in, int out) {
  return fh_layer_linear_bias(name, in, out, 1);
}

fh_layer fh_layer_linear_bias(const char *name, int in, int out, int bias) {
  fh_layer L;
  memset(&L, 0, sizeof L);
  L.kind = FH_LAYER_LINEAR;
  L.ops = &linear_ops;
  snprintf(L.name, sizeof L.name, "%s", name);
  L.input = -1;
  L.in_shape[0] = in, L.in_shape[1] = 1, L.in_shape[2] = 1;
  L.out_shape[0] = out, L.out_shape[1] = 1, L.out_shape[2] = 1;
  L.in_size = (size_t)in;
  L.out_size = (size_t)out;
  L.nparams = bias ? 2 : 1;
  fh_view_set(&L.param[0], name, "weight", 2, (const int[]){out, in});
  if (bias) fh_view_set(&L.param[1], name, "bias", 1, (const int[]){out});
  L.fan_in = in;
  return L;
}
