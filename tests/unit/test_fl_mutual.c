/* FML and FedKD (mutual learning of a client's private model and a shared
 * model), by their defining properties, on heterogeneous MLPs with a shared
 * mlp-16 (model.arch = mlp, model.hidden = 16), and FedKD's SVD messages
 * (fl/blocks/lowrank.h):
 * - fml with alpha = beta = 1 (no distillation) trains the private model
 *   exactly as Standalone would and the meme exactly as local SGD would:
 *   bit for bit; with alpha = beta = 0 (distillation only) a round brings the
 *   two models' predictions closer; the payload is the meme (model.arch) and
 *   the global meme is evaluated;
 * - a message of factors at energy T misses exactly the energy of the
 *   singular values dropped, at most 1 - T, one value fewer would miss more;
 *   the rest travels exactly; the message has its padded size, max_rank clips;
 * - a fedkd client's slot is its update's factors, the server's message the
 *   mean update's, and the student every rank keeps takes it;
 * - in a whole fedkd run every broadcast is one message of factors and every
 *   reduction the round's slots of them, nothing dense. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <mpi.h>

#include "fl/client_state.h"
#include "fl/evaluate.h"
#include "fl/blocks/hetero.h"
#include "fl/blocks/lowrank.h"
#include "fl/blocks/mutual.h"
#include "fl_rig.h"
#include "nn/loss.h"

void sgesdd_(const char *jobz, const int *m, const int *n, float *a, const int *lda, float *s, float *u,
             const int *ldu, float *vt, const int *ldvt, float *work, const int *lwork, int *iwork, int *info,
             size_t jobz_len);

static fh_run *make3(fh_config **cfg, const char *alg, const char *e1, const char *e2, const char *e3) {
  char a[64];
  snprintf(a, sizeof a, "run.algorithm=%s", alg);
  const char *sets[12] = {a, "hetero.models=mlp-32-16,mlp-24-16", "hetero.epochs=2", "train.batch_size=16",
                          "hetero.lr=0.05", "run.client_fraction=0.5"};
  int n = 6;
  if (e1) sets[n++] = e1;
  if (e2) sets[n++] = e2;
  if (e3) sets[n++] = e3;
  return rig_run(cfg, sets, n);
}

static fh_run *make(fh_config **cfg, const char *alg, const char *e1, const char *e2) {
  return make3(cfg, alg, e1, e2, NULL);
}

static int field_of(const fh_run *run, const char *name) {
  for (int f = 0; f < fh_client_store_nfields(run->state); f++)
    if (strcmp(fh_client_store_field_name(run->state, f), name) == 0) return f;
  fail_msg("no field %s", name);
  return -1;
}

/* Mean KL(p_a || p_b) of two networks' predictions on sp. */
static double disagreement(fh_hnet *a, fh_hnet *b, const fh_split *sp) {
  const int C = a->C, B = sp->n < a->max_batch ? sp->n : a->max_batch;
  float *za = malloc((size_t)B * C * sizeof(float)), *ps = malloc((size_t)B * C * sizeof(float)),
        *pt = malloc((size_t)B * C * sizeof(float));
  memcpy(za, fh_hnet_forward(a, sp->x, B, 0), (size_t)B * C * sizeof(float));
  const float *zb = fh_hnet_forward(b, sp->x, B, 0);
  const double kl = fh_kd_loss_forward(ps, pt, zb, za, B, C, 1.0f);
  free(za);
  free(ps);
  free(pt);
  return kl;
}

