/* 2-D convolution (nn.Conv2d) as im2col + one GEMM for the whole batch.
 *
 * Geometry: input [C, H, W], weight [O, C, kh, kw] (PyTorch layout), one
 * stride and one zero padding for both axes, output [O, OH, OW] with
 * OH = (H + 2 pad - kh) / stride + 1 (floor), likewise OW. The columns of a
 * sample form a [K, P] matrix with K = C kh kw (weight-row order: c, then ki,
 * then kj) and P = OH OW; the batch's columns sit side by side in one
 * [K, B P] matrix (sample n in columns [n P, (n + 1) P)). The forward is
 * the product ybuf [O, c P] = W [O, K] cols [K, c P] for chunks of c
 * samples, permuted to y [B, O, P]. Chunks of several samples keep sgemm busy
 * where P is small (the deep layers of a ResNet have P = 4 to 64); wide
 * samples (P >= FH_CONV2D_CHUNK_COLUMNS) take one product each, straight into
 * y. */
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

/* Output positions per chunk of the input-gradient product (see the layer). */
#define FH_CONV2D_CHUNK_COLUMNS 128

/* x [C, H, W] -> cols [K, P]; padded positions read as zero. */
void fh_im2col(float *cols, const float *x, const fh_conv2d_geom *g);
/* The same into a wider matrix: row k of the sample starts at cols + k ld. */
void fh_im2col_ld(float *cols, size_t ld, const float *x, const fh_conv2d_geom *g);
/* cols [K, P] -> dx [C, H, W] (overwritten): each column entry is added back to
 * the input element it was copied from; padded positions are dropped. */
void fh_col2im(float *dx, const float *cols, const fh_conv2d_geom *g);
/* The same from a wider matrix (row k at cols + k ld). */
void fh_col2im_ld(float *dx, const float *cols, size_t ld, const fh_conv2d_geom *g);

/* x [B, C, H, W] -> y [B, O, OH, OW] = conv(x, W) + b (b NULL: no bias).
 * cols [K, B P] receives the batch's columns for the backward. The products
 * take chunk samples at a time (chunk P columns); with chunk > 1, ybuf
 * [O, B P] is work space (unused with chunk = 1). */
void fh_conv2d_forward(float *y, float *cols, float *ybuf, int chunk, const float *x,
                       const float *W, const float *b, int B, const fh_conv2d_geom *g);
/* dy [B, O, OH, OW], cols [K, B P] from the forward ->
 *   dW [O, C, kh, kw] += dy cols^T over the batch,  db [O] += sum over b, p
 *   of dy (NULL: no bias),
 *   dx [B, C, H, W] = col2im(W^T dy) per sample (NULL: skipped).
 * Work space: dcols [K, chunk P] (unused without dx) and, with chunk > 1,
 * dybuf [O, B P] (dy permuted, for one dW product over the batch). cols is
 * left intact, so the backward may be repeated. */
void fh_conv2d_backward(float *dx, float *dW, float *db, float *dcols, float *dybuf, int chunk,
                        const float *dy, const float *cols, const float *W, int B,
                        const fh_conv2d_geom *g);

/* Conv2d(in_c, out_c, (kernel_h, kernel_w), stride, padding, bias) on inputs of
 * shape [in_c, in_h, in_w]: views "<name>.weight" [out_c, in_c, kernel_h,
 * kernel_w] and, with bias, "<name>.bias" [out_c]. Scratch: the columns and
 * the permuted output of every batch row, plus the column gradient of one
 * chunk of samples. An impossible geometry
 * is a programming error (the builder checks the deck first): the process
 * aborts naming the layer. */
fh_layer fh_layer_conv2d(const char *name, int in_c, int in_h, int in_w, int out_c, int kernel_h,
                         int kernel_w, int stride, int padding, int bias);

/* A convolution's initialisation (plain and grouped; L->fan_in is the
 * layer's own: C kh kw, or C / G kh kw): PyTorch's reset_parameters,
 * U(+-1/sqrt(fan_in)) for weight and bias, or with FH_INIT_KAIMING_FAN_OUT
 * N(0, 2 / (O kh kw)) and a zero bias. */
void fh_conv2d_init(const fh_layer *L, float *params, float *buffers, fh_rng *r);

#endif
