/* Model-heterogeneous federated learning: every client owns a model of its
 * own architecture, which never leaves it (pFedAFM and the baselines it is
 * compared with: Standalone, LG-FedAvg, FML, FedKD, FedProto, FedGH). What
 * those methods share lives here: the [hetero] deck section (which client
 * gets which architecture, and the local optimiser all of them train with),
 * the per-architecture networks of a rank, and the pieces of local training.
 *
 * A client's network is split where the methods meet: an extractor, any zoo
 * model without its header (an fh_model of its own whose outputs are the
 * features, nn/model.h fh_model_create_extractor), and the header, one
 * Linear d -> C kept here as plain arrays (W [C, d], then b [C]). A client's
 * model as a flat vector, in the client store and on the wire, is the whole
 * architecture's state in state_dict order:
 *
 *   state = [ extractor params (ex_np) | W (C*d) | b (C) | extractor buffers (ex_nb) ]
 *           <------------------ np ------------------->
 *
 * so the first np floats are the trainable parameters, and a state is what
 * fh_model_load_state would take for the complete architecture.
 *
 * Architectures (hetero.models): client k gets entry k mod n of the list. An
 * entry is a model.arch name (cnn1..cnn5 need 3x32x32 samples; mlp takes
 * model.hidden) or "mlp-H1-H2-..." for an MLP with those hidden widths, so
 * that vector data sets get heterogeneous models too. Each rank builds the
 * scratch networks of the architectures its own clients use, and learns the
 * sizes of all of them (the same on every rank, for the store's fields). */
#ifndef FH_HETERO_H
#define FH_HETERO_H

#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "core/rng.h"
#include "data/dataset.h"
#include "nn/model.h"
#include "nn/optim.h"

extern const fh_key_spec fh_hetero_keys[];

typedef struct fh_run fh_run;

/* One architecture: its extractor and header, and scratch for one client at a
 * time. */
typedef struct {
  char arch[48];      /* "cnn1", "mlp-256-64"                              */
  int d, C;           /* features, classes                                 */
  size_t ex_np, ex_nb; /* extractor parameters and buffers                 */
  size_t head_n;      /* C*d + C                                           */
  size_t np, state_n; /* ex_np + head_n; np + ex_nb                        */
  /* Built only where a hosted client uses the architecture (NULL otherwise). */
  fh_model *full;     /* the whole architecture, batch 1: initialisation   */
  fh_model *ex;       /* the extractor, batch max_batch                    */
  float *head, *head_grad; /* [head_n] W then b, and their gradients       */
  float *logits, *probs, *dlogits; /* [max_batch, C]                       */
  float *dfeat;       /* [max_batch, d]                                    */
  int max_batch;
} fh_hnet;

/* Local training settings shared by the methods ([hetero] keys). */
typedef struct {
  int epochs, batch;
  fh_sgd opt;          /* lr, momentum, weight decay                       */
  double clip;         /* max gradient norm of a step (0: none)            */
  int keep_momentum;   /* 1: a client's momentum lives across rounds       */
} fh_hetero_train;

typedef struct {
  int narch;
  fh_hnet *nets;       /* [narch]                                          */
  size_t max_np, max_state; /* over all architectures of the list          */
  int d;               /* the common feature width, or -1 when they differ */
  int C, dim;
  int max_batch;       /* of every network: max(train.batch_size, run.eval_batch) */
  fh_hetero_train tr;
  /* minibatch scratch */
  float *xb;           /* [batch, dim] */
  int32_t *yb;         /* [batch]      */
  int *order;          /* [max_n]      */
  int max_n;
  float *mom_scratch;  /* [max_np] momentum that restarts every round */
  /* training augmentation of the split being trained (fh_hetero_begin) */
  const fh_split *aug_split;
  fh_rng aug_rng;
} fh_hetero;

/* Reads [hetero], sizes every architecture and builds those run's clients use
 * (max_batch = the larger of train.batch_size and run.eval_batch). An
 * architecture that cannot take the data's samples is FH_ERR_CONFIG naming
 * hetero.models. */
int fh_hetero_create(fh_hetero *h, fh_run *run);
void fh_hetero_destroy(fh_hetero *h);

/* The network of client k (k mod narch), built on this rank. */
fh_hnet *fh_hetero_net(fh_hetero *h, int client);
int fh_hetero_arch_index(const fh_hetero *h, int client);
/* FH_ERR_CONFIG naming `who` when the architectures' feature widths differ
 * (methods that share a header or mix features need one width). */
