/* A model: layers (a chain, with the joins of residual blocks reading two
 * earlier outputs) whose trainable parameters live in ONE contiguous float
 * buffer (so aggregation is one MPI call) with named views into it, and whose
 * gradients live in a second buffer of the same layout. Non-trainable buffers
 * (BatchNorm running statistics) live in a third contiguous buffer with their
 * own named views. Views are named as PyTorch's state_dict keys.
 *
 * Usage per client step:
 *   memcpy(fh_model_params(m), theta, n * sizeof(float));
 *   float loss = fh_model_loss_grad(m, x, y, B);   // forward + CE + backward
 *   fh_sgd_step(&opt, fh_model_params(m), fh_model_grads(m), state, n);
 */
#ifndef FH_MODEL_H
#define FH_MODEL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/config.h"
#include "core/rng.h"

#define FH_MAX_DIMS 4

/* A named slice of a flat buffer, e.g. "fc1.weight" [200, 60] at offset 0. */
typedef struct {
  char name[48];
  size_t offset; /* in floats */
  size_t numel;
  int ndim;
  int shape[FH_MAX_DIMS];
} fh_param_view;

typedef struct fh_model fh_model;

/* Deck keys of the model section (model.arch, model.hidden, ...). */
extern const fh_key_spec fh_model_keys[];

/* Builds the architecture named by model.arch for inputs of shape [in_c, in_h,
 * in_w] (a flat feature vector is [d, 1, 1]) and num_classes outputs. Parameters
 * are left uninitialised: call fh_model_init. max_batch sizes the activation
 * workspace. Returns 0 or an FH_ERR_CONFIG error. */
int fh_model_create(fh_model **out, const fh_config *cfg, int in_c, int in_h, int in_w,
                    int num_classes, int max_batch);
void fh_model_free(fh_model *m);

/* PyTorch's default initialisation (kaiming_uniform(a = sqrt(5)) for weights,
 * U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for biases), drawn from r. */
void fh_model_init(fh_model *m, fh_rng *r);

size_t fh_model_nparams(const fh_model *m);
float *fh_model_params(fh_model *m);
float *fh_model_grads(fh_model *m);
int fh_model_nviews(const fh_model *m);
const fh_param_view *fh_model_view(const fh_model *m, int i);
const char *fh_model_arch(const fh_model *m);
int fh_model_num_classes(const fh_model *m);

/* Forward pass on x [B, in_c*in_h*in_w] (B <= max_batch); returns the logits
 * [B, num_classes], valid until the next call. train selects training mode
 * (dropout, batch statistics) once such layers exist. */
const float *fh_model_forward(fh_model *m, const float *x, int B, int train);

/* The evaluation-mode forward (fh_model_forward with train = 0), the same
 * logits bit for bit, for inference only: it keeps no activations for a
 * backward (no argmax, masks or statistics; a backward after it is an
 * internal error), runs the leading layers of feature maps in pieces of
 * rows that stay in cache, the dense head on the whole batch, and takes a
 * ReLU before a max pool inside the pool. Returns the logits [B,
 * num_classes], B <= max_batch, valid until the next call. */
const float *fh_model_infer(fh_model *m, const float *x, int B);
/* The same where only rows [lo, hi) of the batch are wanted (the others pad
 * a batch to its fixed size): their logits are those fh_model_infer gives,
 * bit for bit; pieces of the feature-map layers without a wanted row are
 * skipped, and the other rows' logits are meaningless. */
const float *fh_model_infer_rows(fh_model *m, const float *x, int B, int lo, int hi);

/* Forward in training mode, mean softmax cross-entropy against labels y [B],
 * backward: grads are OVERWRITTEN with d(mean loss)/d(params). Returns the mean
 * loss (NaN/Inf propagate: the caller checks). */
float fh_model_loss_grad(fh_model *m, const float *x, const int32_t *y, int B);

/* Evaluation-mode forward; returns the number of correct argmax predictions
 * and adds the summed cross-entropy to *loss_sum (may be NULL). */
int fh_model_evaluate(fh_model *m, const float *x, const int32_t *y, int B, double *loss_sum);

/* Floating-point operations of one forward (fwd) and one backward (bwd) pass
 * for a batch of B, from per-layer analytic counts (2 per multiply-add). */
double fh_model_flops_forward(const fh_model *m, int B);
double fh_model_flops_backward(const fh_model *m, int B);

/* ---- Beyond the first milestone's interface ------------------------------- */

/* The multilayer perceptron without a deck: Linear(d, h1)-ReLU-...-Linear(hk, C)
 * with layers named fc1, fc2, ...; nhidden = 0 is softmax regression. */
int fh_model_create_mlp(fh_model **out, int d, const int *hidden, int nhidden, int num_classes,
                        int max_batch);

int fh_model_max_batch(const fh_model *m);
size_t fh_model_input_size(const fh_model *m); /* in_c * in_h * in_w */

/* The trainable view named like a state_dict key ("fc1.weight"), or NULL. */
const fh_param_view *fh_model_find_view(const fh_model *m, const char *name);

/* Non-trainable buffers (BatchNorm running statistics): one contiguous buffer
 * with its own views, empty for models without such layers. */
size_t fh_model_nbuffers(const fh_model *m);
float *fh_model_buffers(fh_model *m);
const float *fh_model_buffers_ro(const fh_model *m); /* the same, read-only */
int fh_model_nbuffer_views(const fh_model *m);
const fh_param_view *fh_model_buffer_view(const fh_model *m, int i);

