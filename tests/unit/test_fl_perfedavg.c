/* Per-FedAvg's local step against an analytic reference: on softmax
 * regression (one Linear layer and cross-entropy) the gradient and the
 * Hessian-vector product have closed forms, computed here in double:
 *   z = W x + b, p = softmax(z), r = p - e_y:      grad = mean(r x^T, r)
 *   H (V, c) = mean(dp x^T, dp), dz = V x + c,     dp = p * dz - p (p . dz)
 * The HF step's finite-difference Hessian-vector product must match the exact
 * one to float precision, and the FO step must drop it. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <mpi.h>

#include "cmd/commands.h"
#include "core/config.h"
#include "core/error.h"
#include "core/rng.h"
#include "fl/blocks/maml.h"

enum { D = 7, C = 4, N = 30, B = 8 };

typedef struct {
  fh_model *m;
  fh_local_sgd sgd;
  fh_config *cfg;
  fh_split sp;
  float x[N * D];
  int32_t y[N];
  size_t wo, bo, n; /* offsets of fc1.weight [C, D], fc1.bias [C] */
} rig;

static void rig_setup(rig *r) {
  const fh_key_spec *tables[64];
  int nt = fh_all_key_tables(tables, 64);
  assert_int_equal(fh_config_load(&r->cfg, NULL, NULL, 0, tables, nt), 0);
  assert_int_equal(fh_model_create_mlp(&r->m, D, NULL, 0, C, 32), 0);
  fh_rng g;
  fh_rng_init(&g, 5, FH_RNG_TEST, 0, 0);
  fh_model_init(r->m, &g);
  r->n = fh_model_nparams(r->m);
  r->wo = fh_model_find_view(r->m, "fc1.weight")->offset;
  r->bo = fh_model_find_view(r->m, "fc1.bias")->offset;
  /* larger weights than the default init: curvature that matters */
  float *p = fh_model_params(r->m);
  for (size_t i = 0; i < r->n; i++) p[i] *= 3.0f;
  fh_rng_normal_fill(&g, r->x, N * D, 0.f, 1.f);
  for (int i = 0; i < N; i++) r->y[i] = (int32_t)fh_rng_below(&g, C);
  r->sp = (fh_split){.n = N, .x = r->x, .y = r->y};
  fh_local_sgd_create(&r->sgd, r->cfg, D, r->n);
}

static void rig_teardown(rig *r) {
  fh_local_sgd_destroy(&r->sgd);
  fh_model_free(r->m);
  fh_config_free(r->cfg);
}

/* p = softmax(W x + b) for sample i, w in the model's layout (double) */
static void probs(const rig *r, const double *w, int i, double *p) {
  double mx = -INFINITY;
  for (int c = 0; c < C; c++) {
    double z = w[r->bo + c];
    for (int j = 0; j < D; j++) z += w[r->wo + c * D + j] * r->x[i * D + j];
    p[c] = z;
    if (z > mx) mx = z;
  }
  double s = 0;
  for (int c = 0; c < C; c++) s += (p[c] = exp(p[c] - mx));
  for (int c = 0; c < C; c++) p[c] /= s;
}

/* g = mean over idx of the CE gradient at w */
static void grad(const rig *r, const double *w, const int *idx, double *g) {
  memset(g, 0, r->n * sizeof(double));
  for (int s = 0; s < B; s++) {
    int i = idx[s];
    double p[C];
    probs(r, w, i, p);
    p[r->y[i]] -= 1.0;
    for (int c = 0; c < C; c++) {
      g[r->bo + c] += p[c] / B;
      for (int j = 0; j < D; j++) g[r->wo + c * D + j] += p[c] * r->x[i * D + j] / B;
    }
  }
}

/* hv = H(w) v over idx, exactly */
static void hvp(const rig *r, const double *w, const double *v, const int *idx, double *hv) {
  memset(hv, 0, r->n * sizeof(double));
  for (int s = 0; s < B; s++) {
    int i = idx[s];
    double p[C], dz[C], pdz = 0;
    probs(r, w, i, p);
    for (int c = 0; c < C; c++) {
      dz[c] = v[r->bo + c];
      for (int j = 0; j < D; j++) dz[c] += v[r->wo + c * D + j] * r->x[i * D + j];
      pdz += p[c] * dz[c];
    }
    for (int c = 0; c < C; c++) {
      double dp = p[c] * dz[c] - p[c] * pdz;
      hv[r->bo + c] += dp / B;
      for (int j = 0; j < D; j++) hv[r->wo + c * D + j] += dp * r->x[i * D + j] / B;
    }
  }
}

/* One step of the variant with beta = 1: returns max |(w - w+) - expected|
 * and the largest |alpha Hv| in *curv. */
static double step_error(int hf, float alpha, float delta, double *curv) {
  rig r;
  rig_setup(&r);
  const size_t n = r.n;
  int d0[B], d1[B], d2[B];
  for (int s = 0; s < B; s++) d0[s] = s, d1[s] = B + 2 * s, d2[s] = N - 1 - s;
  double *w = calloc(n, sizeof(double)), *g1 = calloc(n, sizeof(double)), *tmp = calloc(n, sizeof(double)),
         *v = calloc(n, sizeof(double)), *hv = calloc(n, sizeof(double));
  float *p = fh_model_params(r.m);
  for (size_t i = 0; i < n; i++) w[i] = p[i];
  grad(&r, w, d0, g1);
  for (size_t i = 0; i < n; i++) tmp[i] = w[i] - (double)alpha * g1[i];
  grad(&r, tmp, d1, v);
  hvp(&r, w, v, d2, hv);

  fh_perfedavg_step st;
  fh_perfedavg_step_create(&st, hf, alpha, 1.0f, delta, &r.sgd, r.m);
  double ql;
  assert_int_equal(fh_perfedavg_local_step(&st, r.m, &r.sp, d0, d1, d2, B, &ql), 0);
  double err = 0, mc = 0;
  for (size_t i = 0; i < n; i++) {
    double expect = v[i] - (hf ? alpha * hv[i] : 0.0);
    double got = w[i] - p[i];
    if (fabs(got - expect) > err) err = fabs(got - expect);
    if (fabs(alpha * hv[i]) > mc) mc = fabs(alpha * hv[i]);
  }
  *curv = mc;
  fh_perfedavg_step_destroy(&st);
  free(w), free(g1), free(tmp), free(v), free(hv);
  rig_teardown(&r);
  return err;
}

static void test_hf_matches_exact_hessian(void **state) {
  (void)state;
  const float deltas[] = {1e-3f, 1e-2f};
  for (int i = 0; i < 2; i++) {
    double curv;
    double err = step_error(1, 0.5f, deltas[i], &curv);
    print_message("HF, delta %g: max |direction - (v - alpha Hv)| = %.3g; max |alpha Hv| = %.3g\n",
                  (double)deltas[i], err, curv);
    assert_true(curv > 0.02);       /* the curvature term is not negligible ... */
    assert_true(err < 2e-4);        /* ... and the finite difference gets it   */
    assert_true(err < 0.01 * curv);
  }
}

static void test_fo_has_no_curvature_term(void **state) {
  (void)state;
  double curv;
  double err = step_error(0, 0.5f, 1e-3f, &curv);
  print_message("FO: max |direction - v| = %.3g\n", err);
  assert_true(err < 1e-5);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_hf_matches_exact_hessian),
      cmocka_unit_test(test_fo_has_no_curvature_term),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  MPI_Finalize();
  return rc;
}
