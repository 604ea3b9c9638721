/* AugFL against what the method says it computes:
 * - the ADMM bookkeeping over a multi-round run: after every round each
 *   source's dual is y_i^{t+1} = -w_i ghat_i^t, and the server's theta^{t+1}
 *   is the extrapolated step theta^t - [sum_i w_i (2 ghat_i^t - ghat_i^{t-1})
 *   + lambda g_R^t] / (N rho), both to float precision (ghat recomputed here
 *   by the same meta-gradient on theta^t), with the pretrained model
 *   (digits, lambda = 2) and without it (lambda = 0);
 * - the meta-gradient's finite-difference Hessian-vector product, with
 *   AugFL's delta = 1 / (10 k + 100) and D^tr, D^te two splits, against the
 *   exact one of softmax regression (closed forms in double);
 * - the regulariser's gradient g_R against central differences of R, with
 *   the feature-hint term through a learnable connector (MLPs of different
 *   widths: g_R and the connector's gradient), and for the authors' pair,
 *   a resnet8x4 meta-model and a resnet32x4 PM whose BatchNorm statistics
 *   come from its model file, on synthetic 3x32x32 images (meta-model
 *   BatchNorm in evaluation mode there, so that R is a function of theta
 *   alone; the hint through the identity, both widths 256);
 * - the model pass (backward from any dlogits and feature gradient)
 *   against the model's own cross-entropy gradient, bit for bit, on an MLP,
 *   a CNN and resnet8x4 (residual joins, BatchNorm in training mode). */
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <mpi.h>

#include "fl/alg/augfl.h"
#include "fl/client_state.h"
#include "fl/blocks/model_pass.h"
#include "fl/blocks/maml.h"
#include "fl/addons/pretrain.h"
#include "fl/blocks/server_shards.h"
#include "fl_rig.h"
#include "io/model_file.h"
#include "nn/loss.h"

#define DIGITS FH_FIXTURES_DIR "/../../input/digits.h5"

static char tmpdir[64];
static char pm_set[160], dir_set[160];

/* digits, two classes per client, 25% of the train pool at the server */
static const char *digits_sets[] = {"data.source=hdf5",         "data.path=" DIGITS,
                                    "data.server_fraction=0.25", "data.server_shards=4",
                                    "run.clients=12",            "partition.method=twoclass",
                                    "partition.test_fraction=0.25", "model.hidden=16",
                                    "pm.hidden=32",              pm_set,
                                    dir_set,                     "pretrain.epochs=3"};
#define NDIGITS ((int)(sizeof digits_sets / sizeof digits_sets[0]))

static int group_setup(void **state) {
  (void)state;
  snprintf(tmpdir, sizeof tmpdir, "/tmp/fedhpc-augfl-XXXXXX");
  if (!mkdtemp(tmpdir)) return -1;
  snprintf(pm_set, sizeof pm_set, "pm.path=%s/pm.h5", tmpdir);
  snprintf(dir_set, sizeof dir_set, "output.dir=%s", tmpdir);
  /* the pretrained model, once */
  const fh_key_spec *tables[64];
  int nt = fh_all_key_tables(tables, 64);
  fh_config *cfg = NULL;
  if (fh_config_load(&cfg, NULL, digits_sets, NDIGITS, tables, nt) != 0) return -1;
  int rc = fh_pretrain(cfg, MPI_COMM_WORLD, 0);
  fh_config_free(cfg);
  if (rc != 0) fprintf(stderr, "pretrain: %s\n", fh_error_msg());
  return rc;
}

static int group_teardown(void **state) {
  (void)state;
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
  return system(cmd) == 0 ? 0 : -1;
}

static fh_run *augfl_run(fh_config **cfg, int digits, const char *const *extra, int nextra) {
  const char *sets[64];
  int n = 0;
  if (digits)
    for (int i = 0; i < NDIGITS; i++) sets[n++] = digits_sets[i];
  sets[n++] = "run.algorithm=augfl";
  sets[n++] = "run.client_fraction=1";
  sets[n++] = "eval.holdout_clients=2";
  for (int i = 0; i < nextra; i++) sets[n++] = extra[i];
  return rig_run(cfg, sets, n);
}

/* ---- the ADMM identities ------------------------------------------------------- */