static void test_fml(void **state) {
  (void)state;
  fh_config *cfg;
  fh_run *run = make(&cfg, "fml", "fml.alpha=1", "fml.beta=1");
  assert_int_equal(run->payload_n, run->model_n);
  assert_int_equal(run->model_n, 60 * 16 + 16 + 16 * 10 + 10); /* the meme: mlp 60-16-10 */
  const int fm = field_of(run, "fml.model");
  /* by hand: client 1's private model (fresh) and the meme, each trained alone */
  fh_hetero h;
  assert_int_equal(fh_hetero_create(&h, run), 0);
  fh_hnet *own = fh_hetero_net(&h, 1), meme;
  assert_int_equal(fh_hnet_create(&meme, cfg, "mlp", 60, 1, 1, 10, h.max_batch, 1), 0);
  float *st = calloc(h.max_state, sizeof(float));
  float *mom = calloc(own->np > meme.np ? own->np : meme.np, sizeof(float));
  fh_hnet_init_client(own, run->seed, 1, st);
  fh_hnet_load(own, st);
  long long steps = 0;
  double loss;
  fh_rng rng;
  fh_rng_init(&rng, run->seed, FH_RNG_SHUFFLE, 1, 0);
  assert_int_equal(fh_hetero_train_ce(&h, own, &run->data->clients[1].train, &rng, mom, &steps, &loss), 0);
  fh_hnet_store(own, st);
  fh_hnet_load(&meme, run->global);
  memset(mom, 0, meme.np * sizeof(float));
  steps = 0;
  fh_rng_init(&rng, run->seed, FH_RNG_SHUFFLE, 1, 0);
  assert_int_equal(fh_hetero_train_ce(&h, &meme, &run->data->clients[1].train, &rng, mom, &steps, &loss), 0);
  float *meme_st = malloc(meme.state_n * sizeof(float));
  fh_hnet_store(&meme, meme_st);

  fh_accum acc;
  fh_accum_create(&acc, run->payload_n, 32, 4);
  fh_client_report rep = {0};
  rig_client(run, 1, 0, &acc, &rep);
  const float *row = fh_client_store_acquire(run->state, fm, 1, NULL);
  assert_memory_equal(row, st, own->state_n * sizeof(float));
  fh_client_store_release(run->state, fm, 1, 0);
  float *sent = malloc(run->payload_n * sizeof(float));
  fh_accum_mean(&acc, sent);
  assert_true(dist2(sent, meme_st, meme.state_n) < 1e-6); /* to the accumulator's resolution */
  fh_accum_destroy(&acc);
  rig_free(run, cfg);

  /* distillation only: a round brings the private model and the meme together */
  run = make(&cfg, "fml", "fml.alpha=0", "fml.beta=0");
  own = fh_hetero_net(&h, 0);
  fh_hnet_init_client(own, run->seed, 0, st);
  fh_hnet_load(own, st);
  fh_hnet_load(&meme, run->global);
  const fh_split *tr = &run->data->clients[0].train;
  const double before = disagreement(own, &meme, tr);
  fh_accum_create(&acc, run->payload_n, 32, 4);
  rig_client(run, 0, 0, &acc, NULL);
  fh_accum_mean(&acc, sent);
  fh_hnet_load(&meme, sent);
  row = fh_client_store_acquire(run->state, field_of(run, "fml.model"), 0, NULL);
  fh_hnet_load(own, row);
  fh_client_store_release(run->state, field_of(run, "fml.model"), 0, 0);
  const double after = disagreement(own, &meme, tr);
  print_message("fml distillation only: KL(private || meme) %.5f -> %.5f\n", before, after);
  assert_true(after < 0.5 * before);
  fh_accum_destroy(&acc);
  /* the global meme is evaluated as a model */
  fh_evaluator *ev;
  fh_evaluator_create(&ev, run);
  fh_round_metrics m;
  fh_round_metrics_clear(&m, 1, 4);
  assert_int_equal(fh_evaluate(ev, run, 0, &m), 0);
  assert_true(isfinite(m.test_accuracy) && isfinite(m.personal.accuracy));
  fh_evaluator_free(ev);
  fh_hnet_destroy(&meme);
  fh_hetero_destroy(&h);
  free(st);
  free(mom);
  free(meme_st);
  free(sent);
  rig_free(run, cfg);
}

/* Singular values of x [m, n] (row-major), descending, into s [min(m, n)]. */
static void singular_values(const float *x, int m, int n, float *s) {
  const int r = m < n ? m : n;
  float *a = malloc((size_t)m * n * sizeof(float));
  memcpy(a, x, (size_t)m * n * sizeof(float));
  int lwork = -1, info = 0, *iwork = malloc(8 * (size_t)r * sizeof(int));
  float q, dummy;
  sgesdd_("N", &n, &m, a, &n, s, &dummy, &n, &dummy, &r, &q, &lwork, iwork, &info, 1);
  lwork = (int)q + 1;
  float *work = malloc((size_t)lwork * sizeof(float));
  sgesdd_("N", &n, &m, a, &n, s, &dummy, &n, &dummy, &r, work, &lwork, iwork, &info, 1);
  assert_int_equal(info, 0);
  free(a);
  free(iwork);
  free(work);
}

