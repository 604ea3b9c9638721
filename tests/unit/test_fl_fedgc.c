/* FedGC (src/fl/addons/fedgc.c, src/data/generator.c):
 * - budgets: every method sums to M; equal and inverse match their formulas
 *   (inverse within one sample of M (1/n_k) / sum 1/n_j); water-filling gives
 *   M_k = max(0, b - n_k) or one more at the level, with b the largest level
 *   whose fill fits in M (b + 1 does not);
 * - largest-remainder apportionment and the class mixes on worked examples;
 * - the membership AUC on worked examples (ties count one half);
 * - the mixture fitted on 6000 draws of a known 3-component Gaussian mixture
 *   recovers it: means within 0.15, standard deviations within 8%, weights
 *   within 0.02 (about 3.5 standard errors each);
 * - the whole generator fitted on rows of a known mixture in a 3-dim subspace
 *   of 10 dims (tiny isotropic noise), given in 4 parts: every fitted
 *   direction lies in the subspace (projection norm > 0.999), and each class's
 *   components, mapped back to the input space, match the truth: means within
 *   0.15, covariances within 10% (Frobenius, relative);
 * - mixed guidance with strength 0 gives exactly real guidance's samples and
 *   with strength 1 exactly prompt guidance's (same stream); real guidance
 *   keeps the anchor's label;
 * - a run on the digits with generated data: each client's generated labels
 *   are exactly the class counts of its mix (pool shares and missing
 *   classes), the generated rows sum to M, and fedgc.weights = real leaves
 *   them out of the aggregation weight;
 * - a pool routed by /client or by /domain (the clients' domains in the data
 *   file's /train/client_domain): every generated row is a pool row of the
 *   client's route (found by its features), of its label, no pool row goes to
 *   two clients, and each client's class counts are its route's mix;
 * - the server's real hold-out rows in place of generated ones
 *   (fedgc.source = holdout): every added row is a hold-out row with its
 *   label, each client's class counts are its mix of the hold-out's class
 *   shares, the added rows sum to M and are counted as generated (not
 *   members); disjoint: no row dealt twice; cycle with M above the hold-out:
 *   each class's rows dealt floor or ceil of (its deals / its rows) times. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <hdf5.h>
#include <mpi.h>
#include <unistd.h>

#include "cmd/commands.h"
#include "core/config.h"
#include "core/error.h"
#include "core/rng.h"
#include "data/dataset.h"
#include "data/generator.h"
#include "fl/addons/fedgc.h"
#include "fl/run.h"

#define DIGITS FH_FIXTURES_DIR "/../../input/digits.h5"

static long long fill(long long b, const int *n, int K) {
  long long s = 0;
  for (int k = 0; k < K; k++) s += b > n[k] ? b - n[k] : 0;
  return s;
}

static long long sum_int(const int *v, int n) {
  long long s = 0;
  for (int i = 0; i < n; i++) s += v[i];
  return s;
}

static void test_budgets(void **state) {
  (void)state;
  const int n[] = {5, 50, 10, 200, 1, 30, 30}, K = 7;
  int out[7];
  long long level;
  for (long long M = 0; M <= 1500; M += 37) {
    fh_fedgc_budgets(FH_BUDGET_EQUAL, M, n, K, out, &level);
    assert_int_equal(sum_int(out, K), M);
    for (int k = 0; k < K; k++) assert_int_equal(out[k], M / K + (k < M % K));
    assert_int_equal(level, -1);

    fh_fedgc_budgets(FH_BUDGET_INVERSE, M, n, K, out, NULL);
    assert_int_equal(sum_int(out, K), M);
    double inv = 0;
    for (int k = 0; k < K; k++) inv += 1.0 / n[k];
    for (int k = 0; k < K; k++) assert_true(fabs(out[k] - M * (1.0 / n[k]) / inv) < 1.0);

    fh_fedgc_budgets(FH_BUDGET_WATERFILL, M, n, K, out, &level);
    assert_int_equal(sum_int(out, K), M);
    assert_true(level >= 0);
    assert_true(fill(level, n, K) <= M);    /* b fits ..                  */
    assert_true(fill(level + 1, n, K) > M); /* .. and b + 1 does not      */
    for (int k = 0; k < K; k++) {
      const int base = level > n[k] ? (int)(level - n[k]) : 0;
      assert_true(out[k] == base || (n[k] <= level && out[k] == base + 1));
    }
  }
  /* worked example: sizes 1, 2, 3 and M = 6 fill to level 4 exactly */
  const int small[] = {1, 2, 3};
  int o3[3];
  fh_fedgc_budgets(FH_BUDGET_WATERFILL, 6, small, 3, o3, &level);
  assert_int_equal(level, 4);
  assert_int_equal(o3[0], 3), assert_int_equal(o3[1], 2), assert_int_equal(o3[2], 1);
  /* M = 4: level 3 takes 3, the one left goes to the smallest client */
  fh_fedgc_budgets(FH_BUDGET_WATERFILL, 4, small, 3, o3, &level);
  assert_int_equal(level, 3);
  assert_int_equal(o3[0], 3), assert_int_equal(o3[1], 1), assert_int_equal(o3[2], 0);
}

