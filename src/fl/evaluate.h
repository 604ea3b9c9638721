/* Evaluation of a run, spread over ranks: each rank evaluates the clients it
 * hosts and its block of the global test set. The global model reads every
 * training client's test and train rows as one stream cut into batches of
 * run.eval_batch rows, whatever the clients' sizes (the batches are the
 * stream's, not a rank's: the same on any rank count). The per-client counts
 * go into
 * arrays indexed by client id where only the owner writes a non-zero value, so
 * their MPI_Reduce(SUM) is exact, and the global test set's losses are summed
 * in fixed point: every number is the same on any rank count.
 *
 * Modes (each a group of metrics.h5, see docs/outputs.md):
 *   global model, every training client's test and train splits   (always)
 *   global model on the data set's global test set     (eval.global_test)
 *   each client's own model on its test split: personalised methods (the
 *     algorithm's client_model)                                    (personal)
 *   each client fine-tunes the global model on its train split, then tests
 *     (eval.finetune_steps or eval.finetune_epochs)                (finetune)
 *   held-out target clients, never sampled for training, adapt the global
 *     model with eval.adapt_steps steps, then test: AugFL's protocol
 *     (eval.holdout_clients)                                       (holdout)
 * Methods without a global model (FH_ALG_NO_GLOBAL), or whose payload is no
 * model of the data (FH_ALG_NO_GLOBAL_MODEL), report only personal. */
#ifndef FH_EVALUATE_H
#define FH_EVALUATE_H

#include <stdint.h>

#include "core/config.h"
#include "fl/algorithm.h"
#include "io/metrics.h"

extern const fh_key_spec fh_eval_keys[];

/* The clients eval.holdout_clients holds out (a fraction of run.clients below
 * 1, or a count), drawn from the run seed: *ids [*n] ascending, NULL when none.
 * FH_ERR_CONFIG when the value is not a whole count or leaves no client to
 * train. Same result on every rank. */
int fh_holdout_draw(const fh_config *cfg, uint64_t seed, int num_clients, int **ids, int *n);
/* The eval.* keys make sense together and for the algorithm (FH_ERR_CONFIG). */
int fh_eval_check(const fh_config *cfg, const fh_algorithm *alg, int nholdout);

typedef struct fh_evaluator fh_evaluator;

/* Collective over run->comm (sizes the global test set's blocks). */
int fh_evaluator_create(fh_evaluator **out, fh_run *run);
void fh_evaluator_free(fh_evaluator *ev);

/* Collective: evaluates run->global (the same on every rank) after 0-based
 * round t; rank 0 gets the results in m (modes not made stay NaN). Errors
 * (an adaptation that diverges) are agreed over ranks. Leaves run->model
 * holding anything. */
int fh_evaluate(fh_evaluator *ev, fh_run *run, int t, fh_round_metrics *m);

#endif
