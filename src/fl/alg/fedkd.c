/* FedKD (Wu et al. 2022, Nature Communications 13:2032, arXiv:2108.13323),
 * model-heterogeneous as in pFedAFM's comparison: each client's private
 * teacher (its own architecture, hetero.models) and a shared small student
 * (model.arch, the same for all) learn from each other on every batch by
 * adaptive mutual distillation (fl/blocks/mutual.h):
 *
 *   L_t = CE_t + (KD(t || s) + w_h MSE(h_t, h_s)) / (CE_t + CE_s)
 *   L_s = CE_s + (KD(s || t) + w_h MSE(h_s, h_t)) / (CE_t + CE_s)
 *
 * (h: the features before each header, one width for both; w_h =
 * fedkd.hidden_weight). Only the student's update travels, as truncated SVD
 * factors (fl/blocks/lowrank.h): every weight matrix of the update (a conv's
 * [out, in*k*k]) goes as its leading singular values and vectors holding an
 * energy fraction T of it, T growing linearly from fedkd.energy_start to
 * fedkd.energy_end over fedkd.energy_rounds, at most fedkd.max_rank of them
 * (the message has a fixed size: each matrix's block is padded to that rank);
 * biases and buffers go as they are.
 *
 *   client k:  student theta^t (every node keeps it), E epochs of mutual
 *              distillation, its update theta_k - theta^t as factors
 *   server:    rebuilds every client's update from its factors, takes their
 *              mean weighted by n_k, and sends that mean as factors (at the
 *              round's T); every node adds the rebuilt mean to its theta
 *
 * Payload: m slots of [n_k | floats used | matrices clipped | factors] (m the
 * clients per round;
 * each sampled client fills its own slot, its position among the round's
 * sampled clients, so the reduction hands the server every client's factors
 * unchanged), of which only the head, [round | floats used | matrices clipped
 * | the mean's factors], is broadcast. The student theta is server state ("fedkd.student",
 * on every rank; "fedkd.server" counts the rounds applied), brought up to date
 * with each broadcast message; the global-model evaluations and model.h5 use
 * it. Rank 0 logs the bytes moved and used per round at the end of the run.
 *
 * Client state: fedkd.model, fedkd.momentum, fedkd.steps (teacher),
 * fedkd.shared_momentum, fedkd.shared_steps (student). */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/log.h"
#include "fl/algorithm.h"
#include "fl/blocks/lowrank.h"
#include "fl/blocks/mutual.h"
#include "fl/run.h"

static const fh_key_spec fedkd_keys[] = {
    {"fedkd.temperature", FH_T_REAL, "1", 1e-3, 1e3, NULL, "softmax temperature of the distillation terms"},
    {"fedkd.hidden_weight", FH_T_REAL, "1", 0, 1e6, NULL,
     "weight of the MSE between teacher and student features (0: logits only)"},
    {"fedkd.energy_start", FH_T_REAL, "0.95", 1e-6, 1, NULL,
     "SVD energy kept of each update matrix in the first round (1: all, up to fedkd.max_rank)"},
    {"fedkd.energy_end", FH_T_REAL, "0.98", 1e-6, 1, NULL, "SVD energy kept in the last round"},
    {"fedkd.energy_rounds", FH_T_INT, "0", 0, 1e8, NULL,
     "rounds over which the energy grows from start to end (0: run.rounds; set it to keep the schedule "
     "when a resumed run goes on for more rounds)"},
    {"fedkd.max_rank", FH_T_INT, "16", 1, 1e6, NULL,
     "most singular values sent per update matrix: the size of the message (matrices that would not be "
     "smaller as that many factors go dense)"},
    FH_KEYS_END};

/* server vector: rounds whose update this rank's student holds; rank 0's
 * counters of the floats moved and used */
enum { SV_APPLIED, SV_ROUNDS, SV_UP, SV_DOWN, SV_CLIPPED_UP, SV_CLIPPED, SV_MATRICES, NSV };

