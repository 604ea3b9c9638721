/* LIPS: the density schedule, floor(d numel) kept weights per middle layer,
 * the masked weights are exactly those with the smallest scores (ties by
 * index), top-k selection against a sort, the half-precision gradients, a
 * client's first participation, regrowth after one local step, and that the
 * payload the server sends and receives is the dense one on sparse rounds. */
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
#include "fl/addon.h"
#include "fl/addons/lips.h"
#include "fl_rig.h"
#include "nn/layer.h"

/* ---- schedule and counts ------------------------------------------------------ */

static void test_density_schedule(void **state) {
  (void)state;
  /* the aggregate of round s = t - 1 goes out sparse when s mod 5 == 0 */
  assert_true(fh_lips_density(0, 0.5, 5, 300) == 1.0); /* round 0: the initial model, dense */
  assert_true(fh_lips_density(1, 0.5, 5, 300) == 0.5); /* s = 0: d0 */
  for (int t = 2; t <= 5; t++) assert_true(fh_lips_density(t, 0.5, 5, 300) == 1.0);
  assert_float_equal(fh_lips_density(6, 0.5, 5, 300), 0.5 + 0.5 * 5.0 / 300.0, 1e-15);
  assert_float_equal(fh_lips_density(151, 0.3, 5, 300), 0.3 + 0.7 * 150.0 / 300.0, 1e-15);
  assert_true(fh_lips_density(7, 0.3, 5, 300) == 1.0);
  assert_true(fh_lips_density(301, 0.3, 5, 300) == 1.0); /* s = T: min(1, .) */
  assert_true(fh_lips_density(601, 0.3, 5, 300) == 1.0);
  /* every round with f = 1; d grows linearly */
  double last = 0;
  for (int t = 1; t <= 10; t++) {
    double d = fh_lips_density(t, 0.2, 1, 10);
    assert_float_equal(d, 0.2 + 0.8 * (t - 1) / 10.0, 1e-15);
    assert_true(d > last);
    last = d;
  }
}

static void test_kept_counts(void **state) {
  (void)state;
  assert_int_equal(fh_lips_kept(0.5, 36864), 18432);
  assert_int_equal(fh_lips_kept(0.3, 10), 3);
  assert_int_equal(fh_lips_kept(0.7, 10), 7);
  assert_int_equal(fh_lips_kept(0.5 + 0.5 * 5.0 / 300.0, 576), 292); /* 292.8 */
  assert_int_equal(fh_lips_kept(0.999, 100), 99);
  assert_int_equal(fh_lips_kept(1.0, 100), 100);
  assert_int_equal(fh_lips_kept(0.0, 100), 0);
  assert_int_equal(fh_lips_kept(0.01, 7), 0);
}

/* ---- top-k -------------------------------------------------------------------- */

static const uint32_t *cmp_keys;
static int by_key_desc_index_asc(const void *a, const void *b) {
  const int i = *(const int *)a, j = *(const int *)b;
  if (cmp_keys[i] != cmp_keys[j]) return cmp_keys[i] > cmp_keys[j] ? -1 : 1;
  return i < j ? -1 : 1;
}

/* keep must be the first k of the order (key descending, index ascending). */
static void check_topk(const uint32_t *key, size_t n, size_t k) {
  uint8_t *keep = malloc(n + 1), *ref = calloc(n + 1, 1);
  uint32_t hist[2048];
  int *idx = malloc((n + 1) * sizeof *idx);
  for (size_t i = 0; i < n; i++) idx[i] = (int)i;
  cmp_keys = key;
  qsort(idx, n, sizeof *idx, by_key_desc_index_asc);
  for (size_t i = 0; i < k && i < n; i++) ref[idx[i]] = 1;
  fh_lips_topk(key, n, k, keep, hist);
  size_t kept = 0;
  for (size_t i = 0; i < n; i++) {
    kept += keep[i];
    if (keep[i] != ref[i]) fail_msg("n %zu k %zu: entry %zu (key %u) kept %d, expected %d", n, k, i, key[i], keep[i], ref[i]);
  }
  assert_int_equal(kept, k < n ? k : n);
  free(keep);
  free(ref);
  free(idx);
}