static void test_apportion_and_mix(void **state) {
  (void)state;
  int out[3];
  const double w1[] = {1, 1, 1}, w2[] = {0, 2, 1};
  fh_fedgc_apportion(10, w1, 3, out);
  assert_int_equal(out[0], 4), assert_int_equal(out[1], 3), assert_int_equal(out[2], 3);
  fh_fedgc_apportion(7, w2, 3, out); /* 0, 4.67, 2.33 */
  assert_int_equal(out[0], 0), assert_int_equal(out[1], 5), assert_int_equal(out[2], 2);
  const double freq[] = {0.5, 0.25, 0.25}, third[] = {1 / 3.0, 1 / 3.0, 1 / 3.0};
  const int have[] = {10, 0, 0};
  fh_fedgc_class_counts(FH_MIX_POOL, 8, 3, freq, have, out);
  assert_int_equal(out[0], 4), assert_int_equal(out[1], 2), assert_int_equal(out[2], 2);
  /* 10 rows of class 0 and 10 generated: target 6.67 each; deficits 0, 6.67, 6.67 */
  fh_fedgc_class_counts(FH_MIX_MISSING, 10, 3, third, have, out);
  assert_int_equal(out[0], 0), assert_int_equal(out[1], 5), assert_int_equal(out[2], 5);
}

static void test_auc(void **state) {
  (void)state;
  const double a[] = {0.1, 0.2, 0.3, 0.15}; /* members 0.1, 0.2; non-members 0.3, 0.15 */
  assert_true(fabs(fh_fedgc_auc(a, 2, 2) - 0.75) < 1e-15);
  const double b[] = {0.5, 0.5};
  assert_true(fabs(fh_fedgc_auc(b, 1, 1) - 0.5) < 1e-15);
  const double c[] = {3, 4, 1, 2}; /* members above every non-member */
  assert_true(fabs(fh_fedgc_auc(c, 2, 2)) < 1e-15);
}

/* ---- a known mixture ----------------------------------------------------------- */

enum { Q = 2, KC = 3, NG = 6000 };
static const double TRUE_MU[KC][Q] = {{0, 0}, {8, 0}, {0, 8}}, TRUE_SD[KC][Q] = {{1, 0.5}, {0.7, 1.2}, {1.5, 1}};
static const double TRUE_W[KC] = {0.5, 0.3, 0.2};

