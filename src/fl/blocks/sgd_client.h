/* One client's round of the FedAvg family (FedAvg, FedProx): theta^t loaded
 * from the payload's head, the add-ons' client hooks (fl/addon.h) around local
 * SGD, and the client's model state (parameters, then buffers) added to the
 * sum with its train split's sample weight n_k. An algorithm that uses it
 * declares FH_ALG_LOCAL_SGD | FH_ALG_SAMPLE_WEIGHTS; its gradient term, if
 * any, goes in sgd.hook. */
#ifndef FH_SGD_CLIENT_H
#define FH_SGD_CLIENT_H

#include "fl/blocks/local_sgd.h"
#include "fl/run.h"

typedef struct {
  fh_local_sgd sgd;
  float *scratch; /* [model_n] the client's model state, when it has buffers */
} fh_sgd_client;

void fh_sgd_client_create(fh_sgd_client *s, const fh_run *run);
void fh_sgd_client_destroy(fh_sgd_client *s);
int fh_sgd_client_update(fh_sgd_client *s, fh_run *run, fh_client_ctx *c, fh_accum *acc, fh_client_report *rep);

/* server_step of the family: run->global <- the weighted mean of the sum. */
int fh_server_mean(fh_run *run, const fh_accum *acc);

#endif
