/* The model-heterogeneous baselines, each by its defining property, on
 * heterogeneous MLPs (hetero.models = mlp-32-16, mlp-24-16, mlp-20-16):
 * - standalone: nothing is broadcast or reduced in a whole run; each client
 *   keeps a model of its own architecture and continues it; it is scored
 *   with it (personal), there is no global model;
 * - lg_fedavg: the payload is the header alone (C*d + C floats); a client's
 *   contribution is the header of its trained model, its extractor stays in
 *   its state; it is scored with its extractor under the current global
 *   header;
 * - fedproto: a client sends the class sums and counts of its trained
 *   model's features, the server makes them class means, and the prototype
 *   term pulls a client's features towards them; a client is scored by the
 *   nearest global prototype to its features (or by its header, on demand);
 * - fedgh: a client fills only its own slot of the payload, with its class
 *   means; the server's training of the header on them lowers their
 *   cross-entropy. */
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
#include "fl_rig.h"
#include "nn/layer.h"
#include "nn/loss.h"

static long n_bcast, n_reduce;

int MPI_Bcast(void *buf, int count, MPI_Datatype type, int root, MPI_Comm comm) {
  if (type == MPI_FLOAT) n_bcast++;
  return PMPI_Bcast(buf, count, type, root, comm);
}
int MPI_Reduce(const void *s, void *r, int count, MPI_Datatype type, MPI_Op op, int root, MPI_Comm comm) {
  if (type == MPI_INT64_T && count > 4) n_reduce++;
  return PMPI_Reduce(s, r, count, type, op, root, comm);
}

static const char *const base[] = {"hetero.models=mlp-32-16,mlp-24-16,mlp-20-16", "hetero.epochs=2",
                                   "train.batch_size=16", "hetero.lr=0.05", "run.client_fraction=0.5"};
#define NBASE 5

static fh_run *make(fh_config **cfg, const char *alg, const char *extra, const char *extra2) {
  char a[64];
  snprintf(a, sizeof a, "run.algorithm=%s", alg);
  const char *sets[NBASE + 3];
  int n = 0;
  for (int i = 0; i < NBASE; i++) sets[n++] = base[i];
  sets[n++] = a;
  if (extra) sets[n++] = extra;
  if (extra2) sets[n++] = extra2;
  return rig_run(cfg, sets, n);
}

static int field_of(const fh_run *run, const char *name) {
  for (int f = 0; f < fh_client_store_nfields(run->state); f++)
    if (strcmp(fh_client_store_field_name(run->state, f), name) == 0) return f;
  fail_msg("no field %s", name);
  return -1;
}

/* A whole run in a temporary folder; the last evaluation into m. */
static void whole_run(fh_run *run, fh_round_metrics *m) {
  char dir[] = "/tmp/fedhpc-hetero-XXXXXX";
  assert_non_null(mkdtemp(dir));
  n_bcast = n_reduce = 0;
  if (fh_run_execute(run, dir) != 0) fail_msg("%s", fh_error_msg());
  fh_evaluator *ev;
  fh_evaluator_create(&ev, run);
  fh_round_metrics_clear(m, run->rounds, 4);
  assert_int_equal(fh_evaluate(ev, run, run->rounds - 1, m), 0);
  fh_evaluator_free(ev);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  assert_int_equal(system(cmd), 0);
}

