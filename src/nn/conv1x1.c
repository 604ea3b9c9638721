/* 1x1 convolutions as per-sample sgemm products (see conv1x1.h). */
#include "nn/conv1x1.h"

#include <cblas.h>
#include <string.h>

int fh_conv1x1_applies(const fh_conv2d_geom *g) {
  return g->kernel_h == 1 && g->kernel_w == 1 && g->padding == 0 &&
         g->out_h * g->out_w >= FH_CONV1X1_MIN_POSITIONS;
}

size_t fh_conv1x1_workspace(const fh_conv2d_geom *g) {
  return g->stride > 1 ? (size_t)g->in_c * g->out_h * g->out_w : 0;
}

/* x_n [C, H, W] -> xs [C, OH, OW] = x_n[:, ::s, ::s] */
static void subsample(float *xs, const float *xn, const fh_conv2d_geom *g) {
  const int s = g->stride, H = g->in_h, W = g->in_w, OH = g->out_h, OW = g->out_w;
  for (int c = 0; c < g->in_c; c++)
    for (int i = 0; i < OH; i++) {
      const float *row = xn + ((size_t)c * H + (size_t)i * s) * W;
      float *out = xs + ((size_t)c * OH + i) * OW;
      for (int j = 0; j < OW; j++) out[j] = row[(size_t)j * s];
    }
}

/* The sample's xs: x_n itself at stride 1, else its subsampled copy in work. */
static const float *sampled(float *work, const float *xn, const fh_conv2d_geom *g) {
  if (g->stride == 1) return xn;
  subsample(work, xn, g);
  return work;
}

void fh_conv1x1_forward(float *y, float *work, const float *x, const float *W, const float *b,
                        int B, const fh_conv2d_geom *g) {
  const int C = g->in_c, O = g->out_c, P = g->out_h * g->out_w;
  const size_t xs = (size_t)C * g->in_h * g->in_w, ys = (size_t)O * P;
  for (int n = 0; n < B; n++) {
    float *yn = y + n * ys;
    if (b)
      for (int o = 0; o < O; o++)
        for (int p = 0; p < P; p++) yn[(size_t)o * P + p] = b[o];
    /* y_n [O, P] (+)= W [O, C] xs_n [C, P] */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, O, P, C, 1.0f, W, C,
                sampled(work, x + n * xs, g), P, b ? 1.0f : 0.0f, yn, P);
  }
}

void fh_conv1x1_backward(float *dx, float *dW, float *db, float *work, const float *dy,
                         const float *x, const float *W, int B, const fh_conv2d_geom *g) {
  const int C = g->in_c, O = g->out_c, P = g->out_h * g->out_w, s = g->stride;
  const int H = g->in_h, Wd = g->in_w, OH = g->out_h, OW = g->out_w;
  const size_t xs = (size_t)C * H * Wd, ys = (size_t)O * P;
  for (int n = 0; n < B; n++) {
    const float *dyn = dy + n * ys;
    /* dW [O, C] += dy_n [O, P] xs_n^T [P, C] */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, O, C, P, 1.0f, dyn, P,
                sampled(work, x + n * xs, g), P, 1.0f, dW, C);
    if (db)
      for (int o = 0; o < O; o++) {
        double sum = 0.0;
        for (int p = 0; p < P; p++) sum += dyn[(size_t)o * P + p];
        db[o] += (float)sum;
      }
    if (!dx) continue;
    float *dxn = dx + n * xs;
    /* dxs [C, P] = W^T [C, O] dy_n [O, P]: dx_n itself at stride 1 */
    float *dxs = s == 1 ? dxn : work;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, C, P, O, 1.0f, W, C, dyn, P, 0.0f, dxs,
                P);
    if (s == 1) continue;
    /* the sampled positions take dxs, every other one 0 */
    memset(dxn, 0, xs * sizeof(float));
    for (int c = 0; c < C; c++)
      for (int i = 0; i < OH; i++) {
        float *row = dxn + ((size_t)c * H + (size_t)i * s) * Wd;
        const float *in = dxs + ((size_t)c * OH + i) * OW;
        for (int j = 0; j < OW; j++) row[(size_t)j * s] = in[j];
      }
  }
}