int fh_hetero_need_common_d(const fh_hetero *h, const char *who);
/* Builds one architecture alone (tests, and the shared models of methods):
 * build = 0 sizes it only. arch as in hetero.models. */
int fh_hnet_create(fh_hnet *n, const fh_config *cfg, const char *arch, int in_c, int in_h, int in_w,
                   int num_classes, int max_batch, int build);
void fh_hnet_destroy(fh_hnet *n);

/* ---- a network's state ---------------------------------------------------------- */

/* The network <- state [state_n]; state [state_n] <- the network. */
void fh_hnet_load(fh_hnet *n, const float *state);
void fh_hnet_store(fh_hnet *n, float *state);
/* state [state_n] <- PyTorch's default initialisation of the whole
 * architecture drawn from r (fh_model_init of the complete model). */
void fh_hnet_init_state(fh_hnet *n, fh_rng *r, float *state);
/* Client k's initial model: stream (seed, FH_RNG_INIT, k). */
void fh_hnet_init_client(fh_hnet *n, uint64_t seed, int client, float *state);

/* ---- passes ----------------------------------------------------------------------- */

/* Extractor forward: features [B, d] (the extractor's output buffer). */
const float *fh_hnet_features(fh_hnet *n, const float *x, int B, int train);
/* Header on features feat [B, d] -> logits [B, C] (n->logits). */
const float *fh_hnet_head_forward(fh_hnet *n, const float *feat, int B);
/* Header backward at feat from dlogits [B, C]: head_grad OVERWRITTEN, and
 * dfeat [B, d] = dlogits W when dfeat is not NULL. */
void fh_hnet_head_backward(fh_hnet *n, const float *feat, const float *dlogits, float *dfeat, int B);
/* Extractor backward from dfeat [B, d] after fh_hnet_features(n, x, B, 1):
 * the extractor's gradients OVERWRITTEN. */
void fh_hnet_features_backward(fh_hnet *n, const float *x, const float *dfeat, int B);
/* The whole network: logits [B, C] (n->logits), features kept by the extractor. */
const float *fh_hnet_forward(fh_hnet *n, const float *x, int B, int train);
/* Mean cross-entropy of the whole network on (x, y) and its gradient: every
 * gradient OVERWRITTEN. extra_dfeat [B, d] (may be NULL) is added to the
 * features' gradient (a feature-space loss, FedProto's). n->probs keeps the
 * softmax. Returns the mean loss. */
float fh_hnet_loss_grad(fh_hnet *n, const float *x, const int32_t *y, int B,
                        const float *extra_dfeat);
/* The summed cross-entropy of logits [B, C] against y (n->probs gets the
 * softmax); *correct += the right argmax predictions (lowest index on ties). */
double fh_hnet_score(fh_hnet *n, const float *logits, const int32_t *y, int B, double *correct);
/* Correct predictions and summed cross-entropy of the network on sp, in
 * batches of max_batch (evaluation mode). */
void fh_hnet_evaluate(fh_hnet *n, const fh_split *sp, double *correct, double *loss_sum);

/* Class prototypes of the network on sp (evaluation mode): sums [C, d] +=
 * the features of every sample of each class, counts [C] += how many. */
void fh_hnet_prototypes(fh_hnet *n, const fh_split *sp, double *sums, double *counts);

/* Analytic FLOPs of B samples: extractor and header, forward and backward. */
double fh_hnet_flops_features(const fh_hnet *n, int B, int backward);
double fh_hnet_flops_head(const fh_hnet *n, int B, int backward);

/* ---- optimiser steps ------------------------------------------------------------ */

/* Scales the network's gradients (extractor and header together) so their
 * L2 norm is at most max_norm (torch.nn.utils.clip_grad_norm_ over all the
 * parameters; max_norm 0: nothing). Returns the norm before. */
double fh_hnet_clip(fh_hnet *n, double max_norm);
/* One torch.optim.SGD step of every parameter (extractor, then header) with
 * momentum buffer mom [np] (NULL when the optimiser has no momentum);
 * *steps counts the steps of this buffer (0: the first sets it to g). */
void fh_hnet_sgd_step(fh_hnet *n, const fh_sgd *opt, float *mom, long long *steps);

/* ---- minibatches ---------------------------------------------------------------- */