static void test_topk_matches_sort(void **state) {
  (void)state;
  fh_rng r;
  fh_rng_init(&r, 7, FH_RNG_TEST, 0, 0);
  const size_t sizes[] = {1, 2, 3, 17, 100, 1000, 5003, 70001};
  for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
    const size_t n = sizes[si];
    uint32_t *key = malloc(n * sizeof *key);
    for (int kind = 0; kind < 4; kind++) {
      for (size_t i = 0; i < n; i++) {
        switch (kind) {
        case 0: key[i] = fh_rng_u32(&r); break;                                       /* distinct */
        case 1: key[i] = fh_rng_below(&r, 5); break;                                  /* heavy ties */
        case 2: key[i] = fh_lips_score_key((float)fh_rng_normal(&r) * 1e-3f); break; /* float scores */
        default: key[i] = 42; break;                                                  /* all equal */
        }
      }
      const size_t ks[] = {0, 1, n / 3, n / 2, n > 0 ? n - 1 : 0, n};
      for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++) check_topk(key, n, ks[ki]);
    }
    free(key);
  }
  /* the float keys order like the scores, -0 like +0, and +inf on top */
  assert_true(fh_lips_score_key(0.5f) < fh_lips_score_key(0.75f));
  assert_true(fh_lips_score_key(-0.0f) == fh_lips_score_key(0.0f));
  assert_true(fh_lips_score_key(3e38f) < fh_lips_score_key(INFINITY));
  assert_true(fh_lips_score_key(1e-45f) > fh_lips_score_key(0.0f));
}

static void test_grad_to_half(void **state) {
  (void)state;
  assert_int_equal(fh_lips_grad_to_half(1.0f), 0x3c00);
  assert_int_equal(fh_lips_grad_to_half(-2.0f), 0xc000);
  assert_int_equal(fh_lips_grad_to_half(1e6f), 0x7bff);  /* saturates at 65504, not inf */
  assert_int_equal(fh_lips_grad_to_half(-1e30f), 0xfbff);
  assert_int_equal(fh_lips_grad_to_half(65519.0f), 0x7bff); /* rounds to 65504 anyway */
  assert_int_equal(fh_lips_grad_to_half(1e-9f), 0x0000);  /* below 2^-25: zero */
  assert_int_equal(fh_lips_grad_to_half(1.0f + 1.0f / 2048), 0x3c00); /* tie to even */
  assert_int_equal(fh_lips_grad_to_half(1.0f + 3.0f / 2048), 0x3c02);
  assert_true(fh_f16_to_f32(fh_lips_grad_to_half(0.1f)) == 0.0999755859375f);
}

/* ---- a client's start on a small ResNet ----------------------------------------- */

static fh_run *lips_run(fh_config **cfg, const char *score, const char *extra) {
  char sc[64];
  snprintf(sc, sizeof sc, "lips.score=%s", score);
  const char *sets[] = {"data.source=synthimg", "data.synthimg_channels=1", "data.synthimg_height=8",
                        "data.synthimg_width=8", "data.synthimg_classes=4", "data.synthimg_train=160",
                        "data.synthimg_test=80", "model.arch=resnet4", "train.batch_size=20", "train.epochs=1",
                        "train.lr=0.05", "lips.enable=true", "lips.d0=0.3", "lips.every=1", "run.rounds=10",
                        sc, extra ? extra : "lips.local_bias_bn=true"};
  return rig_run(cfg, sets, sizeof sets / sizeof sets[0]);
}

/* The client's stored gradient, decoded, for view v (middle layers only). */
static float *stored_grad(fh_run *run, int client, const fh_param_view *pv, size_t off_in_field) {
  (void)pv;
  const int f = 0; /* lips.grad is the store's first field here */
  assert_string_equal(fh_client_store_field_name(run->state, f), "lips.grad");
  const uint16_t *g = fh_client_store_acquire(run->state, f, client, NULL);
  float *out = malloc(pv->numel * sizeof *out);
  for (size_t i = 0; i < pv->numel; i++) out[i] = fh_f16_to_f32(g[off_in_field + i]);
  fh_client_store_release(run->state, f, client, 0);
  return out;
}

/* The score of weight i as LIPS computes it (NaN for random: no order to check). */
static double score_of(const char *score, const float *w, const float *g, size_t i) {
  if (strcmp(score, "w") == 0) return fabsf(w[i]);
  if (strcmp(score, "g") == 0) return fabsf(g[i]);
  if (strcmp(score, "gw") == 0) return fabsf(g[i] * w[i]);
  return NAN;
}