static void test_standalone(void **state) {
  (void)state;
  fh_config *cfg;
  fh_run *run = make(&cfg, "standalone", "run.rounds=4", "hetero.optimizer_state=round");
  const int f = field_of(run, "standalone.model");
  fh_round_metrics m;
  whole_run(run, &m);
  print_message("standalone: %ld float broadcasts, %ld reductions; own models' accuracy %.4f\n", n_bcast, n_reduce,
                m.personal.accuracy);
  assert_int_equal(n_bcast, 0);
  assert_int_equal(n_reduce, 0);
  assert_true(isnan(m.test_accuracy) && m.personal.accuracy > 0.3);

  /* client 1 (mlp-24-16) continues its own model: one more round = training
   * its stored model with its round stream */
  fh_hetero h;
  assert_int_equal(fh_hetero_create(&h, run), 0);
  fh_hnet *net = fh_hetero_net(&h, 1);
  assert_string_equal(net->arch, "mlp-24-16");
  float *before = malloc(net->state_n * sizeof(float)), *after = malloc(net->state_n * sizeof(float));
  const float *row = fh_client_store_acquire(run->state, f, 1, NULL);
  memcpy(before, row, net->state_n * sizeof(float));
  for (size_t i = net->state_n; i < h.max_state; i++) assert_true(row[i] == 0.0f); /* padding */
  fh_client_store_release(run->state, f, 1, 0);
  fh_accum acc;
  fh_accum_create(&acc, run->payload_n, 32, 4);
  rig_client(run, 1, 9, &acc, NULL);
  assert_true(fh_accum_weight(&acc) == 0.0);
  row = fh_client_store_acquire(run->state, f, 1, NULL);
  memcpy(after, row, net->state_n * sizeof(float));
  fh_client_store_release(run->state, f, 1, 0);
  /* the same by hand: its stored model, E epochs from its round-9 stream
   * (momentum restarts every round here) */
  fh_hnet_load(net, before);
  float *mom = calloc(net->np, sizeof(float));
  long long steps = 0;
  double loss;
  fh_rng rng;
  fh_rng_init(&rng, run->seed, FH_RNG_SHUFFLE, 1, 9);
  assert_int_equal(fh_hetero_train_ce(&h, net, &run->data->clients[1].train, &rng, mom, &steps, &loss), 0);
  fh_hnet_store(net, before);
  assert_memory_equal(before, after, net->state_n * sizeof(float));
  free(mom);
  fh_accum_destroy(&acc);
  fh_hetero_destroy(&h);
  free(before);
  free(after);
  rig_free(run, cfg);
}

static void test_lg_fedavg(void **state) {
  (void)state;
  fh_config *cfg;
  fh_run *run = make(&cfg, "lg_fedavg", NULL, NULL);
  const int d = 16, C = run->data->num_classes;
  assert_int_equal(run->payload_n, (size_t)C * d + C);
  const int f = field_of(run, "lg.model");
  fh_accum acc;
  fh_accum_create(&acc, run->payload_n, 32, 4);
  fh_client_report rep = {0};
  rig_client(run, 2, 0, &acc, &rep); /* mlp-20-16 */
  float *head = malloc(run->payload_n * sizeof(float));
  assert_true(fh_accum_mean(&acc, head) == rep.weight);
  fh_hetero h;
  assert_int_equal(fh_hetero_create(&h, run), 0);
  const fh_hnet *net = fh_hetero_net(&h, 2);
  const float *row = fh_client_store_acquire(run->state, f, 2, NULL);
  /* what it sent is the header of its trained model (to the accumulator's resolution) */
  assert_true(dist2(head, row + net->ex_np, net->head_n) < 1e-6);
  assert_true(dist2(head, run->global, net->head_n) > 1e-3);
  fh_client_store_release(run->state, f, 2, 0);

  /* scored under the global header: with W = 0 and b = e_3 every prediction is class 3 */
  memset(run->global, 0, run->payload_n * sizeof(float));
  run->global[(size_t)C * d + 3] = 1.0f;
  const fh_split *te = &run->data->clients[2].test;
  int threes = 0;
  for (int i = 0; i < te->n; i++) threes += te->y[i] == 3;
  fh_client_ctx ctx = {.id = 2, .round = 0, .data = &run->data->clients[2], .model = run->model};
  double correct = -1, loss = -1;
  assert_int_equal(run->alg->client_evaluate(run, &ctx, te, &correct, &loss), 0);
  assert_true(correct == threes);
  fh_accum_destroy(&acc);
  fh_hetero_destroy(&h);
  free(head);
  rig_free(run, cfg);

  /* a whole run: one broadcast and one reduction of the header per round */
  run = make(&cfg, "lg_fedavg", "run.rounds=3", NULL);
  fh_round_metrics m;
  whole_run(run, &m);
  print_message("lg_fedavg: %ld broadcasts, %ld reductions; personal accuracy %.4f\n", n_bcast, n_reduce,
                m.personal.accuracy);
  assert_true(n_reduce == 3 && n_bcast >= 3);
  assert_true(isnan(m.test_accuracy) && m.personal.accuracy > 0.3);
  rig_free(run, cfg);
}