static void test_gmm_recovery(void **state) {
  (void)state;
  double *z = malloc(sizeof(double) * NG * Q);
  fh_rng r;
  fh_rng_init(&r, 3, FH_RNG_TEST, 1, 0);
  for (int i = 0; i < NG; i++) {
    const double u = fh_rng_uniform(&r);
    const int k = u < TRUE_W[0] ? 0 : u < TRUE_W[0] + TRUE_W[1] ? 1 : 2;
    for (int j = 0; j < Q; j++) z[i * Q + j] = TRUE_MU[k][j] + TRUE_SD[k][j] * fh_rng_normal(&r);
  }
  double w[KC], mu[KC * Q], cov[KC * Q * Q], var[KC * Q];
  fh_rng s;
  fh_rng_init(&s, 4, FH_RNG_TEST, 2, 0);
  assert_int_equal(fh_gmm_fit(z, NG, Q, KC, 100, 1e-3, 1, &s, w, mu, cov), KC);
  for (int c = 0; c < KC; c++)
    for (int j = 0; j < Q; j++) var[c * Q + j] = cov[c * Q * Q + j * Q + j];
  for (int k = 0; k < KC; k++) {
    int best = 0;
    double bd = INFINITY;
    for (int c = 0; c < KC; c++) {
      const double d = hypot(mu[c * Q] - TRUE_MU[k][0], mu[c * Q + 1] - TRUE_MU[k][1]);
      if (d < bd) bd = d, best = c;
    }
    printf("  component %d: mean error %.3f, weight %.3f (true %.2f), sd %.3f %.3f (true %.2f %.2f)\n", k, bd,
           w[best], TRUE_W[k], sqrt(var[best * Q]), sqrt(var[best * Q + 1]), TRUE_SD[k][0], TRUE_SD[k][1]);
    assert_true(bd < 0.15);
    assert_true(fabs(w[best] - TRUE_W[k]) < 0.02);
    for (int j = 0; j < Q; j++) assert_true(fabs(sqrt(var[best * Q + j]) / TRUE_SD[k][j] - 1) < 0.08);
  }
  free(z);
}

/* ---- the whole generator on a known mixture in a subspace --------------------------- */

enum { D = 10, QS = 3, CL = 2, KS = 2, NPC = 4000 };
/* class c, component k: mean and sd in the subspace's coordinates */
static const double S_MU[CL][KS][QS] = {{{0, 0, 0}, {6, 0, 0}}, {{0, 6, 0}, {0, 0, 6}}};
static const double S_SD[CL][KS][QS] = {{{1, 0.5, 0.3}, {0.5, 1, 0.4}}, {{0.8, 0.6, 1}, {0.4, 0.9, 0.7}}};
static const double S_W[CL][KS] = {{0.6, 0.4}, {0.5, 0.5}};

typedef struct {
  fh_generator g;
  double U[QS][D], m0[D];
} fitted;

static void make_basis(double U[QS][D], double m0[D]) {
  for (int j = 0; j < QS; j++) {
    for (int i = 0; i < D; i++) U[j][i] = sin(1.3 * (i + 1) * (j + 1)) + (i == j ? 2 : 0);
    for (int k = 0; k < j; k++) {
      double dot = 0;
      for (int i = 0; i < D; i++) dot += U[j][i] * U[k][i];
      for (int i = 0; i < D; i++) U[j][i] -= dot * U[k][i];
    }
    double nrm = 0;
    for (int i = 0; i < D; i++) nrm += U[j][i] * U[j][i];
    for (int i = 0; i < D; i++) U[j][i] /= sqrt(nrm);
  }
  for (int i = 0; i < D; i++) m0[i] = 0.3 * i - 1;
}

static int setup_fit(void **state) {
  fitted *f = calloc(1, sizeof *f);
  make_basis(f->U, f->m0);
  const int n = CL * NPC;
  float *x = malloc(sizeof(float) * n * D);
  int32_t *y = malloc(sizeof(int32_t) * n);
  fh_rng r;
  fh_rng_init(&r, 5, FH_RNG_TEST, 3, 0);
  for (int i = 0; i < n; i++) {
    const int c = (int)fh_rng_below(&r, CL);
    const int k = fh_rng_uniform(&r) < S_W[c][0] ? 0 : 1;
    double z[QS];
    for (int j = 0; j < QS; j++) z[j] = S_MU[c][k][j] + S_SD[c][k][j] * fh_rng_normal(&r);
    for (int t = 0; t < D; t++) {
      double v = f->m0[t] + 0.01 * fh_rng_normal(&r);
      for (int j = 0; j < QS; j++) v += z[j] * f->U[j][t];
      x[(size_t)i * D + t] = (float)v;
    }
    y[i] = c;
  }
  const int part_end[4] = {1000, 3500, 6000, n};
  fh_generator_params p = {.q = QS, .K = KS, .em_iters = 100, .var_floor = 1e-3, .full = 1, .seed = 11};
  if (fh_generator_fit(&f->g, MPI_COMM_WORLD, D, CL, x, y, n, part_end, 4, &p) != 0)
    fail_msg("fit: %s", fh_error_msg());
  free(x);
  free(y);
  *state = f;
  return 0;
}

