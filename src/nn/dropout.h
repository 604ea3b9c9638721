/* Dropout (nn.Dropout): in training mode each element is zeroed with
 * probability p and the survivors are scaled by 1/(1 - p) (inverted dropout,
 * so evaluation is the identity). The mask is drawn from the rng the model
 * passes in (fh_model_set_rng), one 32-bit draw per element in row-major
 * [B, size] order: the same stream gives the same mask on any rank. */
#ifndef FH_DROPOUT_H
#define FH_DROPOUT_H

#include <stddef.h>

#include "core/rng.h"
#include "nn/layer.h"

/* mask [n]: 0 with probability p, else 1/(1 - p); p = 0 keeps everything and
 * draws nothing, p = 1 zeroes everything (as PyTorch). 0 <= p <= 1. */
void fh_dropout_mask(float *mask, size_t n, float p, fh_rng *r);
/* y [n] = x [n] * mask [n]; also the backward (dx = dy * mask). y may equal x. */
void fh_dropout_apply(float *y, const float *x, const float *mask, size_t n);

/* Dropout(p) on a per-sample tensor of shape [c, h, w]; p in farg[0].
 * Scratch: the mask of every batch row. In training mode with p > 0 the
 * model must have an rng (fh_model_set_rng): without one the process aborts
 * naming the layer. A p outside [0, 1] aborts likewise. */
fh_layer fh_layer_dropout(const char *name, float p, int c, int h, int w);

#endif
