/* An add-on: a feature that sits on top of whatever algorithm runs (LIPS and
 * the inertia record, FedGC's generated data and membership inference, the
 * server's pretrained model). It fills this table and takes one line in the
 * add-on registry (src/fl/registry.c). The engine (src/fl/run_setup.c,
 * src/fl/round.c, src/fl/checkpoint.c, src/cmd/keys.c) loops over the active
 * add-ons and names none of them.
 *
 * When the hooks run, in a run's life:
 *   fh_run_create   enabled(cfg) decides which add-ons are active;
 *                   data_ready: after the data are loaded, before the model
 *                   and the algorithm exist (FedGC merges its samples here);
 *                   setup: after the algorithm's setup (declare client-store
 *                   fields and server vectors here, like an algorithm)
 *   each round      round_begin before the broadcast; for every sampled
 *                   client of an algorithm that trains by local SGD
 *                   (FH_ALG_LOCAL_SGD), client_begin after the global model is
 *                   loaded and client_end after local SGD; round_end after
 *                   server_step, while rank 0's run->global holds theta^{t+1}
 *   --resume        resume_check on rank 0, with the checkpoint's deck
 *   end of the run  finish (a complete run only), then destroy
 *
 * An add-on keeps its state in its own slot (fh_run_addon_state); it never
 * replaces run->alg. Like an algorithm's, that state must be scratch or
 * derived from the deck: what must survive a checkpoint goes in client-store
 * fields or server vectors. Hooks of the setup, round and finish stages are
 * called on every rank and may be collective; the loops agree on each add-on's
 * return code before the next one runs. Client hooks are rank-local. */
#ifndef FH_ADDON_H
#define FH_ADDON_H

#include "core/config.h"
#include "fl/algorithm.h"
#include "fl/blocks/local_sgd.h"

/* A value of the checkpoint's resolved deck, NULL when it has no such key. */
typedef const char *(*fh_ck_lookup)(const void *ck, const char *key);

typedef struct fh_addon {
  const char *name;        /* what `fedhpc help addons` lists       */
  const char *summary;     /* one line                               */
  const fh_key_spec *keys; /* its own deck section, or NULL          */
  /* Whether the deck turns it on for a run (NULL: never; an add-on of keys
   * only, read by an algorithm or a command). */
  int (*enabled)(const fh_config *cfg);
  /* Every rank; each may be NULL. *state is the add-on's slot. */
  int (*data_ready)(fh_run *run, void **state);
  int (*setup)(fh_run *run, void **state);
  int (*round_begin)(fh_run *run, void *state, int t, const char *run_dir);
  int (*round_end)(fh_run *run, void *state, int t, const int *sampled, int m, const char *run_dir);
  /* Rank-local, around one client's local SGD (sgd: the algorithm's). */
  int (*client_begin)(fh_run *run, void *state, const fh_client_ctx *c, fh_local_sgd *sgd);
  int (*client_end)(fh_run *run, void *state, const fh_client_ctx *c, fh_local_sgd *sgd, int rc_train);
  /* Rank 0, --resume: ck gives the checkpoint's deck; a refusal is an error. */
  int (*resume_check)(const fh_config *deck, fh_ck_lookup get, const void *ck, const char *run_dir);
  int (*finish)(fh_run *run, void *state, const char *run_dir);
  void (*destroy)(fh_run *run, void *state);
  /* Its cases of the registry-driven tests (fl/algorithm.h), each naming its
   * algorithm; NULL: none. */
  const fh_test_case *tests;
} fh_addon;

/* Add-on registry (src/fl/registry.c). */
int fh_addon_count(void);
const fh_addon *fh_addon_at(int i);

/* One add-on's place in a run (run->addons [fh_addon_count()]). */
typedef struct fh_addon_slot {
  int on;      /* enabled for this run   */
  void *state; /* what its setup made    */
  /* Set by an add-on's setup when it decides how each client is evaluated
   * (LIPS with client-local biases and BatchNorm): replaces the algorithm's
   * client_model (fh_run_client_model). */
  int (*client_model)(fh_run *run, void *state, fh_client_ctx *c);
} fh_addon_slot;

/* The state of add-on a in this run (NULL when it is off or has none). */
void *fh_run_addon_state(const fh_run *run, const fh_addon *a);
/* Add-on a's slot in this run (its setup sets client_model there). */
fh_addon_slot *fh_run_addon_slot(fh_run *run, const fh_addon *a);

/* The loops the engine calls (src/fl/addon.c). The collective ones (every
 * rank) agree on each add-on's code; the client ones are rank-local. */
int fh_addons_enable(fh_run *run);
int fh_addons_data_ready(fh_run *run);
int fh_addons_setup(fh_run *run);
int fh_addons_round_begin(fh_run *run, int t, const char *run_dir);
int fh_addons_round_end(fh_run *run, int t, const int *sampled, int m, const char *run_dir);
int fh_addons_client_begin(fh_run *run, const fh_client_ctx *c, fh_local_sgd *sgd);
/* Every active add-on's client_end runs; the first non-zero code wins
 * (rc_train first). */
int fh_addons_client_end(fh_run *run, const fh_client_ctx *c, fh_local_sgd *sgd, int rc_train);
int fh_addons_resume_check(const fh_config *deck, fh_ck_lookup get, const void *ck, const char *run_dir);
int fh_addons_finish(fh_run *run, const char *run_dir);
void fh_addons_free(fh_run *run);

/* How client c is evaluated with its own model: an add-on's client_model,
 * else the algorithm's. fh_run_has_client_model: whether either exists. */
int fh_run_has_client_model(const fh_run *run);
int fh_run_client_model(fh_run *run, fh_client_ctx *c);

#endif
