/* FedGH (Yi et al., ACM MM 2023, arXiv:2305.13137): model-heterogeneous
 * clients (hetero.models, one feature width d) share a generalised global
 * header trained at the server on the clients' class prototypes.
 *
 *   client k:  its model with the header replaced by the global one; E epochs
 *              of SGD (hetero.*) of the whole model; then, in evaluation mode
 *              over its train split, the mean feature vector of each class it
 *              holds (its local prototypes), which it sends
 *   server:    the prototypes of all sampled clients are a training set
 *              (prototype, class); fedgh.server_epochs epochs of SGD
 *              (fedgh.server_lr, minibatches of train.batch_size in an order
 *              drawn from the run's stream for the round) of the global
 *              header on their cross-entropy; the new header goes out
 *
 * Payload [header (C*d + C) | one slot per sampled client: prototypes (C*d),
 * present (C)]: the header goes down (the broadcast carries it alone), each
 * client fills only its own slot
 * (its position among the round's sampled clients, drawn as the round loop
 * draws them), so the reduction hands the server every client's prototypes
 * unchanged. run->model is the header, Linear(d, C): model.h5 holds the final
 * global header. Clients are scored with their own models (its header as
 * trained on top of the global one, as the authors test). Client state:
 * fedgh.model, fedgh.momentum, fedgh.steps; server state: fedgh.round. */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/log.h"
#include "core/rng.h"
#include "fl/algorithm.h"
#include "fl/blocks/hetero.h"
#include "fl/payload.h"
#include "fl/run.h"
#include "nn/loss.h"

static const fh_key_spec fedgh_keys[] = {
    {"fedgh.server_lr", FH_T_REAL, "0.01", 0, 1e6, NULL, "SGD learning rate of the global header at the server"},
    {"fedgh.server_epochs", FH_T_INT, "1", 1, 100000, NULL, "epochs over the round's prototypes at the server"},
    FH_KEYS_END};

typedef struct {
  fh_hetero h;
  fh_hetero_fields f;
  int C, d, m;          /* classes, features, clients per round */
  size_t head_n, slot_n; /* C*d + C each                         */
  float server_lr;
  int server_epochs, batch;
  double *round;        /* server state: rounds done (rank 0)   */
  int *sampled;         /* [m]                                  */
  double *sums, *counts;
  float *contrib;       /* [slot_n]: one client's slot         */
  fh_hnet head;         /* the server's header on features: mlp with no hidden layer */
  float *px;            /* [m*C, d] the round's prototypes      */
  int32_t *py;          /* [m*C]                                */
  int *order;
  int32_t *yb;          /* [batch]                              */
} fedgh_state;

/* fh_hetero_client_evaluate reads the state as an fh_hetero_alg */
_Static_assert(offsetof(fedgh_state, h) == offsetof(fh_hetero_alg, h) && offsetof(fedgh_state, f) == offsetof(fh_hetero_alg, f),
               "the hetero part leads the state");

/* Client's position among round t's sampled clients (drawn as the round
 * loop draws them), or -1. */
static int slot_of(fedgh_state *s, const fh_run *run, int t, int client) {
  fh_run_sample(run, t, s->sampled);
  for (int j = 0; j < s->m; j++)
    if (s->sampled[j] == client) return j;
  return -1;
}

