/* FST-CBDG on tests/fixtures/features_small.h5 (5 classes, d = 16, logit
 * scale 20): the initial head is the zero-shot classifier (its accuracy is the
 * zero-shot accuracy computed here in double, exactly, on the global test set
 * and on the clients' test rows); only C x (d + 1) floats travel; the
 * generated features are class-balanced with the requested mean and spread;
 * the pseudo-labels start at the sharpened zero-shot prediction and follow
 * q <- beta q + (1 - beta) softmax(W z + b) with the client's trained head;
 * the setup refuses a model that is not the linear head and data that are
 * not features. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <mpi.h>

#include "core/rng.h"
#include "data/features.h"
#include "fl/client_state.h"
#include "fl/evaluate.h"
#include "fl/alg/fstcbdg.h"
#include "fl_rig.h"

#define FIXTURE FH_FIXTURES_DIR "/features_small.h5"

static fh_run *fst_run(fh_config **cfg, const char *const *extra, int nextra) {
  const char *sets[32] = {"run.algorithm=fstcbdg", "data.source=features", "data.path=" FIXTURE, "model.hidden=",
                          "partition.method=dirichlet", "partition.alpha=0.5", "train.lr=1"};
  int n = 7;
  for (int i = 0; i < nextra && n < 32; i++) sets[n++] = extra[i];
  return rig_run(cfg, sets, n);
}

static fh_features_meta meta(void) {
  fh_features_meta m;
  if (fh_features_meta_read(FIXTURE, &m) != 0) fail_msg("%s", fh_error_msg());
  return m;
}

/* Correct zero-shot predictions (arg-max of z . t_c in double) over a split. */
static int zero_shot_correct(const fh_features_meta *m, const fh_split *sp) {
  int correct = 0;
  for (int i = 0; i < sp->n; i++) {
    int best = 0;
    double bs = -INFINITY;
    for (int c = 0; c < m->num_classes; c++) {
      double s = 0;
      for (int j = 0; j < m->dim; j++)
        s += (double)sp->x[(size_t)i * m->dim + j] * m->class_emb[(size_t)c * m->dim + j];
      if (s > bs) bs = s, best = c;
    }
    correct += best == sp->y[i];
  }
  return correct;
}

static int find_field(fh_run *run, const char *name) {
  for (int f = 0; f < fh_client_store_nfields(run->state); f++)
    if (strcmp(fh_client_store_field_name(run->state, f), name) == 0) return f;
  return -1;
}

static void test_round0_is_zero_shot(void **state) {
  (void)state;
  fh_config *cfg;
  fh_run *run = fst_run(&cfg, NULL, 0);
  fh_features_meta m = meta();
  const int C = m.num_classes, d = m.dim;
  /* only the head travels: C x (d + 1) floats */
  assert_int_equal(run->payload_n, (size_t)C * (d + 1));
  assert_int_equal(run->model_n, run->payload_n);
  /* W = s T, b = 0 */
  for (size_t i = 0; i < (size_t)C * d; i++) assert_true(run->global[i] == (float)m.logit_scale * m.class_emb[i]);
  for (int c = 0; c < C; c++) assert_true(run->global[(size_t)C * d + c] == 0.0f);

  int zs_global = zero_shot_correct(&m, &run->data->global_test), zs_clients = 0, n_clients = 0;
  for (int i = 0; i < run->nlocal; i++) {
    zs_clients += zero_shot_correct(&m, &run->data->clients[i].test);
    n_clients += run->data->clients[i].test.n;
  }
  fh_evaluator *ev;
  fh_round_metrics rm;
  fh_evaluator_create(&ev, run);
  fh_round_metrics_clear(&rm, 1, 1);
  assert_int_equal(fh_evaluate(ev, run, 0, &rm), 0);
  fh_evaluator_free(ev);
  print_message("zero-shot: global test %d/%d, clients' test rows %d/%d; the head: %.6f and %.6f\n", zs_global,
                run->data->global_test.n, zs_clients, n_clients, rm.global_test_accuracy, rm.test_accuracy);
  assert_true(rm.global_test_accuracy == (double)zs_global / run->data->global_test.n);
  assert_true(rm.test_accuracy == (double)zs_clients / n_clients);
  assert_true(zs_global < run->data->global_test.n); /* zero-shot is imperfect on this file */
  fh_features_meta_free(&m);
  rig_free(run, cfg);
}