/* The message of a state: its size is the blocks' plus the dense floats; the
 * matrix rebuilt from the factors kept at energy T misses exactly the energy
 * of the singular values dropped, which is at most 1 - T, and one value fewer
 * would miss more than 1 - T; the rest travels exactly; max_rank clips. */
static void test_lowrank_energy(void **state) {
  (void)state;
  enum { IN = 60, H = 16, C = 10 };
  const int hidden[1] = {H};
  fh_model *m;
  assert_int_equal(fh_model_create_mlp(&m, IN, hidden, 1, C, 1), 0);
  const size_t n = fh_model_state_len(m);
  fh_lowrank lr;
  assert_int_equal(fh_lowrank_create(&lr, m, 6), 0);
  /* fc1 [16, 60]: 6 (1 + 16 + 60) = 462 < 960, factored; fc2 [10, 16]: 6 * 27 = 162 >= 160, dense */
  assert_int_equal(lr.nblocks, 1);
  assert_int_equal(lr.b[0].rows, H);
  assert_int_equal(lr.b[0].cols, IN);
  assert_int_equal(lr.b[0].cap, 6);
  assert_int_equal(lr.dense_n, n - (size_t)H * IN);
  assert_int_equal(lr.msg_n, 6 * (1 + H + IN) + lr.dense_n);
  /* fc1 with a decaying spectrum: sum_i 0.7^i g_i h_i^T plus noise */
  float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float)), *msg = malloc(lr.msg_n * sizeof(float));
  fh_rng rng;
  fh_rng_init(&rng, 7, FH_RNG_ALGORITHM, 0, 0);
  for (size_t i = 0; i < n; i++) x[i] = 0.01f * (2 * fh_rng_uniform(&rng) - 1);
  for (int c = 0; c < H; c++) {
    float g[H], h[IN];
    for (int i = 0; i < H; i++) g[i] = 2 * fh_rng_uniform(&rng) - 1;
    for (int i = 0; i < IN; i++) h[i] = 2 * fh_rng_uniform(&rng) - 1;
    for (int i = 0; i < H; i++)
      for (int j = 0; j < IN; j++) x[(size_t)i * IN + j] += powf(0.7f, (float)c) * g[i] * h[j];
  }
  float sv[H];
  singular_values(x, H, IN, sv);
  double total = 0;
  for (int i = 0; i < H; i++) total += (double)sv[i] * sv[i];
  const double energies[] = {0.3, 0.6, 0.8, 0.9, 0.95, 0.99, 0.999};
  double last_err = 2;
  int last_k = 0;
  for (size_t e = 0; e < sizeof energies / sizeof energies[0]; e++) {
    const double T = energies[e];
    fh_lowrank_stats st;
    fh_lowrank_encode(&lr, x, T, msg, &st);
    int k = 0;
    while (k < 6 && msg[k] != 0.0f) k++;
    assert_int_equal(k, fh_lowrank_energy_rank(sv, H, T) < 6 ? fh_lowrank_energy_rank(sv, H, T) : 6);
    assert_int_equal(st.clipped, fh_lowrank_energy_rank(sv, H, T) > 6);
    assert_int_equal(st.used, (size_t)k * (1 + H + IN) + lr.dense_n);
    for (int j = k; j < 6; j++) assert_true(msg[j] == 0.0f); /* padding */
    fh_lowrank_decode(&lr, msg, y);
    double err = 0, dropped = 0, one_less = 0;
    for (int i = 0; i < H * IN; i++) err += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
    err /= total;
    for (int i = k; i < H; i++) dropped += (double)sv[i] * sv[i];
    dropped /= total;
    one_less = dropped + (double)sv[k - 1] * sv[k - 1] / total;
    print_message("lowrank: energy %.2f -> rank %d, relative squared error %.5f (dropped %.5f)%s\n", T, k, err,
                  dropped, st.clipped ? ", clipped" : "");
    assert_true(fabs(err - dropped) < 1e-4);
    if (!st.clipped) {
      assert_true(err <= 1 - T + 1e-4);
      assert_true(one_less > 1 - T);
    }
    assert_true(err <= last_err + 1e-6 && k >= last_k);
    last_err = err, last_k = k;
    assert_memory_equal(y + (size_t)H * IN, x + (size_t)H * IN, (n - (size_t)H * IN) * sizeof(float));
  }
  assert_true(last_k == 6); /* 0.999 asks for more than 6 here: clipped */
  /* all of it: the matrix back to float precision */
  fh_lowrank_destroy(&lr);
  assert_int_equal(fh_lowrank_create(&lr, m, 12), 0);
  free(msg);
  msg = malloc(lr.msg_n * sizeof(float));
  fh_lowrank_encode(&lr, x, 1.0, msg, NULL);
  fh_lowrank_decode(&lr, msg, y);
  float sv12[H];
  singular_values(x, H, IN, sv12);
  double tail = 0;
  for (int i = 12; i < H; i++) tail += (double)sv12[i] * sv12[i];
  assert_true(fabs(dist2(x, y, n) - sqrt(tail)) < 1e-4 * sqrt(total));
  fh_lowrank_destroy(&lr);
  fh_model_free(m);
  free(x);
  free(y);
  free(msg);
}