static int fedgh_setup(fh_run *run) {
  fedgh_state *s = fh_calloc(1, sizeof *s);
  run->alg_state = s;
  FH_TRY(fh_hetero_create(&s->h, run));
  FH_TRY(fh_hetero_need_common_d(&s->h, "fedgh"));
  FH_TRY(fh_hetero_declare(&s->h, run, "fedgh", &s->f));
  s->C = s->h.C, s->d = s->h.d;
  s->m = fh_run_sampled_count(run);
  s->server_lr = (float)fh_cfg_real(run->cfg, "fedgh.server_lr");
  s->server_epochs = (int)fh_cfg_int(run->cfg, "fedgh.server_epochs");
  s->batch = s->h.tr.batch;
  s->head_n = s->slot_n = (size_t)s->C * s->d + s->C;
  /* The global header, from the run's initialisation stream; the payload
   * grows by the slots. */
  char arch[32];
  snprintf(arch, sizeof arch, "mlp-%d", s->d); /* unused hidden layer: only the header is used */
  FH_TRY(fh_hnet_create(&s->head, run->cfg, arch, s->d, 1, 1, s->C, s->batch, 1));
  fh_model *lin;
  FH_TRY(fh_model_create_mlp(&lin, s->d, NULL, 0, s->C, 1));
  fh_rng init;
  fh_rng_init(&init, run->seed, FH_RNG_INIT, FH_RNG_NONE, FH_RNG_NONE);
  fh_model_init(lin, &init);
  fh_model_free(run->model);
  run->model = lin;
  run->model_n = s->head_n;
  run->payload_n = s->head_n + (size_t)s->m * s->slot_n;
  run->bcast_n = s->head_n; /* the slots only go up */
  free(run->global);
  run->global = fh_calloc(run->payload_n, sizeof(float));
  fh_model_store_state(lin, run->global);
  s->round = fh_run_server_state_typed(run, "fedgh.round", FH_STATE_F64, 1);
  s->sampled = fh_malloc((size_t)s->m * sizeof(int));
  s->sums = fh_malloc((size_t)s->C * s->d * sizeof(double));
  s->counts = fh_malloc((size_t)s->C * sizeof(double));
  s->contrib = fh_malloc(s->slot_n * sizeof(float));
  s->px = fh_malloc((size_t)s->m * s->C * s->d * sizeof(float));
  s->py = fh_malloc((size_t)s->m * s->C * sizeof(int32_t));
  s->order = fh_malloc((size_t)s->m * s->C * sizeof(int));
  s->yb = fh_malloc((size_t)s->batch * sizeof(int32_t));
  if (run->rank == 0)
    fh_info("fedgh: the header (%zu bytes) goes down, each client's class prototypes (%zu bytes) go up; client "
            "state up to %.1f MiB per client", s->head_n * sizeof(float), s->slot_n * sizeof(float),
            fh_hetero_client_bytes(&s->h, &s->f) / 1048576.0);
  return 0;
}

static int fedgh_client_update(fh_run *run, fh_client_ctx *c, fh_accum *acc, fh_client_report *rep) {
  fedgh_state *s = run->alg_state;
  const int j = slot_of(s, run, c->round, c->id);
  if (j < 0) return FH_FAIL(FH_ERR_RUNTIME, "fedgh: client %d is not among round %d's sampled clients", c->id,
                            c->round + 1);
  fh_hetero_rows r;
  fh_hnet *net = fh_hetero_acquire(&s->h, run, &s->f, c->id, 1, &r);
  memcpy(net->head, run->global, s->head_n * sizeof(float));
  fh_rng rng;
  fh_rng_init(&rng, run->seed, FH_RNG_SHUFFLE, (uint32_t)c->id, (uint32_t)c->round);
  int rc = fh_hetero_train_ce(&s->h, net, &c->data->train, &rng, r.mom, &r.steps, &rep->train_loss);
  rep->weight = (double)c->data->train.n;
  if (rc == 0) {
    const size_t cd = (size_t)s->C * s->d;
    memset(s->sums, 0, cd * sizeof(double));
    memset(s->counts, 0, (size_t)s->C * sizeof(double));
    fh_hnet_prototypes(net, &c->data->train, s->sums, s->counts);
    float *slot = s->contrib; /* slot j only: the other slots and the head stay untouched */
    memset(slot, 0, s->slot_n * sizeof(float));
    for (int k = 0; k < s->C; k++) {
      if (s->counts[k] == 0) continue;
      for (int i = 0; i < s->d; i++)
        slot[(size_t)k * s->d + i] = (float)(s->sums[(size_t)k * s->d + i] / s->counts[k]);
      slot[cd + k] = 1.0f;
    }
    rc = fh_accum_add_range(acc, slot, s->head_n + (size_t)j * s->slot_n, s->slot_n, 1.0);
  }
  int rc_r = fh_hetero_release(&s->h, run, &s->f, c->id, rc == 0, &r);
  FH_TRY(rc);
  return rc_r;
}

