/* Convolutions through oneDNN (libdnnl, Debian 12's 2.6), the library behind
 * PyTorch's CPU convolutions, with the tiled im2col + sgemm kernels
 * (conv_kernel.c, conv2d.c) as the portable fallback.
 *
 * For each layer shape and batch size the forward, backward-data and
 * backward-weights primitives are created once, on the first batch of that
 * shape, and kept in a process-wide table; later batches of that shape only
 * point the primitives' memory objects at the model's buffers and execute.
 * oneDNN picks its own (blocked, e.g. nChw16c) layouts for activations and
 * weights; the layer keeps PyTorch's plain layouts (x, y [B, C, H, W], W
 * [O, C / G, kh, kw]) and reorders in and out inside the call, into a work
 * area that also holds every primitive's scratchpad (user-managed). fedhpc
 * allocates nothing per batch (oneDNN's execute call itself builds a small
 * argument map on the heap; no data buffers).
 *
 * Reproducibility: oneDNN runs on one thread (its OpenMP runtime is set to
 * one thread when the table is first used), so every kernel is deterministic
 * for a fixed shape. Which kernel oneDNN picks depends on the shape and on
 * the CPU's instruction set alone, so every rank of a run on one kind of CPU
 * runs the same code: results are identical for any rank count. On a cluster
 * whose nodes differ, cap the instruction set (ONEDNN_MAX_CPU_ISA) or choose
 * model.conv = portable. Shapes oneDNN serves only with its reference
 * kernels, output maps under 5 positions (where the portable whole-batch
 * product is faster), and CPUs without AVX2 take the portable kernels. */
#ifndef FH_CONV_DNNL_H
#define FH_CONV_DNNL_H

#include "nn/conv2d.h"

typedef enum {
  FH_CONV_AUTO = 0, /* oneDNN where it is built in and the CPU has AVX2      */
  FH_CONV_PORTABLE, /* the im2col + sgemm kernels                            */
  FH_CONV_ONEDNN,   /* oneDNN; a build without it refuses (fh_conv_backend_set) */
} fh_conv_backend;

/* 1 when this build links oneDNN (CMake option FEDHPC_ONEDNN). */
int fh_conv_dnnl_built(void);
/* Chooses the convolution kernels for the whole process (every model): the
 * deck's model.conv. Returns 0, or -1 for FH_CONV_ONEDNN in a build without
 * oneDNN. Meant to be set before the first convolution runs. */
int fh_conv_backend_set(fh_conv_backend b);
/* "onednn" or "portable": what convolutions run on now. */
const char *fh_conv_backend_name(void);

/* g: the whole layer (in_c, out_c over all groups), groups dividing both.
 * x [B, C, H, W] -> y [B, O, OH, OW] = conv(x, W) + b (b NULL: no bias).
 * Returns 0, or -1 when oneDNN does not serve this shape (not chosen, not
 * built, or only its reference kernels): the caller runs the portable
 * kernels. The answer depends on the shape alone. */
int fh_conv_dnnl_forward(float *y, const float *x, const float *W, const float *b, int B,
                         const fh_conv2d_geom *g, int groups);
/* dy [B, O, OH, OW] and the forward's input x ->
 *   dW += dy (x) summed over the batch, db += sums of dy (NULL: no bias),
 *   dx = the input gradient (overwritten; NULL: skipped).
 * Returns 0, or -1 as fh_conv_dnnl_forward (then nothing was written). */
int fh_conv_dnnl_backward(float *dx, float *dW, float *db, const float *dy, const float *x,
                          const float *W, int B, const fh_conv2d_geom *g, int groups);

#endif