static void test_zeroshot_variant_never_moves(void **state) {
  (void)state;
  const char *extra[] = {"fstcbdg.variant=zeroshot"};
  fh_config *cfg;
  fh_run *run = fst_run(&cfg, extra, 1);
  float *before = malloc(run->payload_n * sizeof(float));
  memcpy(before, run->global, run->payload_n * sizeof(float));
  char dir[] = "/tmp/fedhpc-fst-XXXXXX";
  assert_non_null(mkdtemp(dir));
  if (fh_run_execute(run, dir) != 0) fail_msg("%s", fh_error_msg());
  assert_memory_equal(before, run->global, run->payload_n * sizeof(float));
  assert_int_equal(find_field(run, "fstcbdg.q"), -1); /* no pseudo-labels kept */
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  assert_int_equal(system(cmd), 0);
  free(before);
  rig_free(run, cfg);
}

/* Generated features: M per class exactly; before normalising, each class's
 * mean is t_c within 5 sigma / sqrt(M) in every coordinate (a 5-sigma bound
 * per coordinate: C*d = 24 chances of 6e-7 each) and the pooled std of
 * x - t_c is sigma within a relative 5 / sqrt(2 M d) (the std of a sample
 * std of M*d normals is sigma / sqrt(2 M d)); after it, unit rows whose mean
 * points along t_c. */
static void test_generation_balanced(void **state) {
  (void)state;
  const int C = 3, d = 8, M = 4000;
  const float sigma = 0.2f;
  float T[3 * 8];
  fh_rng r;
  fh_rng_init(&r, 5, FH_RNG_TEST, 0, 0);
  for (int i = 0; i < C * d; i++) T[i] = (float)fh_rng_normal(&r);
  fh_features_normalise_rows(T, C, d);
  float *x = malloc(sizeof(float) * C * M * d);
  int32_t *y = malloc(sizeof(int32_t) * C * M);
  for (int norm = 0; norm < 2; norm++) {
    fh_rng_init(&r, 6, FH_RNG_TEST, 1, (uint32_t)norm);
    fh_fst_generate(T, C, d, M, sigma, norm, &r, x, y);
    for (int c = 0; c < C; c++) {
      int count = 0;
      for (int i = 0; i < C * M; i++) count += y[i] == c;
      assert_int_equal(count, M);
      double mean[8] = {0}, ss = 0, worst = 0, cosv = 0, mn = 0;
      for (int m = 0; m < M; m++) {
        const float *row = x + ((size_t)c * M + m) * d;
        assert_int_equal(y[c * M + m], c);
        double n2 = 0;
        for (int j = 0; j < d; j++) {
          mean[j] += row[j] / M;
          ss += ((double)row[j] - T[c * d + j]) * ((double)row[j] - T[c * d + j]);
          n2 += (double)row[j] * row[j];
        }
        if (norm) assert_true(fabs(sqrt(n2) - 1) < 1e-6);
      }
      for (int j = 0; j < d; j++) {
        worst = fmax(worst, fabs(mean[j] - T[c * d + j]));
        cosv += mean[j] * T[c * d + j];
        mn += mean[j] * mean[j];
      }
      cosv /= sqrt(mn);
      if (!norm) {
        const double sd = sqrt(ss / ((double)M * d));
        print_message("class %d: max |mean - t_c| = %.4f (bound %.4f), std %.4f (sigma %.2f, bound +-%.4f)\n", c, worst,
                      5 * sigma / sqrt(M), sd, sigma, sigma * 5 / sqrt(2.0 * M * d));
        assert_true(worst <= 5 * sigma / sqrt(M));
        assert_true(fabs(sd / sigma - 1) <= 5 / sqrt(2.0 * M * d));
      } else {
        print_message("class %d normalised: cos(mean, t_c) = %.5f\n", c, cosv);
        assert_true(cosv > 0.999);
      }
    }
  }
  free(x);
  free(y);
}

