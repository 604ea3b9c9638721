/* Layers: plain forward/backward kernels (shapes in the comments, row-major,
 * batch first) and the generic descriptor a model chains them with.
 *
 * Kernels never allocate. Parameter-gradient outputs ACCUMULATE (dW +=, db +=)
 * so several micro-batches can add into one gradient; input-gradient outputs
 * (dx) are OVERWRITTEN and may be NULL when the caller does not need them (the
 * model's first layer: the gradient of the data is never used).
 *
 * A descriptor (fh_layer) says what a layer is: kind, name, per-sample input and
 * output shapes [C, H, W], its trainable parameters and non-trainable buffers as
 * views into the model's flat buffers, how much private scratch it needs
 * (saved batch statistics, dropout masks, im2col columns), and its ops. Each
 * kind lives in one file (linear.c, relu.c, ...) with its kernels, its ops
 * table and its constructor.
 *
 * A layer reads the output of one earlier layer (`input`), so the model is a
 * list walked in order. A join (the element-wise Add that closes a residual
 * block) reads a second one (`input2`), passed to its ops in the context. An
 * output may so have several readers (a block's input feeds both its first
 * conv and its shortcut): the model's backward sums their dx. */
#ifndef FH_LAYER_H
#define FH_LAYER_H

#include <stddef.h>

#include "core/rng.h"
#include "nn/model.h"

typedef enum {
  FH_LAYER_LINEAR,
  FH_LAYER_RELU,
  FH_LAYER_CONV2D,
  FH_LAYER_MAXPOOL2D,
  FH_LAYER_AVGPOOL2D,
  FH_LAYER_ADAPTIVE_AVGPOOL2D,
  FH_LAYER_FLATTEN,
  FH_LAYER_BATCHNORM2D,
  FH_LAYER_BATCHNORM1D,
  FH_LAYER_ELU,
  FH_LAYER_DROPOUT,
  FH_LAYER_ADD,
  FH_LAYER_LEAKYRELU,
} fh_layer_kind;

/* input / input2 values that are not a layer index. */
#define FH_LAYER_MODEL_INPUT (-1) /* the model's input x                     */
#define FH_LAYER_NO_INPUT (-2)    /* input2 of a layer that reads one output  */

/* How a layer's init op draws its weights (biases follow). */
typedef enum {
  FH_INIT_TORCH_DEFAULT = 0, /* reset_parameters(): U(-1/sqrt(fan_in), +)     */
  FH_INIT_KAIMING_FAN_OUT,   /* conv: kaiming_normal_(mode='fan_out',
                                nonlinearity='relu'), N(0, 2 / (O kh kw)); a
                                bias is 0 (torchvision ResNet and VGG)       */
  FH_INIT_NORMAL_001,        /* linear: N(0, 0.01^2), bias 0 (torchvision VGG) */
  FH_INIT_TRUNC_NORMAL,      /* conv, linear: nn.init.trunc_normal_(std=
                                init_arg[0], a=init_arg[1], b=init_arg[2]),
                                bias as PyTorch's default (model.c)        */
  FH_INIT_KAIMING_FAN_OUT_ALL, /* kaiming_normal_(mode='fan_out') on any
                                weight: N(0, 2 / fan_out), fan_out = the
                                weight's numel over its input channels; bias
                                0 (model.c; layer lists' linear)            */
  FH_INIT_NORMAL,            /* N(0, init_arg[0]^2) weights, bias 0 (model.c) */
} fh_init_kind;

#define FH_LAYER_MAX_PARAMS 4  /* weight, bias, ...                       */
#define FH_LAYER_MAX_BUFFERS 4 /* running_mean, running_var, ...          */

typedef struct fh_layer fh_layer;

/* What a layer's ops see of the model at call time. The layer finds its own
 * parameters at params + L->param[k].offset (and likewise grads, buffers). */
typedef struct {
  float *params;  /* the model's parameter buffer                            */
  float *grads;   /* the model's gradient buffer, same layout (backward only) */
  float *buffers; /* the model's non-trainable buffer (BatchNorm statistics)  */
  float *scratch; /* this layer's scratch: scratch_fixed floats, then
                     scratch_per_sample per batch row                         */
  fh_rng *rng;    /* training-time randomness (dropout); may be NULL          */
  int train;      /* training mode: batch statistics, dropout active          */
  const float *x2; /* a join's second input [B, in_size] (input2's output)    */
  float *dx2;      /* and its gradient, overwritten (NULL: not needed)        */
} fh_layer_ctx;