static void check_identities(fh_run *run, const fh_config *cfg, int rounds, float lambda, float rho, float alpha) {
  const size_t np = fh_model_nparams(run->model);
  const int K = run->map.num_clients, N = K - run->nholdout;
  int yfield = -1;
  for (int f = 0; f < fh_client_store_nfields(run->state); f++)
    if (strcmp(fh_client_store_field_name(run->state, f), "augfl.y") == 0) yfield = f;
  assert_true(yfield >= 0);
  fh_local_sgd sgd;
  fh_local_sgd_create(&sgd, cfg, run->data->dim, np);
  fh_perfedavg_step st;
  fh_perfedavg_step_create(&st, 1, alpha, 1.0f, 1.0f, &sgd, run->model);
  float *ghat = calloc((size_t)K * np, sizeof(float)), *gprev = calloc((size_t)K * np, sizeof(float));
  float *theta = malloc(run->payload_n * sizeof(float));
  fh_accum acc;
  fh_accum_create(&acc, run->payload_n, 32, N);
  double worst_y = 0, worst_t = 0, moved = 0;
  for (int t = 0; t < rounds; t++) {
    memcpy(theta, run->global, run->payload_n * sizeof(float));
    /* ghat_i^t by the same meta-gradient on theta^t (k_i = t + 1) */
    const float delta = (float)(1.0 / (10.0 * (t + 1) + 100.0));
    for (int k = 0; k < K; k++) {
      const fh_client_data *cd = &run->data->clients[k];
      fh_model_load_state(run->model, theta);
      double ql;
      fh_row_set tr = {&cd->train, NULL, cd->train.n}, te = {&cd->test, NULL, cd->test.n};
      assert_int_equal(fh_maml_meta_gradient(&st, run->model, tr, te, tr, delta, ghat + (size_t)k * np, &ql), 0);
    }
    fh_accum_zero(&acc);
    for (int k = 0; k < K; k++) {
      int held = 0;
      for (int h = 0; h < run->nholdout; h++) held |= run->holdout[h] == k;
      if (!held) rig_client(run, k, t, &acc, NULL);
    }
    assert_int_equal(run->alg->server_collective(run, &acc), 0);
    assert_int_equal(run->alg->server_step(run, &acc), 0);
    double R = 0;
    const float *gR = fh_augfl_reg_grad(run, &R);
    assert_true(lambda > 0 ? gR != NULL : gR == NULL);
    /* y_i^{t+1} = -w_i ghat_i^t: y passes through theta_i = theta - (y + w ghat) / rho in float */
    double *sum = calloc(np, sizeof(double));
    for (int k = 0; k < K; k++) {
      int held = 0;
      for (int h = 0; h < run->nholdout; h++) held |= run->holdout[h] == k;
      if (held) continue;
      const double w = fh_augfl_client_weight(run, k);
      const float *y = fh_client_store_acquire(run->state, yfield, k, NULL);
      const float *g = ghat + (size_t)k * np, *gp = gprev + (size_t)k * np;
      for (size_t i = 0; i < np; i++) {
        /* theta_i ~ theta - (y^t + w ghat^t) / rho with y^t ~ -w ghat^{t-1}: half an ulp of rho theta_i, of y */
        const double ti = fabs(theta[i]) + (fabs(w * gp[i]) + fabs(w * g[i])) / rho;
        const double tol = FLT_EPSILON * (rho * ti + fabs(y[i]));
        const double err = fabs(y[i] + w * g[i]);
        if (err / tol > worst_y) worst_y = err / tol;
        sum[i] += w * (2.0 * g[i] - gp[i]);
      }
      assert_int_equal(fh_client_store_release(run->state, yfield, k, 0), 0);
    }
    /* theta^{t+1} = theta^t - [sum_i w_i (2 ghat^t - ghat^{t-1}) + lambda g_R] / (N rho): every u_i is
     * rounded to float (u ~ rho theta), and theta^{t+1} too */
    double tmax = 0;
    for (size_t i = 0; i < np; i++) tmax = fmax(tmax, fabs(theta[i]));
    for (size_t i = 0; i < np; i++) {
      const double expect = theta[i] - (sum[i] + (lambda > 0 ? lambda * gR[i] : 0.0)) / (N * (double)rho);
      const double tol = 4.0 * FLT_EPSILON * (fabs(expect) + fabs(theta[i])) + 2.0 * FLT_EPSILON * tmax / sqrt(N);
      const double err = fabs(run->global[i] - expect);
      if (err / tol > worst_t) worst_t = err / tol;
      moved = fmax(moved, fabs((double)run->global[i] - theta[i]));
    }
    print_message("round %d: R = %.4f; max |theta^{t+1} - theta^t| = %.3g\n", t + 1, R, moved);
    free(sum);
    float *tmp = gprev;
    gprev = ghat;
    ghat = tmp;
  }
  print_message("worst error / float tolerance: y %.3f, theta %.3f\n", worst_y, worst_t);
  assert_true(worst_y <= 1.0);
  assert_true(worst_t <= 1.0);
  assert_true(moved > 1e-3); /* the steps are far above the tolerance: the check can fail */
  fh_accum_destroy(&acc);
  fh_perfedavg_step_destroy(&st);
  fh_local_sgd_destroy(&sgd);
  free(ghat);
  free(gprev);
  free(theta);
}

static void test_identities_with_pm(void **state) {
  (void)state;
  const char *extra[] = {"augfl.lambda=2", "augfl.rho=0.7", "augfl.alpha=0.05"};
  fh_config *cfg;
  fh_run *run = augfl_run(&cfg, 1, extra, 3);
  check_identities(run, cfg, 4, 2.0f, 0.7f, 0.05f);
  rig_free(run, cfg);
}

static void test_identities_without_pm(void **state) {
  (void)state;
  const char *extra[] = {"augfl.lambda=0", "augfl.rho=1.5", "augfl.alpha=0.03"};
  fh_config *cfg;
  fh_run *run = augfl_run(&cfg, 0, extra, 3);
  check_identities(run, cfg, 4, 0.0f, 1.5f, 0.03f);
  rig_free(run, cfg);
}

/* ---- the finite-difference Hessian-vector product --------------------------------- */

enum { D = 6, C = 4, NTR = 24, NTE = 9 };

typedef struct {
  const float *x;
  const int32_t *y;
  int n;
  size_t wo, bo;
} sr_data;

static void sr_probs(const sr_data *s, const double *w, int i, double *p) {
  double mx = -INFINITY, z[C];
  for (int c = 0; c < C; c++) {
    z[c] = w[s->bo + c];
    for (int j = 0; j < D; j++) z[c] += w[s->wo + c * D + j] * s->x[i * D + j];
    mx = fmax(mx, z[c]);
  }
  double sum = 0;
  for (int c = 0; c < C; c++) sum += (p[c] = exp(z[c] - mx));
  for (int c = 0; c < C; c++) p[c] /= sum;
}

/* mean CE gradient over all rows */
static void sr_grad(const sr_data *s, const double *w, double *g, size_t n) {
  memset(g, 0, n * sizeof(double));
  for (int i = 0; i < s->n; i++) {
    double p[C];
    sr_probs(s, w, i, p);
    p[s->y[i]] -= 1.0;
    for (int c = 0; c < C; c++) {
      g[s->bo + c] += p[c] / s->n;
      for (int j = 0; j < D; j++) g[s->wo + c * D + j] += p[c] * s->x[i * D + j] / s->n;
    }
  }
}