/* Mean squared distance of client k's train features to the prototypes P of their classes. */
static double spread(fh_hnet *net, const fh_split *sp, const float *P, int d) {
  const int B = sp->n < net->max_batch ? sp->n : net->max_batch;
  const float *h = fh_hnet_features(net, sp->x, B, 0);
  double s = 0;
  for (int b = 0; b < B; b++)
    for (int j = 0; j < d; j++) {
      const double diff = h[(size_t)b * d + j] - P[(size_t)sp->y[b] * d + j];
      s += diff * diff;
    }
  return s / B;
}

static void test_fedproto(void **state) {
  (void)state;
  fh_config *cfg;
  fh_run *run = make(&cfg, "fedproto", NULL, NULL);
  const int d = 16, C = run->data->num_classes;
  const size_t cd = (size_t)C * d;
  assert_int_equal(run->payload_n, cd + C);
  fh_accum acc;
  fh_accum_create(&acc, run->payload_n, 32, 4);
  rig_client(run, 1, 0, &acc, NULL);
  /* what it sent: the class sums and counts of its trained model's features */
  fh_hetero h;
  assert_int_equal(fh_hetero_create(&h, run), 0);
  fh_hnet *net = fh_hetero_net(&h, 1);
  const int f = field_of(run, "fedproto.model");
  fh_hnet_load(net, fh_client_store_acquire(run->state, f, 1, NULL));
  fh_client_store_release(run->state, f, 1, 0);
  double *sums = calloc(cd, sizeof(double)), counts[64] = {0};
  const fh_split *tr = &run->data->clients[1].train;
  fh_hnet_prototypes(net, tr, sums, counts);
  for (int k = 0; k < C; k++) {
    int n = 0;
    for (int i = 0; i < tr->n; i++) n += tr->y[i] == k;
    assert_true(counts[k] == n);
    assert_true(fabs((double)acc.sum[cd + k] / acc.scale - n) < 1e-6);
    for (int j = 0; j < d; j++)
      assert_true(fabs((double)acc.sum[(size_t)k * d + j] / acc.scale - sums[(size_t)k * d + j]) < 1e-4);
  }
  /* the server: class means, present where a count is */
  assert_int_equal(run->alg->server_step(run, &acc), 0);
  for (int k = 0; k < C; k++) {
    assert_true(run->global[cd + k] == (counts[k] > 0 ? 1.0f : 0.0f));
    if (counts[k] > 0) assert_true(fabs(run->global[(size_t)k * d] - sums[(size_t)k * d] / counts[k]) < 1e-5);
  }
  float *P = malloc(run->payload_n * sizeof(float));
  memcpy(P, run->global, run->payload_n * sizeof(float));
  fh_accum_destroy(&acc);
  rig_free(run, cfg);

  /* the prototype term: client 1 trained towards P with lambda 10 ends nearer than with 0 */
  double dist[2];
  const char *lambdas[2] = {"fedproto.lambda=0", "fedproto.lambda=10"};
  for (int i = 0; i < 2; i++) {
    run = make(&cfg, "fedproto", lambdas[i], NULL);
    memcpy(run->global, P, run->payload_n * sizeof(float));
    fh_accum_create(&acc, run->payload_n, 32, 4);
    rig_client(run, 1, 1, &acc, NULL);
    fh_hnet_load(net, fh_client_store_acquire(run->state, f, 1, NULL));
    fh_client_store_release(run->state, f, 1, 0);
    dist[i] = spread(net, &run->data->clients[1].train, P, d);
    fh_accum_destroy(&acc);
    rig_free(run, cfg);
  }
  print_message("fedproto: features' squared distance to their prototypes %.4f (lambda 0), %.4f (lambda 10)\n",
                dist[0], dist[1]);
  assert_true(dist[1] < 0.7 * dist[0]);
  fh_hetero_destroy(&h);
  free(sums);
  free(P);
}