static int fedgh_server_step(fh_run *run, const fh_accum *acc) {
  fedgh_state *s = run->alg_state;
  const int C = s->C, d = s->d;
  const size_t cd = (size_t)C * d;
  /* the round's prototypes, slot by slot and class by class */
  int n = 0;
  for (int j = 0; j < s->m; j++) {
    const int64_t *slot = acc->sum + s->head_n + (size_t)j * s->slot_n;
    for (int k = 0; k < C; k++) {
      if ((double)slot[cd + k] / acc->scale < 0.5) continue;
      for (int i = 0; i < d; i++) s->px[(size_t)n * d + i] = (float)((double)slot[(size_t)k * d + i] / acc->scale);
      s->py[n++] = k;
    }
  }
  fh_hnet *hd = &s->head;
  memcpy(hd->head, run->global, s->head_n * sizeof(float));
  fh_rng rng;
  fh_rng_init(&rng, run->seed, FH_RNG_ALGORITHM, FH_RNG_NONE, (uint32_t)s->round[0]);
  const fh_sgd opt = {.lr = s->server_lr};
  long long steps = 0;
  for (int e = 0; e < s->server_epochs && n > 0; e++) {
    fh_rng_permutation(&rng, s->order, n);
    for (int b0 = 0; b0 < n; b0 += s->batch) {
      const int B = n - b0 < s->batch ? n - b0 : s->batch;
      float *x = hd->dfeat; /* [batch, d] scratch for the gathered prototypes */
      int32_t *y = s->yb;
      for (int b = 0; b < B; b++) {
        memcpy(x + (size_t)b * d, s->px + (size_t)s->order[b0 + b] * d, (size_t)d * sizeof(float));
        y[b] = s->py[s->order[b0 + b]];
      }
      const float *z = fh_hnet_head_forward(hd, x, B);
      const double loss = fh_softmax_ce_forward(hd->probs, z, y, B, C);
      if (!isfinite(loss))
        return FH_FAIL(FH_ERR_DIVERGED,
                       "fedgh: the server's header loss became %s; lower fedgh.server_lr (now %g)",
                       isnan(loss) ? "NaN" : "infinite", (double)s->server_lr);
      fh_softmax_ce_backward(hd->dlogits, hd->probs, y, B, C);
      fh_hnet_head_backward(hd, x, hd->dlogits, NULL, B);
      fh_sgd_step(&opt, hd->head, hd->head_grad, NULL, s->head_n, &steps);
    }
  }
  memset(run->global, 0, run->payload_n * sizeof(float));
  memcpy(run->global, hd->head, s->head_n * sizeof(float));
  s->round[0] += 1;
  return 0;
}

static void fedgh_destroy(fh_run *run) {
  fedgh_state *s = run->alg_state;
  fh_hetero_destroy(&s->h);
  fh_hnet_destroy(&s->head);
  free(s->sampled);
  free(s->sums);
  free(s->counts);
  free(s->contrib);
  free(s->px);
  free(s->py);
  free(s->order);
  free(s->yb);
  free(s);
  run->alg_state = NULL;
}

static const fh_test_case fedgh_tests[] = {
    {"fedgh", FH_TEST_RESUME_SHORT | FH_TEST_DECK, FH_HETERO_TEST_SETTINGS, "", NULL},
    {NULL, 0, NULL, NULL, NULL}};

const fh_algorithm fh_alg_fedgh = {
    .name = "fedgh",
    .summary = "FedGH: a global header trained at the server on the heterogeneous clients' class prototypes",
    .keys = fedgh_keys,
    .setup = fedgh_setup,
    .client_update = fedgh_client_update,
    .server_step = fedgh_server_step,
    .destroy = fedgh_destroy,
    .client_evaluate = fh_hetero_client_evaluate,
    .flags = FH_ALG_NO_GLOBAL_MODEL,
    .tests = fedgh_tests,
};