/* exact H(w) v over all rows */
static void sr_hvp(const sr_data *s, const double *w, const double *v, double *hv, size_t n) {
  memset(hv, 0, n * sizeof(double));
  for (int i = 0; i < s->n; i++) {
    double p[C], dz[C], pdz = 0;
    sr_probs(s, w, i, p);
    for (int c = 0; c < C; c++) {
      dz[c] = v[s->bo + c];
      for (int j = 0; j < D; j++) dz[c] += v[s->wo + c * D + j] * s->x[i * D + j];
      pdz += p[c] * dz[c];
    }
    for (int c = 0; c < C; c++) {
      const double dp = p[c] * dz[c] - p[c] * pdz;
      hv[s->bo + c] += dp / s->n;
      for (int j = 0; j < D; j++) hv[s->wo + c * D + j] += dp * s->x[i * D + j] / s->n;
    }
  }
}

static void test_fd_hvp_matches_exact(void **state) {
  (void)state;
  const fh_key_spec *tables[64];
  int nt = fh_all_key_tables(tables, 64);
  fh_config *cfg;
  const char *sets[] = {"train.batch_size=8"}; /* the gradients go in chunks, as a client's do */
  assert_int_equal(fh_config_load(&cfg, NULL, sets, 1, tables, nt), 0);
  fh_model *m;
  assert_int_equal(fh_model_create_mlp(&m, D, NULL, 0, C, 32), 0);
  fh_rng g;
  fh_rng_init(&g, 11, FH_RNG_TEST, 0, 0);
  fh_model_init(m, &g);
  const size_t n = fh_model_nparams(m);
  float *p = fh_model_params(m);
  for (size_t i = 0; i < n; i++) p[i] *= 3.0f; /* curvature that matters */
  float xtr[NTR * D], xte[NTE * D];
  int32_t ytr[NTR], yte[NTE];
  fh_rng_normal_fill(&g, xtr, NTR * D, 0.f, 1.f);
  fh_rng_normal_fill(&g, xte, NTE * D, 0.5f, 1.f);
  for (int i = 0; i < NTR; i++) ytr[i] = (int32_t)fh_rng_below(&g, C);
  for (int i = 0; i < NTE; i++) yte[i] = (int32_t)fh_rng_below(&g, C);
  fh_split tr = {.n = NTR, .x = xtr, .y = ytr}, te = {.n = NTE, .x = xte, .y = yte};
  sr_data str = {xtr, ytr, NTR, fh_model_find_view(m, "fc1.weight")->offset, fh_model_find_view(m, "fc1.bias")->offset};
  sr_data ste = str;
  ste.x = xte, ste.y = yte, ste.n = NTE;
  fh_local_sgd sgd;
  fh_local_sgd_create(&sgd, cfg, D, n);
  const float alpha = 0.4f;
  fh_perfedavg_step st;
  fh_perfedavg_step_create(&st, 1, alpha, 1.0f, 1.0f, &sgd, m);
  double *w = calloc(n, sizeof(double)), *g1 = calloc(n, sizeof(double)), *phi = calloc(n, sizeof(double)),
         *g2 = calloc(n, sizeof(double)), *hv = calloc(n, sizeof(double));
  float *ghat = calloc(n, sizeof(float));
  for (size_t i = 0; i < n; i++) w[i] = p[i];
  sr_grad(&str, w, g1, n);
  for (size_t i = 0; i < n; i++) phi[i] = w[i] - alpha * g1[i];
  sr_grad(&ste, phi, g2, n);
  sr_hvp(&str, w, g2, hv, n);
  const int ks[] = {1, 50};
  for (int t = 0; t < 2; t++) {
    const float delta = (float)(1.0 / (10.0 * ks[t] + 100.0));
    double ql;
    assert_int_equal(fh_maml_meta_gradient(&st, m, (fh_row_set){&tr, NULL, NTR}, (fh_row_set){&te, NULL, NTE},
                                           (fh_row_set){&tr, NULL, NTR}, delta, ghat, &ql),
                     0);
    double err = 0, curv = 0, left = 0;
    for (size_t i = 0; i < n; i++) {
      err = fmax(err, fabs(ghat[i] - (g2[i] - alpha * hv[i])));
      curv = fmax(curv, fabs(alpha * hv[i]));
      left = fmax(left, fabs((double)p[i] - w[i])); /* theta is left as it was */
    }
    print_message("k = %d, delta = %.5f: max |ghat - (g2 - alpha H g2)| = %.3g, max |alpha H g2| = %.3g\n", ks[t],
                  (double)delta, err, curv);
    assert_true(left == 0.0);
    assert_true(curv > 0.02);
    assert_true(err < 0.01 * curv);
  }
  free(w), free(g1), free(phi), free(g2), free(hv), free(ghat);
  fh_perfedavg_step_destroy(&st);
  fh_local_sgd_destroy(&sgd);
  fh_model_free(m);
  fh_config_free(cfg);
}

/* ---- the regulariser's gradient ------------------------------------------------------- */

/* R(params) over this rank's server rows, in double, from forward passes. */
static double reg_value(fh_model *m, const fh_server_shards *sh, const float *teacher, int dim, double gamma,
                        double akd, float T) {
  const int Cn = fh_model_num_classes(m);
  float *pa = malloc(128 * (size_t)Cn * sizeof(float)), *pb = malloc(128 * (size_t)Cn * sizeof(float));
  double sum = 0;
  for (int at = 0; at < sh->rows.n; at += 128) {
    const int B = sh->rows.n - at < 128 ? sh->rows.n - at : 128;
    const float *z = fh_model_forward(m, sh->rows.x + (size_t)at * dim, B, 1);
    sum += B * gamma * fh_softmax_ce_forward(pa, z, sh->rows.y + at, B, Cn);
    sum += B * akd * fh_kd_loss_forward(pa, pb, z, teacher + (size_t)at * Cn, B, Cn, T);
  }
  free(pa);
  free(pb);
  return sum / (double)sh->total;
}

