/* Pooling over the spatial axes of [C, H, W] samples: MaxPool2d and AvgPool2d
 * (square window, one stride and one padding for both axes, floor or ceil
 * mode, as nn.MaxPool2d / nn.AvgPool2d with their defaults otherwise) and
 * adaptive average pooling to 1x1 (nn.AdaptiveAvgPool2d(1)). */
#ifndef FH_POOL_H
#define FH_POOL_H

#include <stddef.h>
#include <stdint.h>

#include "nn/layer.h"

typedef struct {
  int c, h, w;
  int kernel, stride, padding;
  int ceil_mode; /* 1: the last window may hang over the (padded) input    */
  int out_h, out_w; /* (h + 2 padding - kernel) / stride + 1, likewise w, the
                       division rounded up in ceil mode, less one where the
                       last window would start beyond the input and its left
                       padding (PyTorch's pooling_output_shape) */
} fh_pool2d_geom;

/* Fills the derived sizes; returns 0, or -1 when the geometry is impossible
 * (a size below 1, a window larger than the padded input, or padding above
 * half the window, which PyTorch refuses too). */
int fh_pool2d_geometry(fh_pool2d_geom *g, int c, int h, int w, int kernel, int stride,
                       int padding);
/* The same with ceil_mode (0: floor, as above; 1: ceil). */
int fh_pool2d_geometry_ceil(fh_pool2d_geom *g, int c, int h, int w, int kernel, int stride,
                            int padding, int ceil_mode);

/* x [B, C, H, W] -> y [B, C, OH, OW], the maximum of each window (padding
 * never wins); argmax [B, C, OH, OW] receives the index ih W + iw of the
 * winner within its channel plane: the first on ties, the last NaN if any
 * (NaN propagates), as in PyTorch. */
void fh_maxpool2d_forward(float *y, int32_t *argmax, const float *x, int B,
                          const fh_pool2d_geom *g);
/* The same values without the argmax, for evaluation: relu = 1 takes the
 * ReLU (x < 0 ? 0 : x) of each element as it is read, bit for bit a ReLU
 * layer before the pool, without its pass over the whole map. */
void fh_maxpool2d_infer(float *y, const float *x, int B, const fh_pool2d_geom *g, int relu);
/* dy [B, C, OH, OW], argmax from the forward -> dx [B, C, H, W] (overwritten),
 * each dy added to its window's winner. */
void fh_maxpool2d_backward(float *dx, const float *dy, const int32_t *argmax, int B,
                           const fh_pool2d_geom *g);

/* x [B, C, H, W] -> y [B, C, OH, OW], window sums divided by the window's
 * area within the padded input (count_include_pad=True: padded zeros count;
 * kernel^2 except where a ceil-mode window hangs over the padding). */
void fh_avgpool2d_forward(float *y, const float *x, int B, const fh_pool2d_geom *g);
/* dy [B, C, OH, OW] -> dx [B, C, H, W] (overwritten), dy / that area spread
 * over the in-range part of each window. */
void fh_avgpool2d_backward(float *dx, const float *dy, int B, const fh_pool2d_geom *g);

/* x [B, C, HW] -> y [B, C], the mean over each plane. */
void fh_global_avgpool_forward(float *y, const float *x, int B, int C, int HW);
/* dy [B, C] -> dx [B, C, HW] (overwritten) = dy / HW. */
void fh_global_avgpool_backward(float *dx, const float *dy, int B, int C, int HW);

/* MaxPool2d(kernel, stride, padding) / AvgPool2d(kernel, stride, padding) on
 * inputs [c, h, w]; an impossible geometry aborts naming the layer (the
 * builder checks the deck first). MaxPool keeps its argmax in scratch. */
fh_layer fh_layer_maxpool2d(const char *name, int c, int h, int w, int kernel, int stride,
                            int padding);
fh_layer fh_layer_avgpool2d(const char *name, int c, int h, int w, int kernel, int stride,
                            int padding);
/* The same with ceil_mode (iarg[3]). */
fh_layer fh_layer_maxpool2d_ceil(const char *name, int c, int h, int w, int kernel, int stride,
                                 int padding, int ceil_mode);
fh_layer fh_layer_avgpool2d_ceil(const char *name, int c, int h, int w, int kernel, int stride,
                                 int padding, int ceil_mode);
/* AdaptiveAvgPool2d(1): [c, h, w] -> [c, 1, 1]. */
fh_layer fh_layer_adaptive_avgpool1(const char *name, int c, int h, int w);
/* AdaptiveAvgPool2d(output_size=(oh, ow)) with PyTorch's bins (1x1: the
 * global average above). */
fh_layer fh_layer_adaptive_avgpool(const char *name, int c, int h, int w, int oh, int ow);

#endif
