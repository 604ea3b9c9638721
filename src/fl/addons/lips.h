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
 * The round loop calls fh_lips_round_begin / fh_lips_round_end around each
 * round when run->lips exists (LIPS on, or the inertia record on). */
#ifndef FH_LIPS_H
#define FH_LIPS_H

#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "fl/blocks/local_sgd.h"
#include "fl/run.h"

extern const fh_key_spec fh_lips_keys[];

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

/* Setup: after the algorithm's setup, on every rank (declares client-store
 * fields and server vectors; may wrap run->alg to evaluate each client with
 * its own biases and BatchNorm). Leaves run->lips NULL when the deck turns
 * neither LIPS nor the inertia record on. FH_ERR_CONFIG for LIPS with another
 * algorithm than fedavg, fedprox or scaffold, or a model without middle layers. */
int fh_lips_setup(fh_run *run);
void fh_lips_free(fh_run *run);

/* After fh_model_load_state(c->model, run->global) and before local SGD with
 * sgd: prepares c->model as described above. Changes neither run->global nor
 * anything that is sent. A no-op when run->lips is NULL. */
int fh_lips_client_start(fh_run *run, const fh_client_ctx *c, fh_local_sgd *sgd);
/* After local SGD (whether or not it failed: rc_train is its result, which
 * this returns when non-zero): stores what the client keeps. */
int fh_lips_client_end(fh_run *run, const fh_client_ctx *c, fh_local_sgd *sgd, int rc_train);

/* Round loop hooks (every rank; 0-based round t; run_dir: the run folder).
 * begin: before the broadcast (the resumed run's first round reads back the
 * inertia rows written so far). end: collective, after server_step, while
 * rank 0's run->global holds theta^{t+1}; sampled [m] the round's clients.
 * Return codes are rank-local: the caller agrees on them. */
int fh_lips_round_begin(fh_run *run, int t, const char *run_dir);
int fh_lips_round_end(fh_run *run, int t, const int *sampled, int m, const char *run_dir);

/* Rank 0, in the resume check: LIPS's schedule depends on T; a resumed run
 * that would change it (lips.rounds = 0 and run.rounds changed from
 * ck_rounds, the checkpoint's value) is FH_ERR_CONFIG. ck_rounds NULL: not
 * known (older checkpoint), accepted. */
int fh_lips_resume_check(const fh_config *cfg, const char *ck_rounds, const char *run_dir);

#endif