/* The pseudo covariance draw: class 0 has 50 members with an anisotropic
 * spread, class 1 none. Class 0's draws have mean t_0 and covariance
 * (1 - l) S + l sigma^2 I, l = kappa / (50 + kappa), within 6 standard errors
 * per entry (se of a covariance entry <= sqrt(2 / M) x the largest variance);
 * class 1's are sigma^2 I. */
static void test_generation_pseudo_covariance(void **state) {
  (void)state;
  const int C = 2, d = 3, M = 40000, mc = 50;
  const float sigma = 0.05f, kappa = 10;
  float T[6] = {1, 0, 0, 0, 1, 0}, Z[50 * 3], scratch[3];
  int members[50], offsets[3] = {0, mc, mc};
  fh_rng r;
  fh_rng_init(&r, 9, FH_RNG_TEST, 2, 0);
  for (int i = 0; i < mc; i++) {
    members[i] = i;
    Z[i * 3 + 0] = 0.5f + 0.3f * (float)fh_rng_normal(&r);
    Z[i * 3 + 1] = 0.1f * (float)fh_rng_normal(&r);
    Z[i * 3 + 2] = 0.02f * (float)fh_rng_normal(&r);
  }
  double zbar[3] = {0}, S[9] = {0};
  for (int i = 0; i < mc; i++)
    for (int j = 0; j < 3; j++) zbar[j] += Z[i * 3 + j] / (double)mc;
  for (int i = 0; i < mc; i++)
    for (int a = 0; a < 3; a++)
      for (int b = 0; b < 3; b++) S[a * 3 + b] += (Z[i * 3 + a] - zbar[a]) * (Z[i * 3 + b] - zbar[b]) / (mc - 1);
  const double lam = kappa / (mc + kappa);
  float *x = malloc(sizeof(float) * C * M * d);
  int32_t *y = malloc(sizeof(int32_t) * C * M);
  fh_rng_init(&r, 9, FH_RNG_TEST, 3, 0);
  fh_fst_generate_cov(T, C, d, M, sigma, kappa, Z, members, offsets, 0, &r, scratch, x, y);
  for (int c = 0; c < C; c++) {
    double mean[3] = {0}, cov[9] = {0}, target[9], vmax = 0;
    for (int m = 0; m < M; m++)
      for (int j = 0; j < 3; j++) mean[j] += x[((size_t)c * M + m) * 3 + j] / (double)M;
    for (int m = 0; m < M; m++) {
      const float *row = x + ((size_t)c * M + m) * 3;
      assert_int_equal(y[c * M + m], c);
      for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++) cov[a * 3 + b] += (row[a] - mean[a]) * (row[b] - mean[b]) / (M - 1);
    }
    for (int a = 0; a < 9; a++) {
      const double iso = a % 4 == 0 ? (double)sigma * sigma : 0;
      target[a] = c == 0 ? (1 - lam) * S[a] + lam * iso : iso;
      vmax = fmax(vmax, fabs(target[a]));
    }
    const double tol = 6 * sqrt(2.0 / M) * vmax;
    for (int j = 0; j < 3; j++) assert_true(fabs(mean[j] - T[c * 3 + j]) <= 6 * sqrt(vmax / M));
    for (int a = 0; a < 9; a++) {
      if (fabs(cov[a] - target[a]) > tol)
        fail_msg("class %d: covariance entry %d is %g, expected %g (tolerance %g)", c, a, cov[a], target[a], tol);
    }
    print_message("class %d: covariance within %.2g of the target (largest entry %.3g)\n", c, tol, vmax);
  }
  free(x);
  free(y);
}

/* softmax(scale * (W z + b)) of row z, in double. */
static void softmax_row(const float *W, const float *b, const float *z, int C, int d, double scale, double *p) {
  double mx = -INFINITY, sum = 0;
  for (int c = 0; c < C; c++) {
    double s = b ? b[c] : 0;
    for (int j = 0; j < d; j++) s += (double)W[(size_t)c * d + j] * z[j];
    p[c] = scale * s;
    mx = fmax(mx, p[c]);
  }
  for (int c = 0; c < C; c++) sum += p[c] = exp(p[c] - mx);
  for (int c = 0; c < C; c++) p[c] /= sum;
}