/* R with the hint term: per row gamma CE + a_kd T^2 KL + a_hint mean_j (c(f)_j - tf_j)^2,
 * c(f) = Wc f + bc (conn [dt, d] | [dt]) or f (conn NULL), from the pass's
 * forward in the given mode (batches of at most 4: evaluation mode or no
 * BatchNorm, so the batching does not matter). */
typedef struct {
  const float *teacher, *tfeat, *conn;
  int dt, train;
  double gamma, akd, ahint;
  float T;
} reg_spec;

static double reg_value_pass(fh_model_pass *p, const fh_server_shards *sh, int dim, const reg_spec *r) {
  fh_model *m = fh_model_pass_model(p);
  const int Cn = fh_model_num_classes(m), d = fh_model_feature_dim(m);
  float pa[4 * 64], pb[4 * 64];
  double sum = 0;
  for (int at = 0; at < sh->rows.n; at += 4) {
    const int B = sh->rows.n - at < 4 ? sh->rows.n - at : 4;
    const float *z = fh_model_pass_forward(p, sh->rows.x + (size_t)at * dim, B, r->train);
    sum += B * r->gamma * fh_softmax_ce_forward(pa, z, sh->rows.y + at, B, Cn);
    sum += B * r->akd * fh_kd_loss_forward(pa, pb, z, r->teacher + (size_t)at * Cn, B, Cn, r->T);
    const float *f = fh_model_pass_features(p);
    for (int b = 0; b < B && r->ahint > 0; b++) {
      double h = 0;
      for (int j = 0; j < r->dt; j++) {
        double c = f[(size_t)b * d + j];
        if (r->conn) {
          c = r->conn[(size_t)r->dt * d + j];
          for (int i = 0; i < d; i++) c += (double)r->conn[(size_t)j * d + i] * f[(size_t)b * d + i];
        }
        const double e = c - r->tfeat[(size_t)(at + b) * r->dt + j];
        h += e * e;
      }
      sum += r->ahint * h / r->dt;
    }
  }
  return sum / (double)sh->total;
}

/* The PM's logits and features of the server rows, evaluation mode. */
static void pm_outputs(fh_model *pm, const fh_server_shards *sh, int dim, float *teacher, float *tfeat) {
  fh_model_pass *p;
  assert_int_equal(fh_model_pass_create(&p, pm, 4), 0);
  const int Cn = fh_model_num_classes(pm), dt = fh_model_feature_dim(pm);
  for (int at = 0; at < sh->rows.n; at += 4) {
    const int B = sh->rows.n - at < 4 ? sh->rows.n - at : 4;
    const float *z = fh_model_pass_forward(p, sh->rows.x + (size_t)at * dim, B, 0);
    memcpy(teacher + (size_t)at * Cn, z, (size_t)B * Cn * sizeof(float));
    memcpy(tfeat + (size_t)at * dt, fh_model_pass_features(p), (size_t)B * dt * sizeof(float));
  }
  fh_model_pass_free(p);
}

/* Central differences of R at the k largest |g| components of params (a
 * model's parameters or the connector's), each against g within tol. */
static void fd_check(const char *what, float *params, size_t n, const float *g_in, int k, float h, double tol,
                     fh_model_pass *p, const fh_server_shards *sh, int dim, const reg_spec *r) {
  float *g = malloc(n * sizeof(float));
  memcpy(g, g_in, n * sizeof(float));
  for (int pick = 0; pick < k; pick++) {
    size_t best = 0;
    for (size_t i = 0; i < n; i++)
      if (fabs(g[i]) > fabs(g[best])) best = i;
    const float old = params[best], up = old + h, down = old - h;
    params[best] = up;
    const double rp = reg_value_pass(p, sh, dim, r);
    params[best] = down;
    const double rm = reg_value_pass(p, sh, dim, r);
    params[best] = old;
    const double fd = (rp - rm) / ((double)up - (double)down);
    print_message("%s[%zu]: server pass %.6g, central difference %.6g\n", what, best, (double)g[best], fd);
    assert_true(fabs(fd - g[best]) < tol * fabs(g[best]));
    g[best] = 0; /* next largest */
  }
  free(g);
}

static float *server_vec(fh_run *run, const char *name) {
  for (int i = 0; i < run->nserver; i++)
    if (strcmp(run->server[i].name, name) == 0) return run->server[i].data;
  return NULL;
}

/* The hint through a learnable connector: meta-model features 16 wide, the
 * PM's 32. With augfl.hint_lr = 0 the connector stays at its first values;
 * with hint_lr = 1 one server pass moves it by minus its gradient. */
