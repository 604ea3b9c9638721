/* ELU (nn.ELU): y = x for x > 0, alpha (exp(x) - 1) otherwise; element-wise,
 * any shape. */
#ifndef FH_ELU_H
#define FH_ELU_H

#include <stddef.h>

#include "nn/layer.h"

#define FH_ELU_ALPHA 1.0f /* PyTorch's default */

/* x [n] -> y [n]. NaN propagates. y may equal x. */
void fh_elu_forward(float *y, const float *x, size_t n, float alpha);
/* dy [n], x [n] (the forward input) -> dx [n] = dy for x > 0, else
 * dy alpha exp(x), as torch's elu_backward on the input. dx may equal dy. */
void fh_elu_backward(float *dx, const float *dy, const float *x, size_t n, float alpha);
/* ELU(alpha) on a per-sample tensor of shape [c, h, w]; alpha in farg[0]. */
fh_layer fh_layer_elu(const char *name, float alpha, int c, int h, int w);

#endif