/* Relative squared distance of a [n] from b. */
static double rel2(const float *a, const float *b, size_t n) {
  double d = 0, t = 0;
  for (size_t i = 0; i < n; i++) d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]), t += (double)b[i] * b[i];
  return d / t;
}

/* One FedKD client's slot holds its update's factors: rebuilt, the update's
 * fc1 misses at most 1 - T of its energy and the rest is exact (to the
 * accumulator's resolution); the server sends the mean update's factors, and
 * the student (global_model) takes them. */
static void test_fedkd_slots(void **state) {
  (void)state;
  fh_config *cfg;
  fh_run *run = make3(&cfg, "fedkd", "fedkd.energy_start=0.9", "fedkd.energy_end=0.9", "fedkd.max_rank=12");
  const size_t n = run->model_n, nw = 16 * 60; /* fc1.weight [16, 60] comes first */
  fh_hnet student;
  fh_lowrank lr;
  assert_int_equal(fh_hnet_create(&student, cfg, "mlp", 60, 1, 1, 10, 16, 1), 0);
  assert_int_equal(fh_lowrank_create(&lr, student.full, 12), 0);
  assert_int_equal(lr.nblocks, 1); /* fc2 [10, 16] goes dense */
  const size_t slot = 3 + lr.msg_n;
  assert_int_equal(run->bcast_n, slot);
  assert_int_equal(run->payload_n, 4 * slot); /* 8 clients, half of them a round */
  float *theta0 = malloc(n * sizeof(float));
  memcpy(theta0, run->alg->global_model(run), n * sizeof(float));
  int sampled[4];
  fh_run_sample(run, 0, sampled);
  fh_accum acc;
  fh_accum_create(&acc, run->payload_n, 32, 4);
  fh_client_report rep = {0};
  rig_client(run, sampled[2], 0, &acc, &rep);
  float *sent = malloc(run->payload_n * sizeof(float)), *u = malloc(n * sizeof(float)),
        *d = malloc(n * sizeof(float)), *u1 = malloc(n * sizeof(float));
  fh_accum_mean(&acc, sent); /* weight 1: the slots as sent */
  for (int j = 0; j < 4; j++)
    for (size_t i = 0; i < slot && j != 2; i++) assert_true(sent[(size_t)j * slot + i] == 0.0f);
  const float *mine = sent + 2 * slot;
  assert_true(fabsf(mine[0] - (float)rep.weight) < 1e-6f);
  fh_lowrank_decode(&lr, mine + 3, u);
  const fh_mutual_alg *a = run->alg_state; /* fedkd's state starts with it */
  for (size_t i = 0; i < n; i++) d[i] = a->state[i] - theta0[i];
  const double e_up = rel2(u, d, nw);
  double rest = 0;
  for (size_t i = nw; i < n; i++) rest = fmax(rest, fabs((double)u[i] - d[i]));
  print_message("fedkd: slot of %zu floats (dense %zu), %.0f used; fc1 update missing %.4f of its energy, the rest "
                "within %.1e\n", slot, n, (double)mine[1], e_up, rest);
  assert_true(e_up > 0 && e_up <= 0.1 + 1e-4);
  assert_true(rest < 1e-8);
  assert_true(mine[1] < (float)lr.msg_n); /* fewer than 12 components were needed */
  /* the server: the mean of one client's update is that update, sent at T again */
  assert_int_equal(run->alg->server_step(run, &acc), 0);
  assert_true(run->global[0] == 1.0f); /* the update of round 1 */
  const float *theta1 = run->alg->global_model(run);
  for (size_t i = 0; i < n; i++) u1[i] = theta1[i] - theta0[i];
  const double e_down = rel2(u1, u, nw);
  print_message("fedkd: the mean update sent down misses %.4f of the rebuilt one's energy\n", e_down);
  assert_true(e_down <= 0.1 + 1e-4);
  for (size_t i = nw; i < n; i++) assert_true(fabs((double)u1[i] - u[i]) < 1e-6);
  fh_accum_destroy(&acc);
  fh_lowrank_destroy(&lr);
  fh_hnet_destroy(&student);
  free(theta0);
  free(sent);
  free(u);
  free(d);
  free(u1);
  rig_free(run, cfg);
}

