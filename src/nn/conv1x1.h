/* 1x1 convolutions without padding (a ResNet's downsample shortcut:
 * torchvision's and RepDistiller's conv1x1, stride 1 or 2) as one plain
 * sgemm per sample, with no im2col and no layout change:
 *   y_n [O, P] = W [O, C] xs_n [C, P],  P = OH OW,
 * where xs_n is the sample x_n [C, H, W] itself (stride 1) or its
 * subsampled copy x_n[:, ::s, ::s] (stride s > 1, in a work buffer).
 * Backward, per sample: dW [O, C] += dy_n [O, P] xs_n^T, and dx_n =
 * W^T dy_n (stride 1), or that product placed at the sampled positions of a
 * zeroed dx_n (stride s). oneDNN wraps these short products in blocked-
 * layout copies in and out of each call: the three shortcuts of resnet8x4
 * at batch 10 took 6.75 ms there (forward + backward) and 6.14 ms here
 * (docs/convolutions.md; 80-100 GFLOP/s with the input in cache). Taken
 * for maps of at least FH_CONV1X1_MIN_POSITIONS output positions: below
 * that one product per sample is too narrow, and the batched kernels stay.
 * Under either model.conv setting: one sgemm per sample is deterministic
 * and independent of the batch, so rank counts still agree bit for bit. */
#ifndef FH_CONV1X1_H
#define FH_CONV1X1_H

#include <stddef.h>

#include "nn/conv2d.h"

#define FH_CONV1X1_MIN_POSITIONS 64

/* 1 when g is a 1x1 kernel without padding over at least
 * FH_CONV1X1_MIN_POSITIONS output positions (ungrouped layers only). */
int fh_conv1x1_applies(const fh_conv2d_geom *g);
/* Floats of work space the calls need: C P for a stride above 1, else 0. */
size_t fh_conv1x1_workspace(const fh_conv2d_geom *g);

/* x [B, C, H, W] -> y [B, O, OH, OW] = conv(x, W) + b (b NULL: no bias). */
void fh_conv1x1_forward(float *y, float *work, const float *x, const float *W, const float *b,
                        int B, const fh_conv2d_geom *g);
/* dy [B, O, OH, OW], the forward's x -> dW [O, C] +=, db [O] += (NULL: no
 * bias), dx [B, C, H, W] = (overwritten; NULL: skipped). */
void fh_conv1x1_backward(float *dx, float *dW, float *db, float *work, const float *dy,
                         const float *x, const float *W, int B, const fh_conv2d_geom *g);

#endif
