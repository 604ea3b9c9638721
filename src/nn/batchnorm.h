/* Batch normalisation over the batch and spatial axes, per channel, as
 * nn.BatchNorm2d (samples [C, H, W]) and nn.BatchNorm1d (flat samples [C]).
 *
 * Both see a batch as x [B, C, S] with S = H W (S = 1 for BatchNorm1d) and
 * normalise each channel over its N = B S values:
 *   training:   y = (x - mean) / sqrt(var + eps) * weight + bias with the
 *               batch mean and the BIASED batch variance, and the running
 *               statistics move towards the batch's:
 *                 running_mean = (1 - momentum) running_mean + momentum mean
 *                 running_var  = (1 - momentum) running_var
 *                                + momentum var N / (N - 1)   (unbiased)
 *   evaluation: the same formula with running_mean and running_var.
 * PyTorch's defaults: eps 1e-5, momentum 0.1, affine weight and bias,
 * running statistics tracked. num_batches_tracked is not kept: it only
 * matters for momentum=None (a cumulative average), which is not offered.
 * A training batch with N = 1 (which PyTorch refuses) is normalised to the
 * bias and leaves the running statistics untouched, since its unbiased
 * variance is undefined. Statistics are accumulated in double. */
#ifndef FH_BATCHNORM_H
#define FH_BATCHNORM_H

#include <stddef.h>

#include "nn/layer.h"

#define FH_BATCHNORM_EPS 1e-5f
#define FH_BATCHNORM_MOMENTUM 0.1f

/* Training mode. x [B, C, S] -> y [B, C, S]; saved_mean [C], saved_invstd [C]
 * receive the batch mean and 1/sqrt(var + eps) for the backward;
 * running_mean [C], running_var [C] are updated in place. */
void fh_batchnorm_forward_train(float *y, float *saved_mean, float *saved_invstd, const float *x,
                                const float *weight, const float *bias, float *running_mean,
                                float *running_var, int B, int C, int S, float eps,
                                float momentum);
/* Evaluation mode. x [B, C, S] -> y [B, C, S] with the running statistics. */
void fh_batchnorm_forward_eval(float *y, const float *x, const float *weight, const float *bias,
                               const float *running_mean, const float *running_var, int B, int C,
                               int S, float eps);
/* Backward of either mode through the mean and invstd the forward used (the
 * batch's, saved, in training; the running ones, as mean and
 * 1/sqrt(running_var + eps), in evaluation). dy [B, C, S], x [B, C, S] ->
 *   dweight [C] += sum dy xhat,  dbias [C] += sum dy,
 *   dx [B, C, S] (NULL: skipped) =
 *     training:   weight invstd (dy - mean(dy) - xhat mean(dy xhat))
 *     evaluation: weight invstd dy
 * with xhat = (x - mean) invstd and the means over the channel's N values. */
void fh_batchnorm_backward(float *dx, float *dweight, float *dbias, const float *dy,
                           const float *x, const float *mean, const float *invstd,
                           const float *weight, int B, int C, int S, int train);

/* BatchNorm2d(c) on samples [c, h, w] and BatchNorm1d(c) on flat samples [c]
 * (eps 1e-5, momentum 0.1, kept in farg[0], farg[1]): parameters
 * "<name>.weight" [c], "<name>.bias" [c]; buffers "<name>.running_mean" [c],
 * "<name>.running_var" [c]. Initialised as PyTorch does: weight 1, bias 0,
 * running_mean 0, running_var 1 (no draws). Scratch: the batch mean and
 * invstd [2 c]. */
fh_layer fh_layer_batchnorm2d(const char *name, int c, int h, int w);
fh_layer fh_layer_batchnorm1d(const char *name, int c);

#endif
