/* LeakyReLU (nn.LeakyReLU): y = x for x > 0, negative_slope x otherwise;
 * element-wise, any shape. */
#ifndef FH_LEAKYRELU_H
#define FH_LEAKYRELU_H

#include <stddef.h>

#include "nn/layer.h"

#define FH_LEAKYRELU_SLOPE 0.01f /* PyTorch's default */

/* x [n] -> y [n]. NaN propagates. y may equal x. */
void fh_leakyrelu_forward(float *y, const float *x, size_t n, float slope);
/* dy [n], x [n] (the forward input) -> dx [n] = dy for x > 0, else dy slope.
 * dx may equal dy. */
void fh_leakyrelu_backward(float *dx, const float *dy, const float *x, size_t n, float slope);
/* LeakyReLU(slope) on a per-sample tensor of shape [c, h, w]; slope in farg[0]. */
fh_layer fh_layer_leakyrelu(const char *name, float slope, int c, int h, int w);

#endif