static void check_masking(const char *score) {
  fh_config *cfg;
  fh_run *run = lips_run(&cfg, score, NULL);
  const int need_g = strcmp(score, "gw") == 0 || strcmp(score, "g") == 0;
  fh_model *m = run->model;
  const size_t n_state = run->model_n, np = fh_model_nparams(m);
  assert_int_equal(run->payload_n, n_state); /* no extra part travels */
  fh_accum acc;
  fh_accum_create(&acc, run->payload_n, 32, 8);
  /* round 0 is dense: the client trains and keeps its last gradient */
  const int k = 3;
  fh_client_report rep;
  rig_client(run, k, 0, &acc, &rep);
  float *global = malloc(n_state * sizeof *global);
  memcpy(global, run->global, n_state * sizeof *global);
  /* round 1 (d0 = 0.3): the start the client trains from */
  fh_client_ctx ctx = {.id = k, .round = 1, .data = &run->data->clients[k], .model = m};
  fh_model_load_state(m, run->global);
  fh_local_sgd sgd;
  fh_local_sgd_create(&sgd, cfg, run->data->dim, np);
  assert_int_equal(fh_lips_client_start(run, &ctx, &sgd), 0);
  assert_memory_equal(run->global, global, n_state * sizeof *global); /* the payload stays dense */
  const float *p = fh_model_params(m);
  const double d = fh_lips_density(1, 0.3, 1, 10);
  size_t goff = 0;
  int nmid = 0;
  for (int v = 0; v < fh_model_nviews(m); v++) {
    const fh_param_view *pv = fh_model_view(m, v);
    const float *w = global + pv->offset, *x = p + pv->offset;
    if (!fh_model_view_is_middle(m, v)) {
      /* weights of the stem and classifier: the global ones; biases and BatchNorm: the client's own */
      const fh_layer *ly = fh_model_layer(m, fh_model_view_layer(m, v));
      int local = ly->kind == FH_LAYER_BATCHNORM2D || strstr(pv->name, ".bias") != NULL;
      if (!local) assert_memory_equal(x, w, pv->numel * sizeof *x);
      continue;
    }
    nmid++;
    float *g = need_g ? stored_grad(run, k, pv, goff) : NULL;
    goff += pv->numel;
    size_t kept = 0;
    double min_kept = INFINITY, max_cut = -INFINITY;
    for (size_t i = 0; i < pv->numel; i++) {
      assert_true(x[i] == w[i] || x[i] == 0.0f);
      const double s = score_of(score, w, g, i);
      if (x[i] != 0.0f) {
        kept++;
        if (strcmp(score, "random") != 0 && s < min_kept) min_kept = s;
      } else if (w[i] != 0.0f && strcmp(score, "random") != 0 && s > max_cut) {
        max_cut = s;
      }
    }
    assert_int_equal(kept, fh_lips_kept(d, pv->numel));
    if (strcmp(score, "random") != 0) assert_true(max_cut <= min_kept);
    /* ties: among equal scores the lower index is kept */
    if (strcmp(score, "random") != 0)
      for (size_t i = 0; i < pv->numel; i++) {
        const double s = score_of(score, w, g, i);
        if (x[i] == 0.0f && s == min_kept)
          for (size_t j = i + 1; j < pv->numel; j++)
            if (score_of(score, w, g, j) == s) assert_true(x[j] == 0.0f);
      }
    free(g);
  }
  assert_true(nmid >= 2);
  fh_local_sgd_destroy(&sgd);
  free(global);
  fh_accum_destroy(&acc);
  rig_free(run, cfg);
}

static void test_mask_gw(void **state) { (void)state; check_masking("gw"); }
static void test_mask_w(void **state) { (void)state; check_masking("w"); }
static void test_mask_g(void **state) { (void)state; check_masking("g"); }
static void test_mask_random(void **state) { (void)state; check_masking("random"); }

/* A client that never trained has no gradient: it starts dense; with |w| it is masked. */
static void test_first_participation(void **state) {
  (void)state;
  const char *scores[] = {"gw", "w"};
  for (int s = 0; s < 2; s++) {
    fh_config *cfg;
    fh_run *run = lips_run(&cfg, scores[s], "lips.local_bias_bn=false");
    fh_model *m = run->model;
    fh_client_ctx ctx = {.id = 5, .round = 1, .data = &run->data->clients[5], .model = m};
    fh_model_load_state(m, run->global);
    fh_local_sgd sgd;
    fh_local_sgd_create(&sgd, cfg, run->data->dim, fh_model_nparams(m));
    assert_int_equal(fh_lips_client_start(run, &ctx, &sgd), 0);
    size_t zeros = 0;
    for (size_t i = 0; i < fh_model_nparams(m); i++) zeros += fh_model_params(m)[i] == 0.0f && run->global[i] != 0.0f;
    if (s == 0) assert_int_equal(zeros, 0);
    else assert_true(zeros > 0);
    fh_local_sgd_destroy(&sgd);
    rig_free(run, cfg);
  }
}