static int teardown_fit(void **state) {
  fitted *f = *state;
  fh_generator_free(&f->g);
  free(f);
  return 0;
}

static void test_generator_recovery(void **state) {
  fitted *f = *state;
  const fh_generator *g = &f->g;
  for (int j = 0; j < QS; j++) { /* the direction lies in span(U) */
    double pr = 0;
    for (int k = 0; k < QS; k++) {
      double dot = 0;
      for (int i = 0; i < D; i++) dot += g->basis[j * D + i] * f->U[k][i];
      pr += dot * dot;
    }
    printf("  direction %d: norm of its projection onto the true subspace %.6f\n", j, sqrt(pr));
    assert_true(sqrt(pr) > 0.999);
  }
  for (int c = 0; c < CL; c++) {
    assert_int_equal(g->ncomp[c], KS);
    for (int k = 0; k < KS; k++) {
      /* the true component in the input space: mean m0 + U mu, covariance U diag(sd^2) U^T */
      double tm[D], tc[D][D];
      for (int i = 0; i < D; i++) {
        tm[i] = f->m0[i];
        for (int j = 0; j < QS; j++) tm[i] += S_MU[c][k][j] * f->U[j][i];
      }
      for (int a = 0; a < D; a++)
        for (int b = 0; b < D; b++) {
          tc[a][b] = 0;
          for (int j = 0; j < QS; j++) tc[a][b] += S_SD[c][k][j] * S_SD[c][k][j] * f->U[j][a] * f->U[j][b];
        }
      /* the fitted component nearest in mean */
      int best = 0;
      double bd = INFINITY, fm[KS][D];
      for (int e = 0; e < KS; e++) {
        double d2 = 0;
        for (int i = 0; i < D; i++) {
          fm[e][i] = g->mean[i];
          for (int j = 0; j < QS; j++) fm[e][i] += g->mu[((size_t)c * KS + e) * QS + j] * g->basis[j * D + i];
          d2 += (fm[e][i] - tm[i]) * (fm[e][i] - tm[i]);
        }
        if (d2 < bd) bd = d2, best = e;
      }
      const double *v = g->cov + ((size_t)c * KS + best) * QS * QS;
      double diff = 0, nrm = 0;
      for (int a = 0; a < D; a++)
        for (int b = 0; b < D; b++) {
          double fc = 0; /* V^T cov V */
          for (int j = 0; j < QS; j++)
            for (int l = 0; l < QS; l++) fc += g->basis[j * D + a] * v[j * QS + l] * g->basis[l * D + b];
          diff += (fc - tc[a][b]) * (fc - tc[a][b]);
          nrm += tc[a][b] * tc[a][b];
        }
      printf("  class %d component %d: mean error %.4f, covariance error %.4f (relative), weight %.3f (true %.2f)\n",
             c, k, sqrt(bd), sqrt(diff / nrm), g->weight[c * KS + best], S_W[c][k]);
      assert_true(sqrt(bd) < 0.15);
      assert_true(sqrt(diff / nrm) < 0.10);
      assert_true(fabs(g->weight[c * KS + best] - S_W[c][k]) < 0.03);
    }
  }
}

