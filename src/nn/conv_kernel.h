/* Convolution kernels that work tile by tile in a small, cache-resident work
 * space instead of keeping the whole batch's im2col columns.
 *
 * A tile is a run of output positions whose columns are built (im2col), used
 * by one sgemm and dropped while they are still in the core's L2 cache: either
 * `chunk` whole samples (small feature maps, where one sample alone would give
 * sgemm too narrow a product) or `rows` output rows of one sample (large
 * feature maps, where a sample's columns would spill out of the cache). The
 * backward rebuilds the columns of each tile from the layer input instead of
 * reading stored ones: an in-cache copy costs less than streaming the batch's
 * columns (K / C times the input) through memory twice.
 *
 * The tiling is a function of the layer geometry alone (never of the batch
 * size or of the rank count), so every rank runs the same sequence of
 * products and a sample's results do not depend on where it is computed. No
 * call allocates: the caller provides fh_conv_kernel_workspace() floats. */
#ifndef FH_CONV_KERNEL_H
#define FH_CONV_KERNEL_H
#include <stddef.h>

#include "nn/conv2d.h"

typedef struct {
  int chunk; /* whole samples per tile (>= 1)                                */
  int rows;  /* output rows per tile; < out_h only when chunk == 1           */
  size_t cols; /* output positions per tile: chunk out_h out_w or rows out_w */
} fh_conv_tiling;

/* The tiled kernels serve feature maps of at least this many output
 * positions. On smaller maps (the deep layers of a ResNet) the batch's columns
 * are small, and the whole-batch weight-gradient product of conv2d.c, whose
 * inner dimension spans the batch, is faster than tile-sized ones. */
#define FH_CONV_KERNEL_MIN_POSITIONS 64
int fh_conv_kernel_applies(const fh_conv2d_geom *g);

/* The tiling of a geometry (deterministic). */
fh_conv_tiling fh_conv_kernel_tiling(const fh_conv2d_geom *g);

/* Floats of work space the forward and backward need (any batch size). */
size_t fh_conv_kernel_workspace(const fh_conv2d_geom *g);

/* x [B, C, H, W] -> y [B, O, OH, OW] = conv(x, W) + b (b NULL: no bias). */
void fh_conv_kernel_forward(float *y, float *ws, const float *x, const float *W, const float *b,
                            int B, const fh_conv2d_geom *g);

/* dy [B, O, OH, OW] and the forward's input x ->
 *   dW += dy cols(x)^T summed over the batch, db += sums of dy (NULL: no bias),
 *   dx = col2im(W^T dy) (overwritten; NULL: skipped). */
void fh_conv_kernel_backward(float *dx, float *dW, float *db, float *ws, const float *dy,
                             const float *x, const float *W, int B, const fh_conv2d_geom *g);
#endif