/* a slot's head: n_k (down: the round), floats used, matrices clipped */
enum { HEAD = 3 };

typedef struct {
  fh_mutual_alg a;
  double e0, e1;
  int rounds, m;
  fh_lowrank lr;
  size_t slot_n;     /* HEAD + lr.msg_n                              */
  float *student;    /* [model_n] theta (server state, every rank)   */
  double *sv;        /* [NSV]                                        */
  int *sampled;      /* [m]                                          */
  float *delta;      /* [model_n]                                    */
  double *mean;      /* [model_n]                                    */
  float *contrib;    /* [payload_n]                                  */
} fedkd_state;

/* fh_hetero_client_evaluate reads the state as the fh_mutual_alg it begins with */
_Static_assert(offsetof(fedkd_state, a) == 0, "the mutual part leads the state");

static double energy_at(const fedkd_state *s, int round) {
  if (round >= s->rounds - 1 || s->rounds < 2) return s->e1;
  return s->e0 + (s->e1 - s->e0) * round / (s->rounds - 1);
}

/* The student <- itself plus the broadcast update, when this rank has not
 * added it yet (run->global's head: [round | used | clipped | factors]). */
static int sync_student(fh_run *run) {
  fedkd_state *s = run->alg_state;
  const double stamp = run->global[0], applied = s->sv[SV_APPLIED];
  if (stamp == applied) return 0;
  if (stamp != applied + 1)
    return FH_FAIL(FH_ERR_RUNTIME, "fedkd: the broadcast update is of round %.0f, the student holds %.0f rounds "
                                   "(a message was missed)", stamp, applied);
  fh_lowrank_decode(&s->lr, run->global + HEAD, s->delta);
  for (size_t i = 0; i < run->model_n; i++) s->student[i] += s->delta[i];
  s->sv[SV_APPLIED] = stamp;
  return 0;
}

static int fedkd_setup(fh_run *run) {
  fedkd_state *s = fh_calloc(1, sizeof *s);
  run->alg_state = s;
  fh_mutual_alg *a = &s->a;
  FH_TRY(fh_mutual_alg_setup(a, run, "fedkd"));
  const fh_config *cfg = run->cfg;
  a->mu.adaptive = 1;
  a->mu.T = (float)fh_cfg_real(cfg, "fedkd.temperature");
  a->mu.w_ce_own = a->mu.w_ce_sh = 1.0f;
  a->mu.w_kd_own = a->mu.w_kd_sh = 1.0f;
  a->mu.w_hidden = (float)fh_cfg_real(cfg, "fedkd.hidden_weight");
  if (a->mu.w_hidden > 0 && a->mu.d == 0)
    return FH_FAIL(FH_ERR_CONFIG, "fedkd.hidden_weight = %g compares features, but model.arch = %s and "
                                  "hetero.models end in features of other widths; set it to 0 or choose "
                                  "architectures of one width",
                   (double)a->mu.w_hidden, a->shared.arch);
  s->e0 = fh_cfg_real(cfg, "fedkd.energy_start");
  s->e1 = fh_cfg_real(cfg, "fedkd.energy_end");
  s->rounds = (int)fh_cfg_int(cfg, "fedkd.energy_rounds");
  if (s->rounds == 0) s->rounds = run->rounds;
  FH_TRY(fh_lowrank_create(&s->lr, a->shared.full, (int)fh_cfg_int(cfg, "fedkd.max_rank")));
  if (s->lr.state_n != run->model_n)
    return FH_FAIL(FH_ERR_RUNTIME, "fedkd: the student's state has %zu floats, the run's model %zu", s->lr.state_n,
                   run->model_n);
  s->m = fh_run_sampled_count(run);
  s->slot_n = HEAD + s->lr.msg_n;
  /* theta^0, the run's initial model, moves to the server state; the payload
   * becomes the slots, with no update yet (round 0) */
  s->student = fh_run_server_state(run, "fedkd.student", run->model_n);
  memcpy(s->student, run->global, run->model_n * sizeof(float));
  s->sv = fh_run_server_state_typed(run, "fedkd.server", FH_STATE_F64, NSV);
  run->payload_n = (size_t)s->m * s->slot_n;
  run->bcast_n = s->slot_n;
  free(run->global);
  run->global = fh_calloc(run->payload_n, sizeof(float));
  s->sampled = fh_malloc((size_t)s->m * sizeof(int));
  s->delta = fh_malloc(run->model_n * sizeof(float));
  s->mean = fh_malloc(run->model_n * sizeof(double));
  s->contrib = fh_malloc(run->payload_n * sizeof(float));
  if (run->rank == 0)
    fh_info("fedkd: the student %s's update travels as SVD factors (energy %g -> %g, at most %lld values per "
            "matrix): %zu bytes down and %zu up per sampled client (dense: %zu); teachers up to %.1f MiB of "
            "client state each",
            a->shared.arch, s->e0, s->e1, fh_cfg_int(cfg, "fedkd.max_rank"), s->slot_n * sizeof(float),
            s->slot_n * sizeof(float), run->model_n * sizeof(float),
            fh_hetero_client_bytes(&a->h, &a->f) / 1048576.0);
  return 0;
}