static void test_guidance_limits(void **state) {
  fitted *f = *state;
  const fh_generator *g = &f->g;
  float anchor[D], xa[D], xb[D];
  for (int i = 0; i < D; i++) anchor[i] = (float)(f->m0[i] + 0.5 * f->U[0][i]);
  double zb[3 * QS + D];
  for (int design = FH_GEN_SINGLE; design <= FH_GEN_DIVERSE; design++)
    for (int t = 0; t < 50; t++) {
      fh_gen_options o = {.design = design, .tmin = 0.5, .tmax = 1.5, .noise = 0.3};
      fh_rng ra, rb;
      int32_t ya, yb;
      /* strength 0 = real guidance */
      fh_rng_init(&ra, 9, FH_RNG_TEST, (uint32_t)t, 0), fh_rng_init(&rb, 9, FH_RNG_TEST, (uint32_t)t, 0);
      o.guidance = FH_GEN_REAL;
      fh_generator_sample(g, &o, 1, anchor, 1, &ra, zb, xa, &ya);
      o.guidance = FH_GEN_MIXED, o.strength = 0;
      fh_generator_sample(g, &o, 1, anchor, 1, &rb, zb, xb, &yb);
      assert_memory_equal(xa, xb, sizeof xa);
      assert_int_equal(ya, yb);
      /* strength 1 = prompt guidance */
      fh_rng_init(&ra, 9, FH_RNG_TEST, (uint32_t)t, 1), fh_rng_init(&rb, 9, FH_RNG_TEST, (uint32_t)t, 1);
      o.guidance = FH_GEN_PROMPT;
      fh_generator_sample(g, &o, 0, NULL, 0, &ra, zb, xa, &ya);
      o.guidance = FH_GEN_MIXED, o.strength = 1;
      fh_generator_sample(g, &o, 0, anchor, 1, &rb, zb, xb, &yb);
      assert_memory_equal(xa, xb, sizeof xa);
      assert_int_equal(ya, 0), assert_int_equal(yb, 0);
      /* in between it is neither */
      fh_rng_init(&rb, 9, FH_RNG_TEST, (uint32_t)t, 1);
      o.strength = 0.5;
      fh_generator_sample(g, &o, 0, anchor, 1, &rb, zb, xb, &yb);
      assert_memory_not_equal(xa, xb, sizeof xa);
      /* real guidance keeps the anchor's label, whatever class was asked */
      fh_rng_init(&ra, 9, FH_RNG_TEST, (uint32_t)t, 2);
      o.guidance = FH_GEN_REAL;
      fh_generator_sample(g, &o, 0, anchor, 1, &ra, zb, xa, &ya);
      assert_int_equal(ya, 1);
    }
}

/* ---- a run on the digits --------------------------------------------------------- */

static fh_run *digits_run(fh_config **cfg, const char *mix, const char *weights) {
  char m[64], w[64];
  snprintf(m, sizeof m, "fedgc.class_mix=%s", mix);
  snprintf(w, sizeof w, "fedgc.weights=%s", weights);
  const char *sets[] = {"data.source=hdf5", "data.path=" DIGITS, "data.server_fraction=0.2",
                        "data.server_shards=5", "run.clients=12", "partition.method=dirichlet",
                        "partition.alpha=0.1", "partition.min_size=2", "model.hidden=8",
                        "fedgc.enabled=true", "fedgc.total=700", "fedgc.guidance=prompt",
                        "fedgc.budget=waterfill", m, w, "output.save_model=false"};
  const fh_key_spec *tables[64];
  int nt = fh_all_key_tables(tables, 64);
  if (fh_config_load(cfg, NULL, sets, (int)(sizeof sets / sizeof *sets), tables, nt) != 0)
    fail_msg("config: %s", fh_error_msg());
  fh_run *run = NULL;
  if (fh_run_create(&run, *cfg, MPI_COMM_WORLD) != 0) fail_msg("run: %s", fh_error_msg());
  return run;
}

static void check_mix(const char *mix, int mix_id, const char *weights) {
  fh_config *cfg = NULL;
  fh_run *run = digits_run(&cfg, mix, weights);
  const int K = run->nlocal, C = run->data->num_classes;
  /* the server rows' class shares */
  fh_split srv;
  int64_t total = 0;
  assert_int_equal(fh_dataset_load_server(cfg, 1, 0, 1, &srv, &total), 0);
  double freq[16] = {0};
  for (int i = 0; i < srv.n; i++) freq[srv.y[i]] += 1.0 / srv.n;
  int n[64], Mk[64];
  long long gen = 0;
  for (int k = 0; k < K; k++) n[k] = run->data->clients[k].train.n - run->data->clients[k].train.generated;
  fh_fedgc_budgets(FH_BUDGET_WATERFILL, 700, n, K, Mk, NULL);
  for (int k = 0; k < K; k++) {
    const fh_split *tr = &run->data->clients[k].train;
    assert_int_equal(tr->generated, Mk[k]);
    gen += tr->generated;
    int have[16] = {0}, got[16] = {0}, want[16];
    for (int i = 0; i < n[k]; i++) have[tr->y[i]]++;
    for (int i = n[k]; i < tr->n; i++) got[tr->y[i]]++;
    fh_fedgc_class_counts(mix_id, Mk[k], C, freq, have, want);
    for (int c = 0; c < C; c++) assert_int_equal(got[c], want[c]);
    if (mix_id == FH_MIX_MISSING) /* no generated sample of a class the client has more than its share of */
      for (int c = 0; c < C; c++)
        if (have[c] >= freq[c] * (n[k] + Mk[k])) assert_int_equal(got[c], 0);
    assert_true(fh_split_weight(tr) == (strcmp(weights, "real") == 0 ? n[k] : tr->n));
  }
  assert_int_equal(gen, 700);
  free(srv.x);
  free(srv.y);
  fh_run_free(run);
  fh_config_free(cfg);
}

