/* LG-FedAvg (Liang et al. 2020, arXiv:2001.01523), model-heterogeneous as in
 * pFedAFM's comparison: clients keep their extractors (local representations,
 * each of its own architecture, hetero.models) and share the header, the one
 * part all architectures have in common (Linear d -> C: they must end in
 * features of one width).
 *
 *   client k:  its model with the header replaced by the global one; E epochs
 *              of SGD of the whole model (hetero.* settings); sends the header
 *   server:    header^{t+1} = sum n_k header_k / sum n_k
 *
 * Payload: the header's state [W (C*d) | b (C)], both ways. run->model is a
 * Linear(d, C) (softmax regression on features), so model.h5 holds the final
 * global header. A client is tested with its own extractor under the current
 * global header. Client state: lg.model, lg.momentum, lg.steps (hetero.h). */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/log.h"
#include "core/rng.h"
#include "fl/algorithm.h"
#include "fl/blocks/hetero.h"
#include "fl/payload.h"
#include "fl/run.h"

typedef struct {
  fh_hetero h;
  fh_hetero_fields f;
} lg_state;

static int lg_setup(fh_run *run) {
  lg_state *s = fh_calloc(1, sizeof *s);
  run->alg_state = s;
  FH_TRY(fh_hetero_create(&s->h, run));
  FH_TRY(fh_hetero_need_common_d(&s->h, "lg_fedavg"));
  FH_TRY(fh_hetero_declare(&s->h, run, "lg", &s->f));
  /* The global header, drawn from the run's initialisation stream. */
  fh_model *head;
  FH_TRY(fh_model_create_mlp(&head, s->h.d, NULL, 0, s->h.C, 1));
  fh_rng init;
  fh_rng_init(&init, run->seed, FH_RNG_INIT, FH_RNG_NONE, FH_RNG_NONE);
  fh_model_init(head, &init);
  fh_model_free(run->model);
  run->model = head;
  run->model_n = run->payload_n = fh_model_state_len(head);
  free(run->global);
  run->global = fh_malloc(run->payload_n * sizeof(float));
  fh_model_store_state(head, run->global);
  if (run->rank == 0)
    fh_info("lg_fedavg: the header Linear(%d, %d) travels: %zu bytes each way per sampled client; client state "
            "up to %.1f MiB per client", s->h.d, s->h.C, run->payload_n * sizeof(float),
            fh_hetero_client_bytes(&s->h, &s->f) / 1048576.0);
  return 0;
}

static int lg_client_update(fh_run *run, fh_client_ctx *c, fh_accum *acc, fh_client_report *rep) {
  lg_state *s = run->alg_state;
  fh_hetero_rows r;
  fh_hnet *net = fh_hetero_acquire(&s->h, run, &s->f, c->id, 1, &r);
  memcpy(net->head, run->global, net->head_n * sizeof(float));
  fh_rng rng;
  fh_rng_init(&rng, run->seed, FH_RNG_SHUFFLE, (uint32_t)c->id, (uint32_t)c->round);
  int rc = fh_hetero_train_ce(&s->h, net, &c->data->train, &rng, r.mom, &r.steps, &rep->train_loss);
  rep->weight = (double)c->data->train.n;
  if (rc == 0) rc = fh_accum_add(acc, net->head, rep->weight);
  int rc_r = fh_hetero_release(&s->h, run, &s->f, c->id, rc == 0, &r);
  FH_TRY(rc);
  return rc_r;
}

static int lg_server_step(fh_run *run, const fh_accum *acc) {
  fh_accum_mean(acc, run->global);
  return 0;
}

static int lg_client_evaluate(fh_run *run, fh_client_ctx *c, const fh_split *sp, double *correct,
                              double *loss_sum) {
  lg_state *s = run->alg_state;
  fh_hetero_rows r;
  fh_hnet *net = fh_hetero_acquire(&s->h, run, &s->f, c->id, 0, &r);
  memcpy(net->head, run->global, net->head_n * sizeof(float)); /* its extractor, the global header */
  *correct = 0, *loss_sum = 0;
  fh_hnet_evaluate(net, sp, correct, loss_sum);
  return fh_hetero_release(&s->h, run, &s->f, c->id, 0, &r);
}

static void lg_destroy(fh_run *run) {
  lg_state *s = run->alg_state;
  fh_hetero_destroy(&s->h);
  free(s);
  run->alg_state = NULL;
}

static const fh_test_case lg_fedavg_tests[] = {
    {"lg_fedavg", FH_TEST_RESUME_SHORT | FH_TEST_DECK, FH_HETERO_TEST_SETTINGS, "", NULL},
    {NULL, 0, NULL, NULL, NULL}};

const fh_algorithm fh_alg_lg_fedavg = {
    .name = "lg_fedavg",
    .summary = "LG-FedAvg: heterogeneous clients keep their extractors and average the shared header",
    .keys = NULL,
    .setup = lg_setup,
    .client_update = lg_client_update,
    .server_step = lg_server_step,
    .destroy = lg_destroy,
    .client_evaluate = lg_client_evaluate,
    .flags = FH_ALG_NO_GLOBAL_MODEL,
    .tests = lg_fedavg_tests,
};