static void test_hint_gradient(void **state) {
  (void)state;
  const char *extra[] = {"augfl.lambda=1", "augfl.gamma=0.5", "augfl.kd_weight=2", "augfl.crd_weight=0", "augfl.temperature=3",
                         "augfl.hint_weight=3", "augfl.hint_lr=0"};
  fh_config *cfg;
  fh_run *run = augfl_run(&cfg, 1, extra, 7);
  const size_t np = fh_model_nparams(run->model);
  fh_accum acc;
  fh_accum_create(&acc, run->payload_n, 32, run->map.num_clients);
  fh_accum_zero(&acc);
  assert_int_equal(run->alg->server_collective(run, &acc), 0);
  float *gR = malloc(np * sizeof(float));
  double R;
  memcpy(gR, fh_augfl_reg_grad(run, &R), np * sizeof(float));
  float *conn = server_vec(run, "augfl.connector");
  assert_non_null(conn);
  const int d = 16, dt = 32, Cn = 10;
  const size_t nconn = (size_t)dt * (d + 1);
  float *conn0 = malloc(nconn * sizeof(float));
  memcpy(conn0, conn, nconn * sizeof(float));
  /* the connector's gradient: one more run with hint_lr = 1 from the same start */
  const char *extra1[] = {"augfl.lambda=1", "augfl.gamma=0.5", "augfl.kd_weight=2", "augfl.crd_weight=0", "augfl.temperature=3",
                          "augfl.hint_weight=3", "augfl.hint_lr=1"};
  fh_config *cfg1;
  fh_run *run1 = augfl_run(&cfg1, 1, extra1, 7);
  assert_int_equal(run1->alg->server_collective(run1, &acc), 0);
  float *gconn = malloc(nconn * sizeof(float));
  const float *conn1 = server_vec(run1, "augfl.connector");
  double gnorm = 0;
  for (size_t i = 0; i < nconn; i++) gconn[i] = conn0[i] - conn1[i], gnorm += fabs(gconn[i]);
  assert_true(gnorm > 0);
  rig_free(run1, cfg1);

  fh_server_shards sh;
  assert_int_equal(fh_server_shards_load(&sh, cfg, 0, 1), 0);
  fh_model *pm;
  char path[4096];
  fh_pm_path(cfg, path, sizeof path);
  assert_int_equal(fh_pm_create(&pm, cfg, 1, 8, 8, Cn, 4), 0);
  assert_int_equal(fh_model_load_params(path, pm, fh_model_params(pm)), 0);
  assert_int_equal(fh_model_feature_dim(pm), dt);
  float *teacher = malloc((size_t)sh.rows.n * Cn * sizeof(float)), *tfeat = malloc((size_t)sh.rows.n * dt * sizeof(float));
  pm_outputs(pm, &sh, run->data->dim, teacher, tfeat);
  fh_model_load_state(run->model, run->global);
  fh_model_pass *p;
  assert_int_equal(fh_model_pass_create(&p, run->model, 4), 0);
  reg_spec r = {teacher, tfeat, conn0, dt, 1, 0.5, 2.0, 3.0, 3.0f};
  const double R0 = reg_value_pass(p, &sh, run->data->dim, &r);
  print_message("R(theta^0) with the hint = %.6f here, %.6f from the server pass\n", R0, R);
  assert_true(fabs(R0 - R) < 1e-5 * fabs(R));
  fd_check("dR/dtheta", fh_model_params(run->model), np, gR, 4, 2e-2f, 0.02, p, &sh, run->data->dim, &r);
  fd_check("dR/dconnector", conn0, nconn, gconn, 4, 2e-2f, 0.02, p, &sh, run->data->dim, &r);
  fh_model_pass_free(p);
  free(teacher);
  free(tfeat);
  free(gR);
  free(gconn);
  free(conn0);
  fh_model_free(pm);
  fh_server_shards_free(&sh);
  fh_accum_destroy(&acc);
  rig_free(run, cfg);
}

/* resnet8x4 meta-model, resnet32x4 PM (random weights, BatchNorm statistics
 * set away from their defaults and written to its file), 3x32x32 synthetic
 * images, ten server rows. */
