/* LIPS (arXiv:2506.00932): transient sparsity against layer-wise inertia, as
 * a switch on top of FedAvg, FedProx and SCAFFOLD ([lips] deck section), and
 * the inertia diagnostics that show the phenomenon (lips.record_inertia, any
 * algorithm with a global model). docs/lips.md has the method, the choices
 * made where the paper is silent, and the outputs.
 *
 * A client's round, with LIPS on (the algorithm calls the two hooks around
 * its local training; nothing else of it changes):
 *   fh_model_load_state(model, theta^t)             the dense broadcast
 *   fh_lips_client_start:  biases and BatchNorm (lips.local_bias_bn) <- the
 *                          client's own copies; on a sparse round every middle
 *                          layer keeps its floor(d_t numel) largest scores,
 *                          the rest start at zero; local SGD will keep the
 *                          last minibatch's gradient
 *   local SGD (dense: pruned weights regrow)
 *   fh_lips_client_end:    the last gradient (half precision) and the
 *                          client-local parameters go to the client store
 *
 * It is an add-on (fl/addon.h, fh_addon_lips), active when LIPS or the
 * inertia record is on: the client hooks run inside the client_update of every
 * algorithm that trains by local SGD (FH_ALG_LOCAL_SGD), the round hooks keep
 * the inertia record, and the resume check keeps the density schedule's T. */
#ifndef FH_LIPS_H
#define FH_LIPS_H

#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "fl/addon.h"
#include "fl/blocks/local_sgd.h"
#include "fl/run.h"

extern const fh_key_spec fh_lips_keys[];
extern const fh_addon fh_addon_lips;

enum { FH_LIPS_SCORE_GW, FH_LIPS_SCORE_W, FH_LIPS_SCORE_G, FH_LIPS_SCORE_RANDOM };

/* The density a client starts round t (0-based) with: the authors' schedule,
 * where the model aggregated in round s = t - 1 is handed out sparse when
 * s mod every == 0, with d = min(1, d0 + (1 - d0) s / T); 1 (dense) otherwise
 * and in round 0. */
double fh_lips_density(int t, double d0, int every, int T);

/* Kept count of a layer of n weights at density d: floor(d n), at most n. */
size_t fh_lips_kept(double d, size_t n);

/* keep [n] <- 1 for the k entries with the largest keys, 0 elsewhere; among
 * equal keys the lower index is kept. A key is an unsigned order (a
 * non-negative float score's bit pattern orders like the score). Radix
 * selection: four passes over the keys and three histograms of at most 2048
 * counters (hist scratch [2048]); linear time, no sort. */
void fh_lips_topk(const uint32_t *key, size_t n, size_t k, uint8_t *keep, uint32_t *hist);

/* The key of a non-negative score: its IEEE bit pattern (NaN above +inf). */
uint32_t fh_lips_score_key(float s);

/* Float -> half for the stored gradients: clamped to +-65504 (the largest
 * finite half) first, so that an overflow saturates instead of becoming inf,
 * then rounded to nearest, ties to even (fh_f32_to_f16); magnitudes below
 * 2^-25 become zero. */
uint16_t fh_lips_grad_to_half(float x);

/* Setup (the add-on's, after the algorithm's, on every rank) declares
 * client-store fields and server vectors, and with lips.local_bias_bn has
 * each client evaluated with its own biases and BatchNorm. FH_ERR_CONFIG for
 * LIPS on an algorithm that does not train by local SGD, or a model without
 * middle layers. */

/* After fh_model_load_state(c->model, run->global) and before local SGD with
 * sgd: prepares c->model as described above. Changes neither run->global nor
 * anything that is sent. A no-op when the add-on is off. (The add-on's
 * client_begin; fh_addons_client_begin runs it in a round.) */
int fh_lips_client_start(fh_run *run, const fh_client_ctx *c, fh_local_sgd *sgd);
/* After local SGD (whether or not it failed: rc_train is its result, which
 * this returns when non-zero): stores what the client keeps. */
int fh_lips_client_end(fh_run *run, const fh_client_ctx *c, fh_local_sgd *sgd, int rc_train);

#endif