static void test_run_class_mix(void **state) {
  (void)state;
  check_mix("pool", FH_MIX_POOL, "merged");
  check_mix("missing", FH_MIX_MISSING, "real");
}

/* ---- a routed pool ------------------------------------------------------------------ */

enum { RP_N = 1200, RP_K = 6 };

/* The 64 raw features of pool row i: its id in the first three (0..16 each,
 * the digits' range), the rest a function of the label. */
static void pool_row(int i, int y, float *x) {
  for (int j = 0; j < 64; j++) x[j] = (float)((y + j) % 17);
  x[0] = (float)(i % 16), x[1] = (float)((i / 16) % 16), x[2] = (float)(i / 256);
}

static void write_ints(hid_t f, const char *name, const int32_t *v, hsize_t n) {
  hid_t sp = H5Screate_simple(1, &n, NULL);
  hid_t d = H5Dcreate2(f, name, H5T_NATIVE_INT32, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  assert_true(d >= 0);
  assert_true(H5Dwrite(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0);
  H5Dclose(d), H5Sclose(sp);
}

/* pool.h5 of RP_N rows routed by route ("client", "domain") ids id [RP_N]. */
static void write_pool(const char *path, const char *route, const int32_t *id, int32_t *y) {
  float *x = malloc((size_t)RP_N * 64 * sizeof(float));
  for (int i = 0; i < RP_N; i++) y[i] = (int32_t)((i * 7 + i / 13) % 10), pool_row(i, y[i], x + (size_t)i * 64);
  hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  hsize_t dims[2] = {RP_N, 64};
  hid_t sp = H5Screate_simple(2, dims, NULL);
  hid_t d = H5Dcreate2(f, "/x", H5T_NATIVE_FLOAT, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  assert_true(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) >= 0);
  H5Dclose(d), H5Sclose(sp);
  write_ints(f, "/y", y, RP_N);
  char name[32];
  snprintf(name, sizeof name, "/%s", route);
  write_ints(f, name, id, RP_N);
  H5Fclose(f);
  free(x);
}

/* dst: a copy of the digits file with /train/client_domain = dom [RP_K]. */
static void digits_with_domains(const char *dst, const int32_t *dom) {
  FILE *in = fopen(DIGITS, "rb"), *out = fopen(dst, "wb");
  assert_non_null(in), assert_non_null(out);
  char buf[1 << 16];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, in)) > 0) assert_int_equal(fwrite(buf, 1, n, out), n);
  fclose(in), fclose(out);
  hid_t f = H5Fopen(dst, H5F_ACC_RDWR, H5P_DEFAULT);
  assert_true(f >= 0);
  write_ints(f, "/train/client_domain", dom, RP_K);
  H5Fclose(f);
}

/* A run on the digits (data) with the routed pool; every generated row is
 * looked up among the pool's rows, normalised as the run normalises them. */