typedef struct {
  const char *kind_name; /* "Linear", as in a printed PyTorch module */
  /* x [B, in_size] -> y [B, out_size]. */
  void (*forward)(const fh_layer *L, const fh_layer_ctx *c, const float *x, float *y, int B);
  /* dy [B, out_size] -> dx [B, in_size] (NULL: not needed), parameter grads +=.
   * x and y are what forward read and wrote for this batch. */
  void (*backward)(const fh_layer *L, const fh_layer_ctx *c, const float *x, const float *y,
                   const float *dy, float *dx, int B);
  /* PyTorch's default initialisation of the layer's parameters and buffers,
   * drawn from r in view order then element order; NULL when there are none. */
  void (*init)(const fh_layer *L, float *params, float *buffers, fh_rng *r);
  /* Analytic floating-point operations for a batch of B (2 per multiply-add;
   * only the products are counted, the element-wise work is memory-bound).
   * Backward leaves out the dx product when the layer reads the model input. */
  double (*flops_forward)(const fh_layer *L, int B);
  double (*flops_backward)(const fh_layer *L, int B);
  /* "Linear(60, 200)" for summaries; NULL: kind_name alone. */
  void (*describe)(const fh_layer *L, char *buf, size_t cap);
  /* x [B, in_size] -> y [B, out_size] in evaluation mode, keeping nothing a
   * backward would read (no argmax, masks or saved statistics): the values
   * of forward with train = 0, bit for bit. NULL: forward with train = 0.
   * fh_model_infer calls it. */
  void (*infer)(const fh_layer *L, const fh_layer_ctx *c, const float *x, float *y, int B);
  /* The same on relu(x), the ReLU (x < 0 ? 0 : x, as fh_relu_forward) taken
   * of each element as it is read: fh_model_infer folds a ReLU layer whose
   * only reader is this one into it, saving the pass over its output.
   * NULL: not offered. */
  void (*infer_relu)(const fh_layer *L, const fh_layer_ctx *c, const float *x, float *y, int B);
} fh_layer_ops;

struct fh_layer {
  fh_layer_kind kind;
  const fh_layer_ops *ops;
  char name[32];     /* "fc1"; parameter views are "fc1.weight", ...         */
  int input;         /* index of the layer whose output this one reads; -1:
                        the model input. Set by the model when it is added.   */
  int input2;        /* a join's second input, likewise; FH_LAYER_NO_INPUT for
                        every other layer                                     */
  int in_shape[3];   /* per sample [C, H, W]; a flat vector is [n, 1, 1]      */
  int out_shape[3];
  size_t in_size, out_size; /* C*H*W                                          */
  int nparams;              /* trainable tensors, named "<name>.<suffix>"     */
  fh_param_view param[FH_LAYER_MAX_PARAMS]; /* offsets set by the model       */
  int nbuffers;                             /* non-trainable tensors          */
  fh_param_view buffer[FH_LAYER_MAX_BUFFERS];
  size_t scratch_fixed;      /* floats of private scratch (per-channel stats)  */
  size_t scratch_per_sample; /* and per batch row (masks, im2col columns)      */
  int fan_in;                /* for the default initialisation bound           */
  fh_init_kind init_kind;    /* how init draws the weights (builder's choice)  */
  float init_arg[3];         /* FH_INIT_TRUNC_NORMAL: std, lower, upper bound  */
  int bias_const;            /* 1: the bias (param[1]) is set to bias_value
                                after the weights are drawn                   */
  float bias_value;
  int middle;                /* a LIPS "middle" layer: its weight is
                                sparsified (fh_model_view_is_middle)          */
  int fused_relu;            /* set by fh_model_finish: a BatchNorm or Add whose
                                only reader is a ReLU applies that ReLU itself
                                (forward and backward); the ReLU then shares
                                its input's output and gradient buffers and
                                is skipped (1 on both)                        */
  int iarg[6];               /* kind-specific: kernel, stride, padding, ...    */
  float farg[2];             /* kind-specific: dropout p, BatchNorm eps, ...   */
};

/* Fills a view named "<layer>.<suffix>" of the given shape (offset 0 until the
 * model places it). */
void fh_view_set(fh_param_view *v, const char *layer, const char *suffix, int ndim,
                 const int *shape);

/* ---- Add (add.c) ----------------------------------------------------------- */

/* The join of a residual block: y [B, n] = x [B, n] + x2 [B, n] (nn's
 * `out += identity`), reading input and input2; backward: dx = dx2 = dy. No
 * parameters, no scratch, no products. Per-sample shape [c, h, w]. */
fh_layer fh_layer_add(const char *name, int c, int h, int w);

/* ---- Linear (linear.c) ---------------------------------------------------- */

/* x [B, in] -> y [B, out] = x W^T + b; W [out, in] (PyTorch layout), b [out]
 * (NULL: no bias). */
void fh_linear_forward(float *y, const float *x, const float *W, const float *b, int B, int in,
                       int out);
/* dy [B, out] -> dx [B, in] = dy W (NULL: skipped), dW [out, in] += dy^T x,
 * db [out] += sum over the batch of dy (NULL: no bias). */
void fh_linear_backward(float *dx, float *dW, float *db, const float *dy, const float *x,
                        const float *W, int B, int in, int out);
/* Linear(in, out) with bias: views "<name>.weight" [out, in], "<name>.bias" [out]. */
fh_layer fh_layer_linear(const char *name, int in, int out);
/* The same with or without the bias (bias = 0: the weight view alone). */
fh_layer fh_layer_linear_bias(const char *name, int in, int out, int bias);

/* ---- ReLU (relu.c) -------------------------------------------------------- */

/* x [n] -> y [n] = max(x, 0); NaN propagates as in torch.relu. y may equal x. */
void fh_relu_forward(float *y, const float *x, size_t n);
/* dy [n], y [n] (the forward output) -> dx [n] = dy where y > 0, else 0.
 * dx may equal dy. */
void fh_relu_backward(float *dx, const float *dy, const float *y, size_t n);
/* ReLU on a per-sample tensor of shape [c, h, w]. */
fh_layer fh_layer_relu(const char *name, int c, int h, int w);

#endif