static void test_reg_gradient_resnet(void **state) {
  (void)state;
  char pmset[200];
  snprintf(pmset, sizeof pmset, "pm.path=%s/pm_resnet.h5", tmpdir);
  const char *sets[] = {"data.source=synthimg", "data.synthimg_train=100", "data.synthimg_test=10",
                        "data.server_fraction=0.1", "data.server_shards=2", "run.clients=4",
                        "partition.method=iid", "model.arch=resnet8x4", "pm.arch=resnet32x4", pmset,
                        "augfl.lambda=1", "augfl.gamma=0.5", "augfl.kd_weight=2", "augfl.crd_weight=0", "augfl.temperature=3",
                        "augfl.server_bn=eval", "augfl.server_batch=4", "augfl.hint_weight=0.001", dir_set};
  const int nsets = (int)(sizeof sets / sizeof sets[0]);
  const fh_key_spec *tables[64];
  int nt = fh_all_key_tables(tables, 64);
  fh_config *pcfg;
  if (fh_config_load(&pcfg, NULL, sets, nsets, tables, nt) != 0) fail_msg("config: %s", fh_error_msg());
  fh_model *pm;
  assert_int_equal(fh_pm_create(&pm, pcfg, 3, 32, 32, 10, 4), 0);
  fh_rng g;
  fh_rng_init(&g, 9, FH_RNG_TEST, 0, 0);
  fh_model_init(pm, &g);
  float *buf = fh_model_buffers(pm);
  assert_true(fh_model_nbuffers(pm) > 0);
  for (int v = 0; v < fh_model_nbuffer_views(pm); v++) {
    const fh_param_view *bv = fh_model_buffer_view(pm, v);
    const int var = strstr(bv->name, "running_var") != NULL;
    if (!var && !strstr(bv->name, "running_mean")) continue; /* num_batches_tracked */
    for (size_t i = 0; i < bv->numel; i++)
      buf[bv->offset + i] = var ? (float)(0.5 + fh_rng_uniform(&g)) : (float)(0.2 * fh_rng_normal(&g));
  }
  char path[4096];
  fh_pm_path(pcfg, path, sizeof path);
  const int shape[3] = {3, 32, 32};
  assert_int_equal(fh_model_save_state(path, pm, fh_model_params(pm), buf, shape, NULL), 0);
  fh_config_free(pcfg);

  fh_config *cfg;
  fh_run *run = augfl_run(&cfg, 0, sets, nsets);
  const size_t np = fh_model_nparams(run->model);
  fh_accum acc;
  fh_accum_create(&acc, run->payload_n, 32, run->map.num_clients);
  fh_accum_zero(&acc);
  assert_int_equal(run->alg->server_collective(run, &acc), 0);
  float *gR = malloc(np * sizeof(float));
  double R;
  memcpy(gR, fh_augfl_reg_grad(run, &R), np * sizeof(float));
  fh_server_shards sh;
  assert_int_equal(fh_server_shards_load(&sh, cfg, 0, 1), 0);
  const int dim = run->data->dim, dt = fh_model_feature_dim(pm);
  assert_int_equal(dt, fh_model_feature_dim(run->model));
  float *teacher = malloc((size_t)sh.rows.n * 10 * sizeof(float)), *tfeat = malloc((size_t)sh.rows.n * dt * sizeof(float));
  /* the PM as the file gives it back (its statistics, not fresh ones) */
  fh_model *pm2;
  assert_int_equal(fh_pm_create(&pm2, cfg, 3, 32, 32, 10, 4), 0);
  assert_int_equal(fh_model_load_params(path, pm2, fh_model_params(pm2)), 0);
  assert_int_equal(fh_model_load_buffers(path, pm2, fh_model_buffers(pm2)), 0);
  assert_memory_equal(fh_model_buffers(pm2), buf, fh_model_nbuffers(pm) * sizeof(float));
  pm_outputs(pm2, &sh, dim, teacher, tfeat);
  fh_model_load_state(run->model, run->global);
  fh_model_pass *p;
  assert_int_equal(fh_model_pass_create(&p, run->model, 4), 0);
  reg_spec r = {teacher, tfeat, NULL, dt, 0, 0.5, 2.0, 0.001, 3.0f};
  const double R0 = reg_value_pass(p, &sh, dim, &r);
  print_message("resnet8x4 / resnet32x4: R(theta^0) = %.6f here, %.6f from the server pass (%d rows)\n", R0, R,
                sh.rows.n);
  assert_true(fabs(R0 - R) < 1e-5 * fabs(R));
  fd_check("dR/dtheta", fh_model_params(run->model), np, gR, 3, 1e-2f, 0.03, p, &sh, dim, &r);
  /* and the largest of views inside the residual stages and of the stem */
  const char *views[3] = {"layer2.0.conv1.weight", "layer3.0.bn2.weight", "conv1.weight"};
  for (int k = 0; k < 3; k++) {
    const fh_param_view *v = fh_model_find_view(run->model, views[k]);
    assert_non_null(v);
    fd_check(v->name, fh_model_params(run->model) + v->offset, v->numel, gR + v->offset, 1, 1e-2f, 0.03, p, &sh,
             dim, &r);
  }
  fh_model_pass_free(p);
  free(teacher);
  free(tfeat);
  free(gR);
  fh_model_free(pm);
  fh_model_free(pm2);
  fh_server_shards_free(&sh);
  fh_accum_destroy(&acc);
  rig_free(run, cfg);
}

static void test_reg_gradient(void **state) {
  (void)state;
  const char *extra[] = {"augfl.lambda=1", "augfl.gamma=0.5", "augfl.kd_weight=2", "augfl.crd_weight=0", "augfl.temperature=3"};
  fh_config *cfg;
  fh_run *run = augfl_run(&cfg, 1, extra, 5);
  fh_accum acc;
  fh_accum_create(&acc, run->payload_n, 32, run->map.num_clients);
  fh_accum_zero(&acc); /* the server pass reads theta^t only; the sum is not needed for g_R */
  assert_int_equal(run->alg->server_collective(run, &acc), 0);
  double R;
  const size_t np = fh_model_nparams(run->model);
  float *gR = malloc(np * sizeof(float));
  memcpy(gR, fh_augfl_reg_grad(run, &R), np * sizeof(float));
  /* the PM's logits of the server rows, as the run computes them */
  fh_server_shards sh;
  assert_int_equal(fh_server_shards_load(&sh, cfg, 0, 1), 0);
  fh_model *pm;
  char path[4096];
  fh_pm_path(cfg, path, sizeof path);
  assert_int_equal(fh_pm_create(&pm, cfg, 1, 8, 8, 10, 512), 0);
  assert_int_equal(fh_model_load_params(path, pm, fh_model_params(pm)), 0);
  float *teacher = malloc((size_t)sh.rows.n * 10 * sizeof(float));
  memcpy(teacher, fh_model_forward(pm, sh.rows.x, sh.rows.n, 0), (size_t)sh.rows.n * 10 * sizeof(float));
  const int dim = run->data->dim;
  fh_model_load_state(run->model, run->global);
  const double R0 = reg_value(run->model, &sh, teacher, dim, 0.5, 2.0, 3.0f);
  print_message("R(theta^0) = %.6f here, %.6f from the server pass\n", R0, R);
  assert_true(fabs(R0 - R) < 1e-5 * fabs(R));
  /* central differences on the five largest components */
  float *p = fh_model_params(run->model);
  for (int pick = 0; pick < 5; pick++) {
    size_t best = 0;
    for (size_t i = 0; i < np; i++)
      if (fabs(gR[i]) > fabs(gR[best])) best = i;
    const float old = p[best], up = old + 2e-2f, down = old - 2e-2f;
    p[best] = up;
    const double rp = reg_value(run->model, &sh, teacher, dim, 0.5, 2.0, 3.0f);
    p[best] = down;
    const double rm = reg_value(run->model, &sh, teacher, dim, 0.5, 2.0, 3.0f);
    p[best] = old;
    const double fd = (rp - rm) / ((double)up - (double)down);
    print_message("dR/dtheta[%zu]: pass %.6f, central difference %.6f\n", best, (double)gR[best], fd);
    assert_true(fabs(fd - gR[best]) < 0.02 * fabs(gR[best]));
    gR[best] = 0; /* next largest */
  }
  free(teacher);
  free(gR);
  fh_model_free(pm);
  fh_server_shards_free(&sh);
  fh_accum_destroy(&acc);
  rig_free(run, cfg);
}