static void check_routed(const char *data, const char *pool, const int32_t *row_route, const int32_t *client_route,
                         const int32_t *py) {
  char sd[600], sp[600];
  snprintf(sd, sizeof sd, "data.path=%s", data);
  snprintf(sp, sizeof sp, "fedgc.pool=%s", pool);
  const char *sets[] = {"data.source=hdf5", sd, "data.server_fraction=0", "run.clients=6",
                        "partition.method=dirichlet", "partition.alpha=0.3", "partition.min_size=2",
                        "model.hidden=8", "fedgc.enabled=true", "fedgc.total=420", "fedgc.budget=inverse",
                        sp, "output.save_model=false"};
  const fh_key_spec *tables[64];
  int nt = fh_all_key_tables(tables, 64);
  fh_config *cfg = NULL;
  if (fh_config_load(&cfg, NULL, sets, (int)(sizeof sets / sizeof *sets), tables, nt) != 0)
    fail_msg("config: %s", fh_error_msg());
  fh_run *run = NULL;
  if (fh_run_create(&run, cfg, MPI_COMM_WORLD) != 0) fail_msg("run: %s", fh_error_msg());
  const fh_dataset *ds = run->data;
  assert_int_equal(run->nlocal, RP_K);
  float *norm = malloc((size_t)RP_N * 64 * sizeof(float));
  for (int i = 0; i < RP_N; i++) {
    float *p = norm + (size_t)i * 64;
    pool_row(i, py[i], p);
    for (int j = 0; j < 64; j++) p[j] = (p[j] / ds->value_scale - ds->mean[0]) / ds->std[0];
  }
  char *used = calloc(RP_N, 1);
  long long gen = 0;
  for (int k = 0; k < RP_K; k++) {
    const fh_split *tr = &ds->clients[k].train;
    assert_true(tr->generated > 0);
    gen += tr->generated;
    int have[10] = {0}, got[10] = {0}, want[10], rows_r = 0;
    double freq[10] = {0};
    for (int i = 0; i < tr->n - tr->generated; i++) have[tr->y[i]]++;
    for (int i = 0; i < RP_N; i++)
      if (row_route[i] == client_route[k]) freq[py[i]] += 1, rows_r++;
    for (int c = 0; c < 10; c++) freq[c] /= rows_r;
    for (int i = tr->n - tr->generated; i < tr->n; i++) {
      const float *xi = tr->x + (size_t)i * 64;
      int hit = -1;
      for (int r = 0; r < RP_N && hit < 0; r++)
        if (memcmp(xi, norm + (size_t)r * 64, 64 * sizeof(float)) == 0) hit = r;
      if (hit < 0) fail_msg("client %d: generated row %d is no pool row", k, i);
      assert_int_equal(row_route[hit], client_route[k]); /* routed to the client's id or domain */
      assert_int_equal(tr->y[i], py[hit]);
      assert_int_equal(used[hit], 0); /* disjoint */
      used[hit] = 1;
      got[tr->y[i]]++;
    }
    fh_fedgc_class_counts(FH_MIX_POOL, tr->generated, 10, freq, have, want);
    for (int c = 0; c < 10; c++) assert_int_equal(got[c], want[c]);
  }
  assert_int_equal(gen, 420);
  free(used), free(norm);
  fh_run_free(run);
  fh_config_free(cfg);
}

static void test_routed_pool(void **state) {
  (void)state;
  char dir[] = "/tmp/fh_fedgc_XXXXXX";
  assert_non_null(mkdtemp(dir));
  char pool[128], data[128];
  snprintf(pool, sizeof pool, "%s/pool.h5", dir);
  snprintf(data, sizeof data, "%s/digits_dom.h5", dir);
  int32_t id[RP_N], y[RP_N], self[RP_K], dom[RP_K] = {2, 0, 1, 2, 0, 1};
  for (int k = 0; k < RP_K; k++) self[k] = k;
  for (int i = 0; i < RP_N; i++) id[i] = (int32_t)((i / 3) % RP_K); /* by client */
  write_pool(pool, "client", id, y);
  check_routed(DIGITS, pool, id, self, y);
  for (int i = 0; i < RP_N; i++) id[i] = (int32_t)((i / 5) % 3); /* by domain */
  write_pool(pool, "domain", id, y);
  digits_with_domains(data, dom);
  check_routed(data, pool, id, dom, y);
  unlink(pool), unlink(data), rmdir(dir);
}

/* ---- the hold-out's real rows (fedgc.source = holdout) --------------------------- */