static int fedkd_client_update(fh_run *run, fh_client_ctx *c, fh_accum *acc, fh_client_report *rep) {
  fedkd_state *s = run->alg_state;
  const size_t n = run->model_n;
  FH_TRY(sync_student(run));
  fh_run_sample(run, c->round, s->sampled);
  int j = 0;
  while (j < s->m && s->sampled[j] != c->id) j++;
  if (j == s->m)
    return FH_FAIL(FH_ERR_RUNTIME, "fedkd: client %d is not among round %d's sampled clients", c->id,
                   c->round + 1);
  FH_TRY(fh_mutual_alg_client(&s->a, run, c, s->student, &rep->train_loss));
  rep->weight = (double)c->data->train.n;
  for (size_t i = 0; i < n; i++) s->delta[i] = s->a.state[i] - s->student[i];
  float *slot = s->contrib; /* this client's slot j only: the other slots stay untouched */
  memset(slot, 0, s->slot_n * sizeof(float));
  fh_lowrank_stats st;
  fh_lowrank_encode(&s->lr, s->delta, energy_at(s, c->round), slot + HEAD, &st);
  if (st.failed)
    return FH_FAIL(FH_ERR_RUNTIME, "fedkd: client %d: the SVD of %d weight matrices failed (LAPACK sgesdd); "
                   "the update has non-finite values or the matrix is too large", c->id, st.failed);
  slot[0] = (float)rep->weight;
  slot[1] = (float)st.used;
  slot[2] = (float)st.clipped;
  return fh_accum_add_range(acc, slot, (size_t)j * s->slot_n, s->slot_n, 1.0);
}

/* Every rank: the student takes the update broadcast this round (a rank
 * whose clients were not sampled has not needed it yet). */
static int fedkd_server_collective(fh_run *run, const fh_accum *acc) {
  (void)acc;
  return sync_student(run);
}