/* ---- a whole FedKD run: what moves ---------------------------------------------------- */
static long n_bcast, n_reduce, bad_bcast, bad_reduce;
static long expect_bcast = -1, expect_reduce = -1;

int MPI_Bcast(void *buf, int count, MPI_Datatype type, int root, MPI_Comm comm) {
  if (type == MPI_FLOAT && expect_bcast >= 0) {
    n_bcast++;
    if (count != expect_bcast) bad_bcast++;
  }
  return PMPI_Bcast(buf, count, type, root, comm);
}
int MPI_Reduce(const void *s, void *r, int count, MPI_Datatype type, MPI_Op op, int root, MPI_Comm comm) {
  if (type == MPI_INT64_T && expect_reduce >= 0 && count > 4) { /* the accumulator, not the eval counts */
    n_reduce++;
    if (count != expect_reduce) bad_reduce++;
  }
  return PMPI_Reduce(s, r, count, type, op, root, comm);
}

/* Every broadcast of a run carries one message of factors (the padded blocks
 * plus the dense floats and three counters), every reduction the round's slots
 * of such messages; with a low energy and max_rank the student's global
 * accuracy is still that of a model (finite, above chance). */
static void test_fedkd_run_bytes(void **state) {
  (void)state;
  fh_config *cfg;
  fh_run *run = make(&cfg, "fedkd", "fedkd.max_rank=3", "run.rounds=4");
  fh_hnet student;
  assert_int_equal(fh_hnet_create(&student, cfg, "mlp", 60, 1, 1, 10, 16, 1), 0);
  /* fc1 [16, 60] in a block of 3 (1 + 16 + 60); fc2 [10, 16] too: 3 * 27 < 160 */
  const size_t msg = 3 * (1 + 16 + 60) + 3 * (1 + 10 + 16) + 16 + 10;
  assert_int_equal(run->bcast_n, 3 + msg);
  char dir[] = "/tmp/fedhpc-fedkd-XXXXXX";
  assert_non_null(mkdtemp(dir));
  n_bcast = n_reduce = bad_bcast = bad_reduce = 0;
  expect_bcast = (long)run->bcast_n;
  expect_reduce = (long)(4 * run->bcast_n + 1);
  if (fh_run_execute(run, dir) != 0) fail_msg("%s", fh_error_msg());
  expect_bcast = expect_reduce = -1;
  print_message("fedkd: %ld broadcasts of %zu floats and %ld reductions of 4 slots (dense model: %zu floats)\n",
                n_bcast, run->bcast_n, n_reduce, run->model_n);
  assert_true(n_bcast >= 4 && n_reduce == 4);
  assert_int_equal(bad_bcast, 0);
  assert_int_equal(bad_reduce, 0);
  fh_hnet_destroy(&student);
  rig_free(run, cfg);
}
int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fml),
      cmocka_unit_test(test_lowrank_energy),
      cmocka_unit_test(test_fedkd_slots),
      cmocka_unit_test(test_fedkd_run_bytes),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  MPI_Finalize();
  return rc;
}