static void check_holdout(const char *draw, int M) {
  char sd[64], st[64];
  snprintf(sd, sizeof sd, "fedgc.pool_draw=%s", draw);
  snprintf(st, sizeof st, "fedgc.total=%d", M);
  const char *sets[] = {"data.source=hdf5", "data.path=" DIGITS, "data.server_fraction=0.2",
                        "data.server_shards=5", "run.clients=12", "partition.method=dirichlet",
                        "partition.alpha=0.1", "partition.min_size=2", "model.hidden=8",
                        "fedgc.enabled=true", "fedgc.source=holdout", "fedgc.budget=inverse", sd, st,
                        "output.save_model=false"};
  const fh_key_spec *tables[64];
  int nt = fh_all_key_tables(tables, 64);
  fh_config *cfg = NULL;
  if (fh_config_load(&cfg, NULL, sets, (int)(sizeof sets / sizeof *sets), tables, nt) != 0)
    fail_msg("config: %s", fh_error_msg());
  fh_run *run = NULL;
  if (fh_run_create(&run, cfg, MPI_COMM_WORLD) != 0) fail_msg("run: %s", fh_error_msg());
  const int K = run->nlocal, C = run->data->num_classes, d = run->data->dim;
  fh_split srv; /* the hold-out as the run holds it out, normalised */
  int64_t total = 0;
  assert_int_equal(fh_dataset_load_server(cfg, 1, 0, 1, &srv, &total), 0);
  double freq[16] = {0};
  for (int i = 0; i < srv.n; i++) freq[srv.y[i]] += 1.0 / srv.n;
  int *dealt = calloc((size_t)srv.n, sizeof(int));
  long long gen = 0, per_class[16] = {0};
  for (int k = 0; k < K; k++) {
    const fh_split *tr = &run->data->clients[k].train;
    const int nk = tr->n - tr->generated;
    int have[16] = {0}, got[16] = {0}, want[16];
    for (int i = 0; i < nk; i++) have[tr->y[i]]++;
    for (int i = nk; i < tr->n; i++) {
      int hit = -1;
      for (int r = 0; r < srv.n && hit < 0; r++)
        if (memcmp(tr->x + (size_t)i * d, srv.x + (size_t)r * d, (size_t)d * sizeof(float)) == 0) hit = r;
      if (hit < 0) fail_msg("client %d: added row %d is no hold-out row", k, i);
      assert_int_equal(tr->y[i], srv.y[hit]);
      dealt[hit]++, got[tr->y[i]]++, per_class[tr->y[i]]++;
    }
    gen += tr->generated;
    fh_fedgc_class_counts(FH_MIX_POOL, tr->generated, C, freq, have, want);
    for (int c = 0; c < C; c++) assert_int_equal(got[c], want[c]);
  }
  assert_int_equal(gen, M);
  for (int c = 0; c < C; c++) { /* each class's rows dealt evenly: 0 or 1 times (disjoint), or floor/ceil (cycle) */
    long long nc = 0;
    for (int r = 0; r < srv.n; r++) nc += srv.y[r] == c;
    const long long lo = per_class[c] / nc, hi = lo + (per_class[c] % nc != 0);
    for (int r = 0; r < srv.n; r++)
      if (srv.y[r] == c && (dealt[r] < lo || dealt[r] > hi))
        fail_msg("%s: hold-out row %d (class %d) dealt %d times, not in [%lld, %lld]", draw, r, c, dealt[r], lo, hi);
    if (strcmp(draw, "disjoint") == 0) assert_true(hi <= 1);
  }
  if (strcmp(draw, "cycle") == 0) assert_true(M > total); /* the case where rows repeat */
  free(dealt), free(srv.x), free(srv.y);
  fh_run_free(run);
  fh_config_free(cfg);
}

static void test_holdout_rows(void **state) {
  (void)state;
  check_holdout("disjoint", 150);
  check_holdout("cycle", 700);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_budgets),
      cmocka_unit_test(test_apportion_and_mix),
      cmocka_unit_test(test_auc),
      cmocka_unit_test(test_gmm_recovery),
      cmocka_unit_test_setup_teardown(test_generator_recovery, setup_fit, teardown_fit),
      cmocka_unit_test_setup_teardown(test_guidance_limits, setup_fit, teardown_fit),
      cmocka_unit_test(test_run_class_mix),
      cmocka_unit_test(test_routed_pool),
      cmocka_unit_test(test_holdout_rows),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  MPI_Finalize();
  return rc;
}