/* The mask is not enforced: one local SGD step regrows the pruned weights. */
static void test_regrowth(void **state) {
  (void)state;
  fh_config *cfg;
  fh_run *run = lips_run(&cfg, "w", "lips.local_bias_bn=false");
  fh_model *m = run->model;
  const int k = 2;
  fh_client_ctx ctx = {.id = k, .round = 1, .data = &run->data->clients[k], .model = m};
  fh_model_load_state(m, run->global);
  fh_local_sgd sgd;
  fh_local_sgd_create(&sgd, cfg, run->data->dim, fh_model_nparams(m));
  sgd.epochs = 1;
  assert_int_equal(fh_lips_client_start(run, &ctx, &sgd), 0);
  const size_t np = fh_model_nparams(m);
  uint8_t *pruned = calloc(np, 1);
  size_t npruned = 0;
  for (size_t i = 0; i < np; i++)
    if (fh_model_params(m)[i] == 0.0f && run->global[i] != 0.0f) pruned[i] = 1, npruned++;
  assert_true(npruned > 0);
  /* one step: a split of one minibatch */
  fh_split one = run->data->clients[k].train;
  if (one.n > sgd.batch_size) one.n = sgd.batch_size;
  double loss;
  assert_int_equal(fh_local_sgd_run(&sgd, m, &one, run->seed, k, 1, &loss), 0);
  assert_int_equal(sgd.steps, 1);
  size_t regrown = 0;
  for (size_t i = 0; i < np; i++) regrown += pruned[i] && fh_model_params(m)[i] != 0.0f;
  print_message("%zu of %zu pruned weights nonzero after one step\n", regrown, npruned);
  assert_true(regrown > npruned / 2);
  free(pruned);
  fh_local_sgd_destroy(&sgd);
  rig_free(run, cfg);
}

/* Client-local biases and BatchNorm: what a client trained comes back at its
 * next start, whatever the global model says; the evaluation uses them too. */
static void test_local_bias_bn(void **state) {
  (void)state;
  fh_config *cfg;
  fh_run *run = lips_run(&cfg, "gw", NULL);
  fh_model *m = run->model;
  fh_accum acc;
  fh_accum_create(&acc, run->payload_n, 32, 8);
  fh_client_report rep;
  rig_client(run, 1, 0, &acc, &rep);
  const fh_param_view *bn = fh_model_find_view(m, "bn1.bias");
  assert_non_null(bn);
  const float trained = fh_model_params(m)[bn->offset];
  const float *bufs = fh_model_buffers(m);
  const float mean0 = bufs[0];
  /* a global model with other values */
  for (size_t i = 0; i < run->model_n; i++) run->global[i] += 0.25f;
  fh_client_ctx ctx = {.id = 1, .round = 2, .data = &run->data->clients[1], .model = m};
  assert_true(fh_run_has_client_model(run));
  assert_null(run->alg->client_model); /* the add-on's, not a patched algorithm */
  assert_int_equal(fh_run_client_model(run, &ctx), 0);
  assert_true(fh_model_params(m)[bn->offset] == trained);
  assert_true(fh_model_buffers(m)[0] == mean0);
  const fh_param_view *w = fh_model_find_view(m, "conv1.weight");
  assert_true(fh_model_params(m)[w->offset] == run->global[w->offset]);
  /* a client that never trained: the global ones */
  ctx.id = 6;
  assert_int_equal(fh_run_client_model(run, &ctx), 0);
  assert_true(fh_model_params(m)[bn->offset] == run->global[bn->offset]);
  fh_accum_destroy(&acc);
  rig_free(run, cfg);
}

static void test_refusals(void **state) {
  (void)state;
  const fh_key_spec *tables[64];
  int nt = fh_all_key_tables(tables, 64);
  const char *bad_alg[] = {"run.algorithm=perfedavg", "lips.enable=true", "run.clients=8",
                           "data.synthetic_max_samples=120", "model.hidden=16"};
  fh_config *cfg;
  assert_int_equal(fh_config_load(&cfg, NULL, bad_alg, 5, tables, nt), 0);
  fh_run *run = NULL;
  assert_int_equal(fh_run_create(&run, cfg, MPI_COMM_WORLD), FH_ERR_CONFIG);
  assert_non_null(strstr(fh_error_msg(), "fedavg, fedprox or scaffold, not perfedavg"));
  fh_run_free(run);
  fh_config_free(cfg);
  fh_error_clear();
  const char *mlp[] = {"lips.enable=true", "run.clients=8", "data.synthetic_max_samples=120", "model.hidden=16"};
  assert_int_equal(fh_config_load(&cfg, NULL, mlp, 4, tables, nt), 0);
  assert_int_equal(fh_run_create(&run, cfg, MPI_COMM_WORLD), FH_ERR_CONFIG);
  assert_non_null(strstr(fh_error_msg(), "has no middle layers"));
  fh_run_free(run);
  fh_config_free(cfg);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_density_schedule), cmocka_unit_test(test_kept_counts),
      cmocka_unit_test(test_topk_matches_sort), cmocka_unit_test(test_grad_to_half),
      cmocka_unit_test(test_mask_gw),           cmocka_unit_test(test_mask_w),
      cmocka_unit_test(test_mask_g),            cmocka_unit_test(test_mask_random),
      cmocka_unit_test(test_first_participation), cmocka_unit_test(test_regrowth),
      cmocka_unit_test(test_local_bias_bn),     cmocka_unit_test(test_refusals),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  MPI_Finalize();
  return rc;
}