/* R = CRD alone (gamma = kd = 0): its gradient through the meta-model
 * against central differences of R. Banks fixed after the first pass
 * (momentum 1: they are only normalised), heads fixed (crd_lr = 0), Z set in
 * the first pass at theta^0: the second pass of every run then sees the same
 * state and the same draws, so R is a function of theta alone there. */
static const char *crd_extra[] = {"augfl.lambda=1", "augfl.gamma=0", "augfl.kd_weight=0", "augfl.crd_weight=1.5",
                                  "augfl.crd_k=48", "augfl.crd_dim=16", "augfl.crd_momentum=1", "augfl.crd_lr=0"};

static double crd_second_pass(size_t at, float delta, float *g_out, size_t np) {
  fh_config *cfg;
  fh_run *run = augfl_run(&cfg, 1, crd_extra, 8);
  fh_accum acc;
  fh_accum_create(&acc, run->payload_n, 32, run->map.num_clients);
  fh_accum_zero(&acc);
  assert_int_equal(run->alg->server_collective(run, &acc), 0);
  const float *z = server_vec(run, "augfl.crd_z");
  assert_non_null(z);
  assert_true(z[0] > 0 && z[1] > 0);
  if (at < np) run->global[at] += delta;
  assert_int_equal(run->alg->server_collective(run, &acc), 0);
  double R;
  const float *g = fh_augfl_reg_grad(run, &R);
  if (g_out) memcpy(g_out, g, np * sizeof(float));
  fh_accum_destroy(&acc);
  rig_free(run, cfg);
  return R;
}

static void test_crd_gradient(void **state) {
  (void)state;
  fh_config *cfg;
  fh_run *run = augfl_run(&cfg, 1, crd_extra, 8);
  const size_t np = fh_model_nparams(run->model);
  rig_free(run, cfg);
  float *g = malloc(np * sizeof(float));
  const double R = crd_second_pass(np, 0, g, np);
  print_message("CRD R(theta^0) = %.6f\n", R);
  assert_true(R > 0 && isfinite(R));
  for (int pick = 0; pick < 4; pick++) {
    size_t best = 0;
    for (size_t i = 0; i < np; i++)
      if (fabs(g[i]) > fabs(g[best])) best = i;
    const float h = 1e-2f;
    const double fd = (crd_second_pass(best, h, NULL, np) - crd_second_pass(best, -h, NULL, np)) / (2.0 * h);
    print_message("dCRD/dtheta[%zu]: pass %.6g, central difference %.6g\n", best, (double)g[best], fd);
    assert_true(fabs(fd - g[best]) < 0.03 * fabs(g[best]));
    g[best] = 0;
  }
  free(g);
}

/* ---- the model pass ---------------------------------------------------------------- */

static void test_model_pass_matches_model(void **state) {
  (void)state;
  fh_model *m;
  const int hidden[2] = {12, 9}, B = 7, Dm = 10, Cm = 5;
  assert_int_equal(fh_model_create_mlp(&m, Dm, hidden, 2, Cm, 16), 0);
  fh_rng g;
  fh_rng_init(&g, 3, FH_RNG_TEST, 0, 0);
  fh_model_init(m, &g);
  float x[B * Dm];
  int32_t y[B];
  fh_rng_normal_fill(&g, x, B * Dm, 0.f, 1.f);
  for (int i = 0; i < B; i++) y[i] = (int32_t)fh_rng_below(&g, Cm);
  const size_t n = fh_model_nparams(m);
  fh_model_loss_grad(m, x, y, B);
  float *ref = malloc(n * sizeof(float));
  memcpy(ref, fh_model_grads(m), n * sizeof(float));
  fh_model_pass *p;
  assert_int_equal(fh_model_pass_create(&p, m, B), 0);
  const float *z = fh_model_pass_forward(p, x, B, 1);
  float probs[B * Cm], dl[B * Cm];
  fh_softmax_ce_forward(probs, z, y, B, Cm);
  fh_softmax_ce_backward(dl, probs, y, B, Cm);
  /* the features are the classifier's input: W f + b gives the logits */
  const fh_param_view *W = fh_model_find_view(m, "fc3.weight"), *bias = fh_model_find_view(m, "fc3.bias");
  const float *f = fh_model_pass_features(p), *pp = fh_model_params(m);
  double zerr = 0;
  for (int b = 0; b < B; b++)
    for (int c = 0; c < Cm; c++) {
      double s = pp[bias->offset + c];
      for (int j = 0; j < 9; j++) s += (double)pp[W->offset + c * 9 + j] * f[b * 9 + j];
      zerr = fmax(zerr, fabs(s - z[b * Cm + c]));
    }
  assert_true(zerr < 1e-5);
  fh_model_pass_backward(p, x, dl, NULL, B);
  assert_memory_equal(ref, fh_model_grads(m), n * sizeof(float));
  fh_model_pass_free(p);
  free(ref);
  fh_model_free(m);
}