/* A permutation of sp's rows from rng into h->order (grown as needed). */
void fh_hetero_shuffle(fh_hetero *h, const fh_split *sp, fh_rng *rng);
/* Starts a client's local training on sp: when sp has an augmentation
 * (sp->augment, data.augment_*), the batches fh_hetero_gather draws from sp
 * are augmented from the stream (seed, FH_RNG_AUGMENT, client, round) of the
 * client's shuffling stream rng (as fh_local_sgd_run does), which goes on
 * across every gather until the next begin. Called once per client update
 * before the first gather (fh_hetero_train_ce calls it itself). */
void fh_hetero_begin(fh_hetero *h, const fh_split *sp, const fh_rng *rng);
/* h->xb, h->yb <- rows order[start .. start+B) of sp, augmented when sp has an
 * augmentation (sp must then be the split of the last fh_hetero_begin: a
 * gather without it is an internal error, so augmentation is never skipped
 * silently). */
void fh_hetero_gather(fh_hetero *h, const fh_split *sp, int start, int B);

/* ---- a client's own model in the client store ----------------------------------- */

/* Fields <prefix>.model [max_state], <prefix>.momentum [max_np] (only when
 * the client keeps momentum and hetero.momentum > 0) and <prefix>.steps [1]
 * (f64: the momentum buffer's step count). */
typedef struct {
  int model, mom, steps; /* field ids; mom -1 when not kept */
} fh_hetero_fields;

/* What fh_hetero_acquire hands out; valid until fh_hetero_release. */
typedef struct {
  float *model;      /* the client's state row (first state_n floats used)  */
  float *mom;        /* its momentum [np], or the zeroed scratch, or NULL    */
  long long steps;   /* the momentum's step count (0 with fresh momentum)   */
  double *steps_row;
  int fresh;         /* the model was initialised just now                 */
} fh_hetero_rows;

int fh_hetero_declare(fh_hetero *h, fh_run *run, const char *prefix, fh_hetero_fields *f);
/* Client k's rows; a fresh client gets its initial model (fh_hnet_init_client).
 * with_optimizer = 0 for evaluation (momentum and steps not touched). The
 * model is loaded into the client's network, returned. */
fh_hnet *fh_hetero_acquire(fh_hetero *h, fh_run *run, const fh_hetero_fields *f, int client,
                           int with_optimizer, fh_hetero_rows *r);
/* Ends it: trained = 1 stores the network back (and the optimiser state);
 * otherwise only a fresh model's initialisation is kept. */
int fh_hetero_release(fh_hetero *h, fh_run *run, const fh_hetero_fields *f, int client, int trained,
                      fh_hetero_rows *r);
/* The client's own network on sp (acquire, evaluate, release): the
 * client_evaluate of methods that keep one whole model per client. */
int fh_hetero_evaluate(fh_hetero *h, fh_run *run, const fh_hetero_fields *f, int client, const fh_split *sp,
                       double *correct, double *loss_sum);
/* The client_evaluate of the methods that score a client's own whole
 * network: their run->alg_state begins with an fh_hetero_alg (the hetero
 * part and the own model's fields), directly or as the first member of its
 * first member. */
typedef struct {
  fh_hetero h;
  fh_hetero_fields f;
} fh_hetero_alg;
typedef struct fh_client_ctx fh_client_ctx;
int fh_hetero_client_evaluate(fh_run *run, fh_client_ctx *c, const fh_split *sp, double *correct,
                              double *loss_sum);
/* Bytes of client state per client at most (for the log). */
double fh_hetero_client_bytes(const fh_hetero *h, const fh_hetero_fields *f);

/* E epochs of cross-entropy training of network n on sp (hetero.* settings),
 * batches from rng, augmented when sp is (it calls fh_hetero_begin); mom [np]
 * and *steps the client's optimiser state (mom
 * NULL without momentum). *last_loss: mean loss of the last epoch. A
 * non-finite loss is FH_ERR_DIVERGED. FLOPs are counted. */
int fh_hetero_train_ce(fh_hetero *h, fh_hnet *n, const fh_split *sp, fh_rng *rng, float *mom,
                       long long *steps, double *last_loss);

/* The registry-driven tests' settings for a model-heterogeneous method on
 * their deck's 60-feature vectors: heterogeneous MLPs ending in 16 features,
 * two epochs (src/fl/algorithm.h, fh_test_case). */
#define FH_HETERO_TEST_SETTINGS "hetero.models=mlp-32-16,mlp-24-16,mlp-20-16 hetero.epochs=2"

#endif