/* One client twice: the stored q after each update is
 * beta q_before + (1 - beta) softmax(W_k z + b_k), W_k the head it sent; the
 * first q_before is softmax(s * (s T) z). */
static void test_moving_average(void **state) {
  (void)state;
  const char *extra[] = {"fstcbdg.beta=0.7", "fstcbdg.samples_per_class=8"};
  fh_config *cfg;
  fh_run *run = fst_run(&cfg, extra, 2);
  fh_features_meta m = meta();
  const int C = m.num_classes, d = m.dim, field = find_field(run, "fstcbdg.q");
  assert_true(field >= 0);
  const fh_split *tr = &run->data->clients[0].train;
  assert_true(fh_client_store_field_len(run->state, field) >= (size_t)tr->n * C);
  double *q = malloc(sizeof(double) * (size_t)tr->n * C), p[8];
  float *W0 = malloc(sizeof(float) * run->payload_n), *Wk = malloc(sizeof(float) * run->payload_n);
  memcpy(W0, run->global, sizeof(float) * run->payload_n);
  for (int i = 0; i < tr->n; i++) softmax_row(W0, NULL, tr->x + (size_t)i * d, C, d, m.logit_scale, q + (size_t)i * C);
  fh_accum acc;
  fh_accum_create(&acc, run->payload_n, 32, 1);
  for (int t = 0; t < 2; t++) {
    fh_accum_zero(&acc);
    fh_client_report rep;
    rig_client(run, 0, t, &acc, &rep);
    assert_true(fh_accum_mean(&acc, Wk) == tr->n);
    assert_true(dist2(Wk, W0, run->payload_n) > 1e-3); /* it trained */
    int fresh;
    const float *qs = fh_client_store_acquire(run->state, field, 0, &fresh);
    assert_int_equal(fresh, 0);
    double worst = 0;
    for (int i = 0; i < tr->n; i++) {
      softmax_row(Wk, Wk + (size_t)C * d, tr->x + (size_t)i * d, C, d, 1.0, p);
      for (int c = 0; c < C; c++) {
        double expect = 0.7 * q[(size_t)i * C + c] + 0.3 * p[c];
        worst = fmax(worst, fabs(qs[(size_t)i * C + c] - expect));
        q[(size_t)i * C + c] = qs[(size_t)i * C + c];
      }
    }
    assert_int_equal(fh_client_store_release(run->state, field, 0, 0), 0);
    print_message("round %d: max |q - (beta q + (1 - beta) p)| = %.2e over %d rows\n", t, worst, tr->n);
    assert_true(worst < 1e-5);
  }
  fh_accum_destroy(&acc);
  free(q);
  free(W0);
  free(Wk);
  fh_features_meta_free(&m);
  rig_free(run, cfg);
}

/* The setup's refusals. */
static void test_refusals(void **state) {
  (void)state;
  struct {
    const char *set, *says;
  } cases[] = {{"model.hidden=8", "model.hidden"}, {"data.source=synthetic", "data.source = features"}};
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    const char *sets[] = {"run.algorithm=fstcbdg", "data.source=features", "data.path=" FIXTURE, "model.hidden=",
                          "run.clients=8", "output.save_model=false", "data.synthetic_max_samples=120", cases[k].set};
    const fh_key_spec *tables[64];
    int nt = fh_all_key_tables(tables, 64);
    fh_config *cfg;
    fh_error_clear();
    assert_int_equal(fh_config_load(&cfg, NULL, sets, 8, tables, nt), 0);
    fh_run *run = NULL;
    int rc = fh_run_create(&run, cfg, MPI_COMM_WORLD);
    print_message("%s -> %d: %s\n", cases[k].set, rc, fh_error_msg());
    assert_int_equal(rc, FH_ERR_CONFIG);
    assert_non_null(strstr(fh_error_msg(), cases[k].says));
    fh_run_free(run);
    fh_config_free(cfg);
  }
  fh_error_clear();
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_round0_is_zero_shot),       cmocka_unit_test(test_zeroshot_variant_never_moves),
      cmocka_unit_test(test_generation_balanced),       cmocka_unit_test(test_generation_pseudo_covariance),
      cmocka_unit_test(test_moving_average),            cmocka_unit_test(test_refusals),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  MPI_Finalize();
  return rc;
}
