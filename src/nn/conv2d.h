/* 2-D convolution (nn.Conv2d) as im2col + one GEMM per sample.
 *
 * Geometry: input [C, H, W], weight [O, C, kh, kw] (PyTorch layout), one
 * stride and one zero padding for both axes, output [O, OH, OW] with
 * OH = (H + 2 pad - kh) / stride + 1 (floor), likewise OW. The column matrix
 * of one sample is [K, P] with K = C kh kw (weight-row order: c, then ki, then
 * kj) and P = OH OW, so y_b [O, P] = W [O, K] cols_b [K, P]. */
#ifndef FH_CONV2D_H
#define FH_CONV2D_H

#include <stddef.h>

#include "nn/layer.h"

typedef struct {
  int in_c, in_h, in_w;
  int out_c, kernel_h, kernel_w, stride, padding;
  int out_h, out_w; /* derived */
} fh_conv2d_geom;

/* Fills the derived sizes; returns 0, or -1 when the geometry is impossible
 * (a size below 1, or a kernel larger than the padded input). */
int fh_conv2d_geometry(fh_conv2d_geom *g, int in_c, int in_h, int in_w, int out_c, int kernel_h,
                       int kernel_w, int stride, int padding);
/* K P: floats of one sample's column matrix. */
size_t fh_conv2d_cols_size(const fh_conv2d_geom *g);

/* x [C, H, W] -> cols [K, P]; padded positions read as zero. */
void fh_im2col(float *cols, const float *x, const fh_conv2d_geom *g);
/* cols [K, P] -> dx [C, H, W] (overwritten): each column entry is added back to
 * the input element it was copied from; padded positions are dropped. */
void fh_col2im(float *dx, const float *cols, const fh_conv2d_geom *g);

/* x [B, C, H, W] -> y [B, O, OH, OW] = conv(x, W) + b (b NULL: no bias).
 * cols [B, K, P] receives every sample's columns for the backward. */
void fh_conv2d_forward(float *y, float *cols, const float *x, const float *W, const float *b, int B,
                       const fh_conv2d_geom *g);
/* dy [B, O, OH, OW], cols [B, K, P] from the forward ->
 *   dW [O, C, kh, kw] += sum_b dy_b cols_b^T,  db [O] += sum over b, p of dy
 *   (NULL: no bias),
 *   dx [B, C, H, W] = col2im(W^T dy_b) per sample (NULL: skipped).
 * dcols [K, P] is one sample's worth of work space (unused without dx); cols
 * is left intact, so the backward may be repeated. */
void fh_conv2d_backward(float *dx, float *dW, float *db, float *dcols, const float *dy,
                        const float *cols, const float *W, int B, const fh_conv2d_geom *g);

/* Conv2d(in_c, out_c, (kernel_h, kernel_w), stride, padding, bias) on inputs of
 * shape [in_c, in_h, in_w]: views "<name>.weight" [out_c, in_c, kernel_h,
 * kernel_w] and, with bias, "<name>.bias" [out_c]. Scratch: the columns of
 * every batch row plus one sample's column gradient. An impossible geometry
 * is a programming error (the builder checks the deck first): the process
 * aborts naming the layer. */
fh_layer fh_layer_conv2d(const char *name, int in_c, int in_h, int in_w, int out_c, int kernel_h,
                         int kernel_w, int stride, int padding, int bias);

#endif