/* FedProto's scoring: by the nearest global prototype (the default) a
 * sample's prediction is the class whose prototype is nearest to its
 * features, classes without one never predicted (with one class present,
 * every sample gets it), the loss the model's cross-entropy; with no
 * prototype yet, and with fedproto.eval = model, the header predicts;
 * fedproto.eval = local takes the client's own class means on its train
 * split as the prototypes. */
static void test_fedproto_eval(void **state) {
  (void)state;
  static const char *const modes[3] = {NULL, "fedproto.eval=model", "fedproto.eval=local"};
  for (int mode = 0; mode < 3; mode++) {
    fh_config *cfg;
    fh_run *run = make(&cfg, "fedproto", modes[mode], NULL);
    const int d = 16, C = run->data->num_classes;
    const size_t cd = (size_t)C * d;
    fh_hetero h;
    assert_int_equal(fh_hetero_create(&h, run), 0);
    fh_hnet *net = fh_hetero_net(&h, 1);
    const int f = field_of(run, "fedproto.model");
    const fh_split *te = &run->data->clients[1].test;
    fh_client_ctx ctx = {.id = 1, .round = 0, .data = &run->data->clients[1], .model = run->model};
    double correct, loss, hc = 0, hl = 0;
    /* no prototype yet: the header (local: its own class means already) */
    assert_int_equal(run->alg->client_evaluate(run, &ctx, te, &correct, &loss), 0);
    fh_hnet_load(net, fh_client_store_acquire(run->state, f, 1, NULL));
    fh_client_store_release(run->state, f, 1, 0);
    fh_hnet_evaluate(net, te, &hc, &hl);
    assert_true((mode == 2 || correct == hc) && loss == hl);
    fh_accum acc;
    fh_accum_create(&acc, run->payload_n, 32, 4);
    rig_client(run, 1, 0, &acc, NULL);
    assert_int_equal(run->alg->server_step(run, &acc), 0);
    fh_accum_destroy(&acc);
    fh_hnet_load(net, fh_client_store_acquire(run->state, f, 1, NULL));
    fh_client_store_release(run->state, f, 1, 0);
    hc = hl = 0;
    fh_hnet_evaluate(net, te, &hc, &hl);
    /* by hand: nearest prototype of each test sample's features (local: the
     * client's class means on its train split) */
    float *protos = malloc((cd + C) * sizeof(float));
    memcpy(protos, run->global, (cd + C) * sizeof(float));
    if (mode == 2) {
      double *sums = calloc(cd, sizeof(double)), counts[64] = {0};
      fh_hnet_prototypes(net, &run->data->clients[1].train, sums, counts);
      for (int k = 0; k < C; k++) {
        protos[cd + k] = counts[k] > 0;
        for (int j = 0; j < d; j++)
          protos[(size_t)k * d + j] = counts[k] > 0 ? (float)(sums[(size_t)k * d + j] / counts[k]) : 0.0f;
      }
      free(sums);
    }
    double near = 0;
    const float *feat = fh_hnet_features(net, te->x, te->n, 0); /* max_batch >= the split here */
    assert_true(te->n <= net->max_batch);
    for (int i = 0; i < te->n; i++) {
      int best = -1;
      double bd = 0;
      for (int k = 0; k < C; k++) {
        if (protos[cd + k] == 0.0f) continue;
        double dd = 0;
        for (int j = 0; j < d; j++) dd += pow((double)feat[(size_t)i * d + j] - protos[(size_t)k * d + j], 2);
        if (best < 0 || dd < bd) best = k, bd = dd;
      }
      near += best == te->y[i];
    }
    assert_int_equal(run->alg->client_evaluate(run, &ctx, te, &correct, &loss), 0);
    print_message("fedproto (eval %s): %.0f of %d right; by hand: %.0f by the nearest prototype, %.0f by the "
                  "header\n", mode == 1 ? "model" : mode ? "local" : "proto", correct, te->n, near, hc);
    assert_true(correct == (mode == 1 ? hc : near));
    free(protos);
    assert_true(fabs(loss - hl) < 1e-9 * fabs(hl));
    /* one class present: every sample is predicted as it */
    const int only = te->y[0];
    for (int k = 0; k < C; k++) run->global[cd + k] = k == only ? 1.0f : 0.0f;
    int n_only = 0;
    for (int i = 0; i < te->n; i++) n_only += te->y[i] == only;
    assert_int_equal(run->alg->client_evaluate(run, &ctx, te, &correct, &loss), 0);
    if (mode == 0) assert_true(correct == n_only);
    else if (mode == 1) assert_true(correct == hc);
    else assert_true(correct == near); /* its own class means do not change */
    fh_hetero_destroy(&h);
    rig_free(run, cfg);
  }
}