static int fedkd_server_step(fh_run *run, const fh_accum *acc) {
  fedkd_state *s = run->alg_state;
  const size_t n = run->model_n;
  /* every client's update from its factors; their n_k-weighted mean */
  memset(s->mean, 0, n * sizeof(double));
  double w = 0, up = 0, clipped_up = 0;
  float *msg = s->contrib; /* one slot's message at a time */
  for (int j = 0; j < s->m; j++) {
    const int64_t *slot = acc->sum + (size_t)j * s->slot_n;
    const double wj = (double)slot[0] / acc->scale;
    if (wj <= 0) continue;
    up += (double)slot[1] / acc->scale;
    clipped_up += (double)slot[2] / acc->scale;
    for (size_t i = 0; i < s->lr.msg_n; i++) msg[i] = (float)((double)slot[HEAD + i] / acc->scale);
    fh_lowrank_decode(&s->lr, msg, s->delta);
    for (size_t i = 0; i < n; i++) s->mean[i] += wj * s->delta[i];
    w += wj;
  }
  const double round = s->sv[SV_ROUNDS];
  memset(run->global, 0, run->payload_n * sizeof(float));
  if (w > 0) {
    for (size_t i = 0; i < n; i++) s->delta[i] = (float)(s->mean[i] / w);
    fh_lowrank_stats st;
    fh_lowrank_encode(&s->lr, s->delta, energy_at(s, (int)round), run->global + HEAD, &st);
    if (st.failed)
      return FH_FAIL(FH_ERR_RUNTIME, "fedkd: round %.0f: the SVD of %d matrices of the mean update failed "
                     "(LAPACK sgesdd)", round + 1, st.failed);
    run->global[1] = (float)st.used;
    run->global[2] = (float)st.clipped;
    s->sv[SV_DOWN] += (double)st.used;
    s->sv[SV_CLIPPED] += st.clipped;
    s->sv[SV_MATRICES] += s->lr.nblocks;
  }
  /* the message is the update of round+1, also when it is empty */
  run->global[0] = (float)(round + 1);
  s->sv[SV_ROUNDS] = round + 1;
  s->sv[SV_UP] += up;
  s->sv[SV_CLIPPED_UP] += clipped_up;
  return 0;
}

static const float *fedkd_global_model(fh_run *run) {
  fedkd_state *s = run->alg_state;
  return sync_student(run) == 0 ? s->student : NULL;
}

static void fedkd_destroy(fh_run *run) {
  fedkd_state *s = run->alg_state;
  const double R = s->sv ? s->sv[SV_ROUNDS] : 0;
  if (run->rank == 0 && R > 0)
    fh_info("fedkd: %.0f rounds; per round %.0f bytes up (all clients) and %.0f bytes down of factors used, "
            "in messages of %zu bytes per client each way (dense: %zu); cut at fedkd.max_rank: %.0f of the "
            "mean updates' %.0f matrices, %.0f of the clients' updates' matrices (%d per update)",
            R, 4 * s->sv[SV_UP] / R, 4 * s->sv[SV_DOWN] / R, s->slot_n * sizeof(float),
            run->model_n * sizeof(float), s->sv[SV_CLIPPED], s->sv[SV_MATRICES], s->sv[SV_CLIPPED_UP],
            s->lr.nblocks);
  fh_mutual_alg_destroy(&s->a);
  fh_lowrank_destroy(&s->lr);
  free(s->sampled);
  free(s->delta);
  free(s->mean);
  free(s->contrib);
  free(s);
  run->alg_state = NULL;
}

/* Tests: heterogeneous MLPs, the shared student an mlp-16, its update as
 * factors of rank 4 at most (factors, not dense matrices, travel) and the
 * energy schedule over the 6 rounds of the longest run. */
static const fh_test_case fedkd_tests[] = {
    {"fedkd", FH_TEST_RESUME_SHORT | FH_TEST_DECK, FH_HETERO_TEST_SETTINGS " model.hidden=16 fedkd.max_rank=4 fedkd.energy_rounds=6", "", NULL},
    {NULL, 0, NULL, NULL, NULL}};

const fh_algorithm fh_alg_fedkd = {
    .name = "fedkd",
    .summary = "FedKD: heterogeneous teachers and a shared student distil into each other; the student's "
               "update travels as truncated SVD factors",
    .keys = fedkd_keys,
    .setup = fedkd_setup,
    .client_update = fedkd_client_update,
    .server_collective = fedkd_server_collective,
    .server_step = fedkd_server_step,
    .destroy = fedkd_destroy,
    .client_evaluate = fh_hetero_client_evaluate,
    .global_model = fedkd_global_model,
    .tests = fedkd_tests,
};
