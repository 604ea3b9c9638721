/* Flatten (nn.Flatten): a per-sample [C, H, W] tensor as the flat vector
 * [C*H*W, 1, 1] a Linear layer reads. Row-major [C, H, W] already is that
 * vector, so forward and backward are plain copies (each layer owns its
 * activation buffer in the model's workspace). */
#ifndef FH_FLATTEN_H
#define FH_FLATTEN_H

#include "nn/layer.h"

/* Flatten on inputs [c, h, w] -> [c*h*w, 1, 1]; no parameters, no scratch.
 * A size below 1 is a programming error: the process aborts naming the layer. */
fh_layer fh_layer_flatten(const char *name, int c, int h, int w);

#endif
