/* A model run as feature extractor + classifier, for losses the model's
 * drivers do not offer: the gradient of ANY loss of the logits and of the
 * classifier's input (the features), and the features themselves. AugFL's
 * server needs all three: the distillation loss against the pretrained model,
 * the optional feature-hint term, and the Jacobian rows of its Gauss-Newton
 * matrix over the classifier.
 *
 * It is the nn engine's own forward and backward (fh_model_create_extractor,
 * fh_model_backward: any zoo model, residual joins and BatchNorm included)
 * for the layers before the classifier, and the Linear kernels for the
 * classifier (z = f W^T + b), so its logits and gradients are the model's
 * bit for bit. The extractor keeps its own copy of the model's parameters and
 * buffers, refreshed from the model at every forward; a training-mode forward
 * moves the copy's BatchNorm running statistics, never the model's.
 *
 *   fh_model_pass *p;
 *   FH_TRY(fh_model_pass_create(&p, m, B));
 *   const float *z = fh_model_pass_forward(p, x, B, 1);   // logits [B, C]
 *   ... dlogits [B, C] = d(loss)/d(z), dfeat [B, d] = d(loss)/d(f) or NULL ...
 *   fh_model_pass_backward(p, x, dlogits, dfeat, B);      // m's grads overwritten
 */
#ifndef FH_MODEL_PASS_H
#define FH_MODEL_PASS_H

#include "nn/model.h"

typedef struct fh_model_pass fh_model_pass;

/* For batches of at most max_batch on model m (which must outlive the pass).
 * FH_ERR_CONFIG when m does not end in a Linear classifier reading the layer
 * before it. */
int fh_model_pass_create(fh_model_pass **out, fh_model *m, int max_batch);
void fh_model_pass_free(fh_model_pass *p);

/* Forward of x [B, in_size] with m's current parameters and buffers, in
 * training mode (batch statistics) or
 * evaluation mode (running statistics); returns the logits [B, C], valid
 * until the next forward. */
const float *fh_model_pass_forward(fh_model_pass *p, const float *x, int B, int train);
/* The model the pass runs. */
fh_model *fh_model_pass_model(const fh_model_pass *p);
/* The classifier's input of the last forward: [B, fh_model_feature_dim]. */
const float *fh_model_pass_features(const fh_model_pass *p);
/* Backward of the last forward (same x and B, in its mode) from dlogits
 * [B, C] plus, when dfeat [B, d] is not NULL, a gradient reaching the
 * features directly: m's grads are OVERWRITTEN with the gradient of the loss
 * whose logit and feature gradients these are. */
void fh_model_pass_backward(fh_model_pass *p, const float *x, const float *dlogits, const float *dfeat, int B);

#endif