/* A CNN (convolutions, pooling, flatten): the same gradient as the model's. */
static void test_model_pass_cnn(void **state) {
  (void)state;
  const fh_key_spec *tables[64];
  int nt = fh_all_key_tables(tables, 64);
  fh_config *cfg;
  const char *sets[] = {"model.arch=cnn5"};
  assert_int_equal(fh_config_load(&cfg, NULL, sets, 1, tables, nt), 0);
  fh_model *m;
  enum { Bc = 3, Cc = 4 };
  assert_int_equal(fh_model_create(&m, cfg, 3, 32, 32, Cc, Bc), 0);
  fh_rng g;
  fh_rng_init(&g, 4, FH_RNG_TEST, 0, 0);
  fh_model_init(m, &g);
  float *x = malloc((size_t)Bc * 3 * 32 * 32 * sizeof(float));
  int32_t y[Bc] = {0, 3, 1};
  fh_rng_normal_fill(&g, x, (size_t)Bc * 3 * 32 * 32, 0.f, 1.f);
  const size_t n = fh_model_nparams(m);
  fh_model_loss_grad(m, x, y, Bc);
  float *ref = malloc(n * sizeof(float));
  memcpy(ref, fh_model_grads(m), n * sizeof(float));
  fh_model_pass *p;
  assert_int_equal(fh_model_pass_create(&p, m, Bc), 0);
  const float *z = fh_model_pass_forward(p, x, Bc, 1);
  float probs[Bc * Cc], dl[Bc * Cc];
  fh_softmax_ce_forward(probs, z, y, Bc, Cc);
  fh_softmax_ce_backward(dl, probs, y, Bc, Cc);
  fh_model_pass_backward(p, x, dl, NULL, Bc);
  assert_memory_equal(ref, fh_model_grads(m), n * sizeof(float));
  assert_int_equal(fh_model_feature_dim(m), 500);
  fh_model_pass_free(p);
  free(ref);
  free(x);
  fh_model_free(m);
  fh_config_free(cfg);
}

/* resnet8x4 (residual joins, BatchNorm in training mode): the pass's gradient
 * is the model's own, bit for bit; a feature gradient adds what the model's
 * backward from an extractor gives. */
static void test_model_pass_resnet(void **state) {
  (void)state;
  const fh_key_spec *tables[64];
  int nt = fh_all_key_tables(tables, 64);
  fh_config *cfg;
  const char *sets[] = {"model.arch=resnet8x4"};
  assert_int_equal(fh_config_load(&cfg, NULL, sets, 1, tables, nt), 0);
  fh_model *m;
  enum { Br = 3, Cr = 10 };
  assert_int_equal(fh_model_create(&m, cfg, 3, 32, 32, Cr, Br), 0);
  fh_rng g;
  fh_rng_init(&g, 5, FH_RNG_TEST, 0, 0);
  fh_model_init(m, &g);
  float *x = malloc((size_t)Br * 3 * 32 * 32 * sizeof(float));
  int32_t y[Br] = {0, 7, 2};
  fh_rng_normal_fill(&g, x, (size_t)Br * 3 * 32 * 32, 0.f, 1.f);
  const size_t n = fh_model_nparams(m), nb = fh_model_nbuffers(m);
  float *buf0 = malloc(nb * sizeof(float));
  memcpy(buf0, fh_model_buffers(m), nb * sizeof(float));
  fh_model_loss_grad(m, x, y, Br);
  float *ref = malloc(n * sizeof(float));
  memcpy(ref, fh_model_grads(m), n * sizeof(float));
  memcpy(fh_model_buffers(m), buf0, nb * sizeof(float)); /* the training forward moved them */
  fh_model_pass *p;
  assert_int_equal(fh_model_pass_create(&p, m, Br), 0);
  const float *z = fh_model_pass_forward(p, x, Br, 1);
  float probs[Br * Cr], dl[Br * Cr];
  fh_softmax_ce_forward(probs, z, y, Br, Cr);
  fh_softmax_ce_backward(dl, probs, y, Br, Cr);
  fh_model_pass_backward(p, x, dl, NULL, Br);
  assert_memory_equal(ref, fh_model_grads(m), n * sizeof(float));
  assert_memory_equal(buf0, fh_model_buffers(m), nb * sizeof(float)); /* the model's own are not moved */
  /* a feature gradient alone: the extractor's backward from it, the classifier untouched */
  const int d = fh_model_feature_dim(m);
  float *df = malloc((size_t)Br * d * sizeof(float)), zero[Br * Cr];
  fh_rng_normal_fill(&g, df, (size_t)Br * d, 0.f, 1.f);
  memset(zero, 0, sizeof zero);
  fh_model_pass_forward(p, x, Br, 1);
  fh_model_pass_backward(p, x, zero, df, Br);
  fh_model *ex;
  assert_int_equal(fh_model_create_extractor(&ex, m, Br), 0);
  const size_t ne = fh_model_nparams(ex);
  memcpy(fh_model_params(ex), fh_model_params(m), ne * sizeof(float));
  memcpy(fh_model_buffers(ex), buf0, nb * sizeof(float));
  fh_model_forward(ex, x, Br, 1);
  fh_model_backward(ex, x, df, Br);
  assert_memory_equal(fh_model_grads(ex), fh_model_grads(m), ne * sizeof(float));
  for (size_t i = ne; i < n; i++) assert_true(fh_model_grads(m)[i] == 0.0f);
  fh_model_free(ex);
  fh_model_pass_free(p);
  free(df);
  free(ref);
  free(buf0);
  free(x);
  fh_model_free(m);
  fh_config_free(cfg);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_model_pass_matches_model),
      cmocka_unit_test(test_model_pass_cnn),
      cmocka_unit_test(test_fd_hvp_matches_exact),
      cmocka_unit_test(test_identities_without_pm),
      cmocka_unit_test(test_identities_with_pm),
      cmocka_unit_test(test_reg_gradient),
      cmocka_unit_test(test_crd_gradient),
      cmocka_unit_test(test_hint_gradient),
      cmocka_unit_test(test_reg_gradient_resnet),
      cmocka_unit_test(test_model_pass_resnet),
  };
  int rc = cmocka_run_group_tests(tests, group_setup, group_teardown);
  MPI_Finalize();
  return rc;
}