static void test_fedgh(void **state) {
  (void)state;
  fh_config *cfg;
  fh_run *run = make(&cfg, "fedgh", NULL, NULL);
  const int d = 16, C = run->data->num_classes, m = 4; /* 8 clients at 0.5 */
  const size_t hn = (size_t)C * d + C;
  assert_int_equal(run->model_n, hn);
  assert_int_equal(run->payload_n, hn + (size_t)m * hn);
  /* round 0's sampled clients, as the round loop draws them */
  int sampled[4];
  fh_rng r;
  fh_rng_init(&r, run->seed, FH_RNG_SAMPLING, FH_RNG_NONE, 0);
  fh_rng_sample_sorted(&r, 8, m, sampled);
  fh_accum acc;
  fh_accum_create(&acc, run->payload_n, 32, m);
  rig_client(run, sampled[2], 0, &acc, NULL);
  /* only slot 2 holds anything (and not the header part) */
  for (size_t i = 0; i < run->payload_n; i++) {
    const int in_slot = i >= hn + 2 * hn && i < hn + 3 * hn;
    if (!in_slot) assert_true(acc.sum[i] == 0);
  }
  const int64_t *slot = acc.sum + hn + 2 * hn;
  const fh_split *tr = &run->data->clients[sampled[2]].train;
  int held = 0;
  for (int k = 0; k < C; k++) {
    int n = 0;
    for (int i = 0; i < tr->n; i++) n += tr->y[i] == k;
    assert_true((slot[(size_t)C * d + k] != 0) == (n > 0));
    held += n > 0;
  }
  for (int j = 0; j < m; j++)
    if (j != 2) rig_client(run, sampled[j], 0, &acc, NULL);
  /* the server's header fits the prototypes better than before */
  float *X = malloc((size_t)m * C * d * sizeof(float));
  int32_t Y[64 * 4];
  int n = 0;
  for (int j = 0; j < m; j++) {
    const int64_t *sl = acc.sum + hn + (size_t)j * hn;
    for (int k = 0; k < C; k++) {
      if (sl[(size_t)C * d + k] == 0) continue;
      for (int i = 0; i < d; i++) X[(size_t)n * d + i] = (float)((double)sl[(size_t)k * d + i] / acc.scale);
      Y[n++] = k;
    }
  }
  float *logits = malloc((size_t)n * C * sizeof(float)), *probs = malloc((size_t)n * C * sizeof(float));
  const float *W = run->global, *b = run->global + (size_t)C * d;
  fh_linear_forward(logits, X, W, b, n, d, C);
  const double before = fh_softmax_ce_forward(probs, logits, Y, n, C);
  assert_int_equal(run->alg->server_step(run, &acc), 0);
  fh_linear_forward(logits, X, W, b, n, d, C);
  const double after = fh_softmax_ce_forward(probs, logits, Y, n, C);
  print_message("fedgh: %d prototypes (%d of client %d's classes); header CE on them %.4f -> %.4f\n", n, held,
                sampled[2], before, after);
  assert_true(after < before);
  for (size_t i = hn; i < run->payload_n; i++) assert_true(run->global[i] == 0.0f); /* only the header goes down */
  fh_accum_destroy(&acc);
  free(X);
  free(logits);
  free(probs);
  rig_free(run, cfg);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_standalone),
      cmocka_unit_test(test_lg_fedavg),
      cmocka_unit_test(test_fedproto),
      cmocka_unit_test(test_fedproto_eval),
      cmocka_unit_test(test_fedgh),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  MPI_Finalize();
  return rc;
}
