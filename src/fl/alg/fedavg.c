/* FedAvg (McMahan et al. 2017): each sampled client runs E epochs of minibatch
 * SGD from theta^t; theta^{t+1} = sum_k w_k theta_k with w_k = n_k / sum n_j.
 * Payload: the model's parameters, then its buffers (BatchNorm running
 * statistics, averaged the same way). Per-client state: none. The client's
 * round is the family's building block (fl/blocks/sgd_client.h). */
#include <stdlib.h>

#include "core/error.h"
#include "fl/algorithm.h"
#include "fl/blocks/sgd_client.h"
#include "fl/run.h"

static int fedavg_setup(fh_run *run) {
  fh_sgd_client *s = fh_calloc(1, sizeof *s);
  fh_sgd_client_create(s, run);
  run->alg_state = s;
  return 0;
}

static int fedavg_client_update(fh_run *run, fh_client_ctx *c, fh_accum *acc, fh_client_report *rep) {
  return fh_sgd_client_update(run->alg_state, run, c, acc, rep);
}

static void fedavg_destroy(fh_run *run) {
  fh_sgd_client_destroy(run->alg_state);
  free(run->alg_state);
  run->alg_state = NULL;
}

static const fh_test_case fedavg_tests[] = {
    {"fedavg_eval", FH_TEST_RANKS, "eval.finetune_epochs=1 eval.holdout_clients=0.2 eval.adapt_steps=2 eval.adapt_batch=8", "finetune/accuracy holdout/accuracy", NULL},
    {"fedavg", FH_TEST_RESUME | FH_TEST_DECK, "", "", NULL},
    {NULL, 0, NULL, NULL, NULL}};

const fh_algorithm fh_alg_fedavg = {
    .name = "fedavg",
    .summary = "FedAvg: weighted average of E epochs of local SGD",
    .keys = NULL,
    .setup = fedavg_setup,
    .client_update = fedavg_client_update,
    .server_step = fh_server_mean,
    .destroy = fedavg_destroy,
    .flags = FH_ALG_LOCAL_SGD | FH_ALG_SAMPLE_WEIGHTS | FH_ALG_SERVER_ANY_RANK,
    .tests = fedavg_tests,
};
