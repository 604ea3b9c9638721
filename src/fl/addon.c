/* The loops over a run's active add-ons (see fl/addon.h). */
#include "fl/addon.h"

#include <stdlib.h>

#include "core/error.h"
#include "fl/run.h"

void *fh_run_addon_state(const fh_run *run, const fh_addon *a) {
  if (!run->addons) return NULL;
  for (int i = 0; i < fh_addon_count(); i++)
    if (fh_addon_at(i) == a) return run->addons[i].on ? run->addons[i].state : NULL;
  return NULL;
}

fh_addon_slot *fh_run_addon_slot(fh_run *run, const fh_addon *a) {
  for (int i = 0; run->addons && i < fh_addon_count(); i++)
    if (fh_addon_at(i) == a) return &run->addons[i];
  return NULL;
}

int fh_addons_enable(fh_run *run) {
  const int n = fh_addon_count();
  run->addons = fh_calloc((size_t)(n > 0 ? n : 1), sizeof *run->addons);
  for (int i = 0; i < n; i++) run->addons[i].on = fh_addon_at(i)->enabled && fh_addon_at(i)->enabled(run->cfg);
  return 0;
}

int fh_addons_data_ready(fh_run *run) {
  for (int i = 0; i < fh_addon_count(); i++) {
    const fh_addon *a = fh_addon_at(i);
    if (!run->addons[i].on || !a->data_ready) continue;
    FH_TRY(fh_error_agree(run->comm, a->data_ready(run, &run->addons[i].state)));
  }
  return 0;
}

int fh_addons_setup(fh_run *run) {
  for (int i = 0; i < fh_addon_count(); i++) {
    const fh_addon *a = fh_addon_at(i);
    if (!run->addons[i].on || !a->setup) continue;
    FH_TRY(fh_error_agree(run->comm, a->setup(run, &run->addons[i].state)));
  }
  return 0;
}

int fh_addons_round_begin(fh_run *run, int t, const char *run_dir) {
  for (int i = 0; i < fh_addon_count(); i++) {
    const fh_addon *a = fh_addon_at(i);
    if (!run->addons[i].on || !a->round_begin) continue;
    FH_TRY(fh_error_agree(run->comm, a->round_begin(run, run->addons[i].state, t, run_dir)));
  }
  return 0;
}

int fh_addons_round_end(fh_run *run, int t, const int *sampled, int m, const char *run_dir) {
  for (int i = 0; i < fh_addon_count(); i++) {
    const fh_addon *a = fh_addon_at(i);
    if (!run->addons[i].on || !a->round_end) continue;
    FH_TRY(fh_error_agree(run->comm, a->round_end(run, run->addons[i].state, t, sampled, m, run_dir)));
  }
  return 0;
}

int fh_addons_client_begin(fh_run *run, const fh_client_ctx *c, fh_local_sgd *sgd) {
  for (int i = 0; i < fh_addon_count(); i++) {
    const fh_addon *a = fh_addon_at(i);
    if (!run->addons[i].on || !a->client_begin) continue;
    FH_TRY(a->client_begin(run, run->addons[i].state, c, sgd));
  }
  return 0;
}

int fh_addons_client_end(fh_run *run, const fh_client_ctx *c, fh_local_sgd *sgd, int rc_train) {
  int rc = rc_train;
  for (int i = 0; i < fh_addon_count(); i++) {
    const fh_addon *a = fh_addon_at(i);
    if (!run->addons[i].on || !a->client_end) continue;
    const int r = a->client_end(run, run->addons[i].state, c, sgd, rc_train);
    if (rc == 0) rc = r;
  }
  return rc;
}

int fh_addons_resume_check(const fh_config *deck, fh_ck_lookup get, const void *ck, const char *run_dir) {
  for (int i = 0; i < fh_addon_count(); i++) {
    const fh_addon *a = fh_addon_at(i);
    if (a->resume_check && a->enabled && a->enabled(deck)) FH_TRY(a->resume_check(deck, get, ck, run_dir));
  }
  return 0;
}

int fh_addons_finish(fh_run *run, const char *run_dir) {
  for (int i = 0; i < fh_addon_count(); i++) {
    const fh_addon *a = fh_addon_at(i);
    if (!run->addons[i].on || !a->finish) continue;
    FH_TRY(fh_error_agree(run->comm, a->finish(run, run->addons[i].state, run_dir)));
  }
  return 0;
}

void fh_addons_free(fh_run *run) {
  if (!run->addons) return;
  for (int i = fh_addon_count() - 1; i >= 0; i--) {
    const fh_addon *a = fh_addon_at(i);
    if (run->addons[i].on && a->destroy) a->destroy(run, run->addons[i].state);
    run->addons[i].state = NULL;
  }
  free(run->addons);
  run->addons = NULL;
}

int fh_run_has_client_model(const fh_run *run) {
  for (int i = 0; run->addons && i < fh_addon_count(); i++)
    if (run->addons[i].on && run->addons[i].client_model) return 1;
  return run->alg->client_model != NULL;
}

int fh_run_client_model(fh_run *run, fh_client_ctx *c) {
  for (int i = 0; run->addons && i < fh_addon_count(); i++)
    if (run->addons[i].on && run->addons[i].client_model)
      return run->addons[i].client_model(run, run->addons[i].state, c);
  return run->alg->client_model(run, c);
}
