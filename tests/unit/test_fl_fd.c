/* FD (federated distillation) on heterogeneous MLPs of different feature
 * widths (mlp-32-16, mlp-24-12, mlp-20-8):
 * - the payload: with hetero.lr = 0 the model does not move, so the logits a
 *   client collects while training are its initial model's; what it sends is,
 *   per class of its train split, the mean of those logits and a flag, and
 *   nothing for the classes it lacks; checked against a pass by hand;
 * - the server: per class, the mean over the clients that saw it (each
 *   client once), flags where any did, zero elsewhere;
 * - the distillation term: a client trained towards given global logits with
 *   fd.lambda = 10 ends with its predictions nearer to their softmax than with
 *   fd.lambda = 0. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <mpi.h>

#include "fl/blocks/hetero.h"
#include "fl/client_state.h"
#include "fl_rig.h"

static fh_run *make(fh_config **cfg, const char *extra, const char *extra2) {
  const char *sets[8] = {"hetero.models=mlp-32-16,mlp-24-12,mlp-20-8", "hetero.epochs=2", "train.batch_size=16",
                         "hetero.lr=0.05", "run.algorithm=fd"};
  int n = 5;
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

/* sums [C*C], counts [C] of client k's model logits on its train split */
static void logits_by_hand(fh_run *run, int k, double *sums, double *counts) {
  const int C = run->data->num_classes;
  fh_hetero h;
  assert_int_equal(fh_hetero_create(&h, run), 0);
  fh_hnet *net = fh_hetero_net(&h, k);
  const int f = field_of(run, "fd.model");
  fh_hnet_load(net, fh_client_store_acquire(run->state, f, k, NULL));
  fh_client_store_release(run->state, f, k, 0);
  const fh_split *tr = &run->data->clients[k].train;
  memset(sums, 0, (size_t)C * C * sizeof(double));
  memset(counts, 0, (size_t)C * sizeof(double));
  for (int i = 0; i < tr->n; i++) {
    const float *z = fh_hnet_forward(net, tr->x + (size_t)i * run->data->dim, 1, 0);
    for (int j = 0; j < C; j++) sums[(size_t)tr->y[i] * C + j] += z[j];
    counts[tr->y[i]] += 1;
  }
  fh_hetero_destroy(&h);
}

static void test_fd_payload(void **state) {
  (void)state;
  fh_config *cfg;
  fh_run *run = make(&cfg, "hetero.lr=0", NULL);
  const int C = run->data->num_classes;
  const size_t cc = (size_t)C * C;
  assert_int_equal(run->payload_n, cc + C);
  fh_accum acc;
  fh_accum_create(&acc, run->payload_n, 32, 4);
  double *sums[2], counts[2][64];
  float *mean[2];
  /* client 1 and the first other client that shares a class with it */
  int ks[2] = {1, -1};
  const fh_split *t1 = &run->data->clients[1].train;
  for (int k = 0; k < run->nlocal && ks[1] < 0; k++) {
    if (k == 1) continue;
    const fh_split *tk = &run->data->clients[k].train;
    for (int i = 0; i < tk->n && ks[1] < 0; i++)
      for (int j = 0; j < t1->n; j++)
        if (tk->y[i] == t1->y[j]) {
          ks[1] = k;
          break;
        }
  }
  assert_true(ks[1] >= 0);
  for (int i = 0; i < 2; i++) {
    fh_accum_zero(&acc);
    rig_client(run, ks[i], 0, &acc, NULL);
    sums[i] = malloc(cc * sizeof(double));
    mean[i] = malloc(cc * sizeof(float));
    logits_by_hand(run, ks[i], sums[i], counts[i]);
    int seen = 0;
    for (int k = 0; k < C; k++) {
      const double sent_flag = (double)acc.sum[cc + k] / acc.scale;
      assert_true(sent_flag == (counts[i][k] > 0 ? 1.0 : 0.0));
      seen += counts[i][k] > 0;
      for (int j = 0; j < C; j++) {
        mean[i][(size_t)k * C + j] = counts[i][k] > 0 ? (float)(sums[i][(size_t)k * C + j] / counts[i][k]) : 0.0f;
        const double sent = (double)acc.sum[(size_t)k * C + j] / acc.scale;
        assert_true(fabs(sent - mean[i][(size_t)k * C + j]) < 1e-4);
      }
    }
    assert_true(seen >= 1 && seen < C); /* the split is skewed: a check of the absent classes too */
    print_message("fd: client %d sent mean logits of %d classes; class-0 row %s\n", ks[i], seen,
                  counts[i][0] > 0 ? "present" : "absent");
  }
  /* the server, on both clients' contributions together */
  fh_accum_zero(&acc);
  rig_client(run, ks[0], 0, &acc, NULL);
  rig_client(run, ks[1], 0, &acc, NULL);
  assert_int_equal(run->alg->server_step(run, &acc), 0);
  int both = 0;
  for (int k = 0; k < C; k++) {
    const int n = (counts[0][k] > 0) + (counts[1][k] > 0);
    both += n == 2;
    assert_true(run->global[cc + k] == (n > 0 ? 1.0f : 0.0f));
    for (int j = 0; j < C; j++) {
      const double want = n ? ((counts[0][k] > 0 ? mean[0][(size_t)k * C + j] : 0.0) +
                               (counts[1][k] > 0 ? mean[1][(size_t)k * C + j] : 0.0)) / n
                            : 0.0;
      assert_true(fabs(run->global[(size_t)k * C + j] - want) < 1e-4);
    }
  }
  assert_true(both >= 1);
  print_message("fd: server mean logits match by hand (%d classes held by both clients)\n", both);
  for (int i = 0; i < 2; i++) free(sums[i]), free(mean[i]);
  fh_accum_destroy(&acc);
  rig_free(run, cfg);
}