/* Training-mode randomness (dropout) is drawn from r from now on; the caller
 * owns r and keys it per client and round. NULL: no such layer may be active. */
void fh_model_set_rng(fh_model *m, fh_rng *r);

/* The layers in forward order (the descriptor is in nn/layer.h). */
typedef struct fh_layer fh_layer;
int fh_model_nlayers(const fh_model *m);
const fh_layer *fh_model_layer(const fh_model *m, int i);

/* One line for the run's log: "mlp: [60] Linear(60, 200) ReLU ... -> [10],
 * 54410 parameters". Returns what snprintf would. */
int fh_model_summary(const fh_model *m, char *buf, size_t cap);

/* ---- Residual nets, LIPS, inspection ------------------------------------------ */

/* Backward of the last forward (fh_model_forward(m, x, B, train), same x
 * and B) from dlogits [B, C], the gradient of any loss with respect to the
 * logits: grads are OVERWRITTEN. It follows the forward's mode: after an
 * evaluation-mode forward, BatchNorm differentiates its running statistics
 * as constants and dropout is the identity, as PyTorch does in model.eval(). */
void fh_model_backward(fh_model *m, const float *x, const float *dlogits, int B);

/* The gradient of the loss with respect to the model input x: off by default
 * (the first layer then skips that product). With it on, every backward also
 * forms it, and fh_model_input_grad returns it [B, in_size] until the next
 * backward; NULL while off. The FLOP counts leave that product out. */
void fh_model_set_input_grad(fh_model *m, int on);
const float *fh_model_input_grad(const fh_model *m);

/* The layer (index for fh_model_layer) that owns trainable view i. */
int fh_model_view_layer(const fh_model *m, int i);
/* 1 when trainable view i is the weight of a LIPS "middle" layer: for the
 * ResNets every 3x3 and 1x1 conv inside the residual stages (conv1, conv2 and
 * the downsample conv of each block), for vgg11_bn every conv after the first;
 * never the stem, a BatchNorm, a bias or the classifier. 0 for every view of
 * mlp and cnn1..cnn5, which have no such layers. */
int fh_model_view_is_middle(const fh_model *m, int i);

/* fh_model_loss_grad with each layer's forward and backward seconds (of the
 * calling thread's CPU time) written to t_forward [nlayers] and t_backward
 * [nlayers] (either may be NULL). */
float fh_model_loss_grad_timed(fh_model *m, const float *x, const int32_t *y, int B,
                               double *t_forward, double *t_backward);

/* The layer table on f: per layer its index, name, module, what it reads,
 * output shape and forward / backward FLOPs for a batch of B; under it each
 * parameter view (state_dict name, shape, offset in the parameter buffer,
 * "middle" when LIPS sparsifies it) and each buffer (offset in the buffer
 * array); then the totals. */
void fh_model_print_table(const fh_model *m, FILE *f, int B);

/* ---- Extractor / header split (model-heterogeneous methods, pFedAFM) ------- */

/* Every architecture ends in one Linear classifier, the header; the layers
 * before it are the feature extractor. The header's views are views
 * [fh_model_header_first_view(m), fh_model_nviews(m)) ("fc3.weight",
 * "fc3.bias" for cnn1..cnn5), and its input, the extractor's output, has
 * fh_model_feature_dim(m) floats per sample (500 for cnn1..cnn5). */
int fh_model_header_first_view(const fh_model *m);
int fh_model_feature_dim(const fh_model *m);

/* With an extractor (below) the outputs are the features, so fh_model_backward
 * backpropagates a feature gradient. */

/* A new model made of m's feature extractor alone: the layers before the
 * header, named as in m, for inputs of m's shape, whose outputs are the
 * features (fh_model_num_classes = fh_model_feature_dim(m)) and whose
 * parameter and buffer layout is m's without the header: its parameters are
 * the first fh_model_view(m, fh_model_header_first_view(m))->offset of m's,
 * its buffers all of m's. Parameters uninitialised; activation workspace for
 * max_batch. Its arch is m's with "-ex" appended. Two models then run on one
 * batch and meet in feature space (pFedAFM's mixture, prototypes). */
int fh_model_create_extractor(fh_model **out, const fh_model *m, int max_batch);

/* Applies the deck's model.conv to the process (nn/conv_dnnl.h) when the deck
 * sets it; a config of defaults alone (such as a pretrained model's) leaves
 * the choice as it is. fh_model_create calls it. Returns 0 or FH_ERR_CONFIG
 * (model.conv = onednn in a build without oneDNN). */
int fh_model_conv_choice(const fh_config *cfg);

/* The width of the network's last layer for a data set of `classes` classes:
 * model.outputs, or the classes when it is 0 (its default). FH_ERR_CONFIG
 * (one line) when it is set below the classes. Logits beyond the classes are
 * never a label; softmax, loss and argmax run over all of them. */
int fh_model_outputs(const fh_config *cfg, int classes, int *outputs);

/* The architecture named arch (a model.arch choice), the other model.* keys
 * (model.hidden) from cfg: fh_model_create with the name given. */
int fh_model_create_arch(fh_model **out, const fh_config *cfg, const char *arch, int in_c,
                         int in_h, int in_w, int num_classes, int max_batch);

#endif
