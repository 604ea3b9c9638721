/* One client's round of the FedAvg family (see sgd_client.h). */
#include "fl/blocks/sgd_client.h"

#include <stdlib.h>

#include "core/error.h"
#include "fl/addon.h"
#include "fl/payload.h"

void fh_sgd_client_create(fh_sgd_client *s, const fh_run *run) {
  fh_local_sgd_create(&s->sgd, run->cfg, run->data->dim, fh_model_nparams(run->model));
  s->scratch = fh_malloc(run->model_n * sizeof(float));
}

void fh_sgd_client_destroy(fh_sgd_client *s) {
  fh_local_sgd_destroy(&s->sgd);
  free(s->scratch);
  s->scratch = NULL;
}

int fh_sgd_client_update(fh_sgd_client *s, fh_run *run, fh_client_ctx *c, fh_accum *acc, fh_client_report *rep) {
  fh_model_load_state(c->model, run->global);
  FH_TRY(fh_addons_client_begin(run, c, &s->sgd));
  int rc = fh_local_sgd_run(&s->sgd, c->model, &c->data->train, run->seed, c->id, c->round, &rep->train_loss);
  FH_TRY(fh_addons_client_end(run, c, &s->sgd, rc));
  rep->weight = fh_split_weight(&c->data->train);
  return fh_accum_add_model(acc, c->model, s->scratch, rep->weight);
}

int fh_server_mean(fh_run *run, const fh_accum *acc) {
  fh_accum_mean(acc, run->global);
  return 0;
}