/* mean over client k's train rows of KL(softmax(L_y) || p) under its model */
static double kl_to_targets(fh_run *run, int k, const float *L) {
  const int C = run->data->num_classes;
  fh_hetero h;
  assert_int_equal(fh_hetero_create(&h, run), 0);
  fh_hnet *net = fh_hetero_net(&h, k);
  const int f = field_of(run, "fd.model");
  fh_hnet_load(net, fh_client_store_acquire(run->state, f, k, NULL));
  fh_client_store_release(run->state, f, k, 0);
  const fh_split *tr = &run->data->clients[k].train;
  double kl = 0;
  for (int i = 0; i < tr->n; i++) {
    const float *z = fh_hnet_forward(net, tr->x + (size_t)i * run->data->dim, 1, 0);
    const float *t = L + (size_t)tr->y[i] * C;
    double zm = z[0], tm = t[0], zs = 0, ts = 0;
    for (int j = 1; j < C; j++) zm = z[j] > zm ? z[j] : zm, tm = t[j] > tm ? t[j] : tm;
    for (int j = 0; j < C; j++) zs += exp(z[j] - zm), ts += exp(t[j] - tm);
    for (int j = 0; j < C; j++) {
      const double q = exp(t[j] - tm) / ts, lp = z[j] - zm - log(zs), lq = t[j] - tm - log(ts);
      kl += q * (lq - lp);
    }
  }
  fh_hetero_destroy(&h);
  return kl / tr->n;
}

static void test_fd_distillation(void **state) {
  (void)state;
  double kl[2];
  const char *lambdas[2] = {"fd.lambda=0", "fd.lambda=10"};
  for (int i = 0; i < 2; i++) {
    fh_config *cfg;
    fh_run *run = make(&cfg, lambdas[i], "hetero.epochs=5");
    const int C = run->data->num_classes;
    const size_t cc = (size_t)C * C;
    /* global logits: every class's row a fixed, fairly flat pattern */
    for (int k = 0; k < C; k++) {
      for (int j = 0; j < C; j++) run->global[(size_t)k * C + j] = j == (k + 1) % C ? 1.0f : 0.2f * (float)(j % 3);
      run->global[cc + k] = 1.0f;
    }
    float *L = malloc(cc * sizeof(float));
    memcpy(L, run->global, cc * sizeof(float));
    fh_accum acc;
    fh_accum_create(&acc, run->payload_n, 32, 4);
    rig_client(run, 1, 0, &acc, NULL);
    kl[i] = kl_to_targets(run, 1, L);
    free(L);
    fh_accum_destroy(&acc);
    rig_free(run, cfg);
  }
  print_message("fd: KL(softmax(L_y) || p) after training %.4f (lambda 0), %.4f (lambda 10)\n", kl[0], kl[1]);
  assert_true(kl[1] < kl[0]);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fd_payload),
      cmocka_unit_test(test_fd_distillation),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  MPI_Finalize();
  return rc;
}
