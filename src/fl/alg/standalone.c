/* Standalone, model-heterogeneous: each client trains its own model of its own
 * architecture (hetero.models) on its own data, E epochs (hetero.epochs) of
 * SGD with the [hetero] settings whenever it is sampled, and is tested with
 * it; nothing is broadcast, nothing is reduced (FH_ALG_NO_GLOBAL). The lower
 * bound of pFedAFM's comparison (the paper's "Standalone"): the same models
 * and optimiser as pFedAFM's F_k, without the shared extractor. Local
 * (local.c) is its homogeneous counterpart with the [train] settings.
 *
 * Client state: standalone.model (the architecture's state, hetero.h layout),
 * standalone.momentum and standalone.steps (hetero.optimizer_state = client). */
#include <stddef.h>
#include <stdlib.h>

#include "core/error.h"
#include "core/log.h"
#include "core/rng.h"
#include "fl/algorithm.h"
#include "fl/blocks/hetero.h"
#include "fl/run.h"

typedef struct {
  fh_hetero h;
  fh_hetero_fields f;
} standalone_state;

/* fh_hetero_client_evaluate reads the state as an fh_hetero_alg */
_Static_assert(offsetof(standalone_state, h) == offsetof(fh_hetero_alg, h) && offsetof(standalone_state, f) == offsetof(fh_hetero_alg, f),
               "the hetero part leads the state");

static int standalone_setup(fh_run *run) {
  standalone_state *s = fh_calloc(1, sizeof *s);
  run->alg_state = s;
  FH_TRY(fh_hetero_create(&s->h, run));
  FH_TRY(fh_hetero_declare(&s->h, run, "standalone", &s->f));
  if (run->rank == 0)
    fh_info("standalone: %d architectures, nothing travels; client state up to %.1f MiB per client", s->h.narch,
            fh_hetero_client_bytes(&s->h, &s->f) / 1048576.0);
  return 0;
}

static int standalone_client_update(fh_run *run, fh_client_ctx *c, fh_accum *acc, fh_client_report *rep) {
  (void)acc; /* nothing is sent */
  standalone_state *s = run->alg_state;
  fh_hetero_rows r;
  fh_hnet *net = fh_hetero_acquire(&s->h, run, &s->f, c->id, 1, &r);
  fh_rng rng;
  fh_rng_init(&rng, run->seed, FH_RNG_SHUFFLE, (uint32_t)c->id, (uint32_t)c->round);
  int rc = fh_hetero_train_ce(&s->h, net, &c->data->train, &rng, r.mom, &r.steps, &rep->train_loss);
  rep->weight = (double)c->data->train.n;
  int rc_r = fh_hetero_release(&s->h, run, &s->f, c->id, rc == 0, &r);
  FH_TRY(rc);
  return rc_r;
}

static void standalone_destroy(fh_run *run) {
  standalone_state *s = run->alg_state;
  fh_hetero_destroy(&s->h);
  free(s);
  run->alg_state = NULL;
}

static const fh_test_case standalone_tests[] = {
    {"standalone", FH_TEST_RESUME_SHORT | FH_TEST_DECK, FH_HETERO_TEST_SETTINGS, "", NULL},
    {NULL, 0, NULL, NULL, NULL}};

const fh_algorithm fh_alg_standalone = {
    .name = "standalone",
    .summary = "Standalone: each client trains its own model of its own architecture (hetero.models), "
               "no communication",
    .keys = NULL,
    .setup = standalone_setup,
    .client_update = standalone_client_update,
    .destroy = standalone_destroy,
    .client_evaluate = fh_hetero_client_evaluate,
    .flags = FH_ALG_NO_GLOBAL,
    .tests = standalone_tests,
};
