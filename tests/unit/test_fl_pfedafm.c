/* pFedAFM:
 * - the mixed network's forward, loss and gradients (F's extractor and
 *   header, G's extractor, alpha) equal PyTorch's on the authors' formulation
 *   (tests/fixtures/make_pfedafm_fixtures.py), and so do two steps of step 1
 *   (clipping, clamping, both SGDs) and then two of step 2;
 * - step 1 leaves G bitwise untouched, step 2 leaves F bitwise untouched, and
 *   alpha stays in [0, 1] however large its learning rate;
 * - in a whole run only G travels: every broadcast carries G's parameters
 *   and every reduction those plus the weight, nothing else; clients are
 *   scored with their mixed models (personal), there is no global model;
 * - architectures of different feature widths are refused with a message. */
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
#include "fl/alg/pfedafm.h"
#include "fl_rig.h"
#include "torch_fixture.h"

/* ---- MPI calls that carry the payload ---------------------------------------------- */
static long n_bcast, n_reduce, bad_bcast, bad_reduce;
static long expect_n; /* payload_n while a run is watched, else -1 */

int MPI_Bcast(void *buf, int count, MPI_Datatype type, int root, MPI_Comm comm) {
  if (type == MPI_FLOAT && expect_n >= 0) {
    n_bcast++;
    if (count != expect_n) bad_bcast++;
  }
  return PMPI_Bcast(buf, count, type, root, comm);
}
int MPI_Reduce(const void *s, void *r, int count, MPI_Datatype type, MPI_Op op, int root, MPI_Comm comm) {
  if (type == MPI_INT64_T && expect_n >= 0 && count > 4) { /* the accumulator, not the eval counts */
    n_reduce++;
    if (count != expect_n + 1) bad_reduce++;
  }
  return PMPI_Reduce(s, r, count, type, op, root, comm);
}

/* ---- against PyTorch ------------------------------------------------------------------- */

enum { B = 5, DIN = 6, D = 4, C = 3 };

typedef struct {
  torch_fixture fx;
  fh_hnet local, g;
  fh_afm_mix mix;
  float x[B * DIN], alpha[D];
  int32_t y[B];
} rig;

static void rig_load(rig *r) {
  char path[512];
  snprintf(path, sizeof path, "%s/pfedafm_torch.txt", FH_FIXTURES_DIR);
  assert_int_equal(torch_fixture_load(&r->fx, path), 0);
  /* names of fh_hnet_create that are mlp-... need no config */
  assert_int_equal(fh_hnet_create(&r->local, NULL, "mlp-7-4", DIN, 1, 1, C, 8, 1), 0);
  assert_int_equal(fh_hnet_create(&r->g, NULL, "mlp-4", DIN, 1, 1, C, 8, 1), 0);
  assert_int_equal(r->local.d, D);
  assert_int_equal(r->g.d, D);
  fh_afm_mix_create(&r->mix, D, 8);
  to_float(r->x, fixture_get(&r->fx, "x"));
  to_float(r->alpha, fixture_get(&r->fx, "alpha"));
  const torch_tensor *y = fixture_get(&r->fx, "y");
  for (int b = 0; b < B; b++) r->y[b] = (int32_t)y->v[b];
  const torch_tensor *ls = fixture_get(&r->fx, "local/state"), *gs = fixture_get(&r->fx, "g/state");
  assert_int_equal(ls->n, r->local.state_n);
  assert_int_equal(gs->n, r->g.state_n);
  float *buf = malloc(ls->n * sizeof(float));
  to_float(buf, ls);
  fh_hnet_load(&r->local, buf);
  float *gbuf = malloc(gs->n * sizeof(float));
  to_float(gbuf, gs);
  fh_hnet_load(&r->g, gbuf);
  free(buf);
  free(gbuf);
}

static void rig_drop(rig *r) {
  fh_hnet_destroy(&r->local);
  fh_hnet_destroy(&r->g);
  fh_afm_mix_destroy(&r->mix);
  torch_fixture_free(&r->fx);
}

/* F's gradient (extractor then header) as one flat vector. */
static float *local_grads(const fh_hnet *n) {
  float *g = malloc(n->np * sizeof(float));
  memcpy(g, fh_model_grads(n->ex), n->ex_np * sizeof(float));
  memcpy(g + n->ex_np, n->head_grad, n->head_n * sizeof(float));
  return g;
}

static void test_mixture_matches_torch(void **state) {
  (void)state;
  rig r;
  rig_load(&r);
  const float loss = fh_afm_loss_grad(&r.mix, &r.local, &r.g, r.alpha, r.x, r.y, B, 1);
  assert_close("logits", r.local.logits, fixture_get(&r.fx, "logits"), 1e-5);
  assert_scalar_close("loss", loss, fixture_get(&r.fx, "loss")->v[0], 1e-6);
  float *gl = local_grads(&r.local);
  assert_close("d loss / d F", gl, fixture_get(&r.fx, "grad/local"), 1e-4);
  assert_close("d loss / d G", fh_model_grads(r.g.ex), fixture_get(&r.fx, "grad/g"), 1e-4);
  assert_close("d loss / d alpha", r.mix.dalpha, fixture_get(&r.fx, "grad/alpha"), 1e-4);
  free(gl);
  rig_drop(&r);
}

static void test_steps_match_torch_and_freeze(void **state) {
  (void)state;
  rig r;
  rig_load(&r);
  const torch_tensor *hy = fixture_get(&r.fx, "step/hyper");
  /* one batch of the whole split, two epochs: two steps of each */
  fh_hetero h;
  memset(&h, 0, sizeof h);
  h.dim = DIN;
  h.C = C;
  h.tr.epochs = 2;
  h.tr.batch = B;
  h.tr.opt = (fh_sgd){.lr = (float)hy->v[0], .momentum = (float)hy->v[1], .weight_decay = (float)hy->v[2]};
  h.tr.clip = hy->v[3];
  h.xb = malloc(B * DIN * sizeof(float));
  h.yb = malloc(B * sizeof(int32_t));
  fh_afm_ctx ctx = {.h = &h, .g = &r.g, .mix = &r.mix};
  ctx.alpha_opt = (fh_sgd){.lr = (float)hy->v[4], .momentum = (float)hy->v[5], .weight_decay = (float)hy->v[6]};
  fh_split tr = {.n = B, .x = r.x, .y = r.y};
  float *mom_f = calloc(r.local.np, sizeof(float)), mom_a[D] = {0};
  float *mom_g = calloc(r.g.ex_np, sizeof(float));
  long long steps[FH_AFM_NSTEPS] = {0, 0, 0};
  fh_rng rng;
  fh_rng_init(&rng, 7, FH_RNG_TEST, 0, 0);

  float *g0 = malloc(r.g.state_n * sizeof(float)), *g1 = malloc(r.g.state_n * sizeof(float));
  fh_hnet_store(&r.g, g0);
  double last;
  assert_int_equal(fh_afm_step1(&ctx, &r.local, &tr, &rng, r.alpha, mom_f, mom_a, steps, &last), 0);
  assert_true(steps[FH_AFM_STEPS_LOCAL] == 2 && steps[FH_AFM_STEPS_ALPHA] == 2 && steps[FH_AFM_STEPS_G] == 0);
  fh_hnet_store(&r.g, g1);
  assert_memory_equal(g0, g1, r.g.state_n * sizeof(float)); /* G untouched, header included */
  float *l1 = malloc(r.local.state_n * sizeof(float)), *l2 = malloc(r.local.state_n * sizeof(float));
  fh_hnet_store(&r.local, l1);
  assert_close("F after step 1", l1, fixture_get(&r.fx, "step1/local"), 1e-4);
  assert_close("alpha after step 1", r.alpha, fixture_get(&r.fx, "step1/alpha"), 1e-4);
  for (int j = 0; j < D; j++) assert_true(r.alpha[j] >= 0.0f && r.alpha[j] <= 1.0f);
  assert_true(r.alpha[2] == 1.0f); /* pushed above 1 and clamped, as in the fixture */

  assert_int_equal(fh_afm_step2(&ctx, &r.local, &tr, &rng, mom_g, steps), 0);
  assert_true(steps[FH_AFM_STEPS_G] == 2);
  fh_hnet_store(&r.local, l2);
  assert_memory_equal(l1, l2, r.local.state_n * sizeof(float)); /* F untouched */
  assert_close("G after step 2", fh_model_params(r.g.ex), fixture_get(&r.fx, "step2/g"), 1e-4);

  /* alpha with a huge learning rate: every step clamps, nothing leaves [0, 1] */
  ctx.alpha_opt.lr = 1e4f;
  h.tr.epochs = 5;
  assert_int_equal(fh_afm_step1(&ctx, &r.local, &tr, &rng, r.alpha, mom_f, mom_a, steps, &last), 0);
  int ends = 0;
  for (int j = 0; j < D; j++) {
    assert_true(r.alpha[j] >= 0.0f && r.alpha[j] <= 1.0f);
    ends += r.alpha[j] == 0.0f || r.alpha[j] == 1.0f;
  }
  assert_true(ends == D);
  free(h.xb);
  free(h.yb);
  free(h.order);
  free(mom_f);
  free(mom_g);
  free(g0);
  free(g1);
  free(l1);
  free(l2);
  rig_drop(&r);
}

/* ---- a whole run ------------------------------------------------------------------------ */

static const char *const hetero_sets[] = {
    "run.algorithm=pfedafm", "hetero.models=mlp-32-16,mlp-24-16,mlp-20-16", "pfedafm.shared=mlp-16",
    "hetero.epochs=2",       "train.batch_size=16",                         "hetero.lr=0.05",
    "run.client_fraction=0.5"};
#define NHS ((int)(sizeof hetero_sets / sizeof hetero_sets[0]))

static void test_only_g_travels(void **state) {
  (void)state;
  const char *sets[NHS + 2];
  for (int i = 0; i < NHS; i++) sets[i] = hetero_sets[i];
  sets[NHS] = "pfedafm.alpha_lr=5"; /* alpha hits both ends */
  sets[NHS + 1] = "run.rounds=4";
  fh_config *cfg;
  fh_run *run = rig_run(&cfg, sets, NHS + 2);
  /* G = the extractor of mlp-16 on 60 features: Linear(60, 16) */
  assert_int_equal(run->payload_n, 60 * 16 + 16);
  assert_int_equal(run->model_n, run->payload_n);
  assert_int_equal(fh_model_nparams(run->model), run->payload_n);
  assert_int_equal(fh_model_num_classes(run->model), 16); /* G's outputs are features */
  char dir[] = "/tmp/fedhpc-pfedafm-XXXXXX";
  assert_non_null(mkdtemp(dir));
  n_bcast = n_reduce = bad_bcast = bad_reduce = 0;
  expect_n = (long)run->payload_n;
  if (fh_run_execute(run, dir) != 0) fail_msg("%s", fh_error_msg());
  expect_n = -1;
  print_message("%ld broadcasts and %ld reductions of G (%zu floats)\n", n_bcast, n_reduce, run->payload_n);
  assert_true(n_bcast >= 4 && n_reduce == 4);
  assert_int_equal(bad_bcast, 0);
  assert_int_equal(bad_reduce, 0);

  /* every client that trained has alpha in [0, 1], moved off all ones */
  int f_alpha = -1;
  for (int f = 0; f < fh_client_store_nfields(run->state); f++)
    if (strcmp(fh_client_store_field_name(run->state, f), "pfedafm.alpha") == 0) f_alpha = f;
  assert_true(f_alpha >= 0);
  int trained = 0, moved = 0;
  for (int k = 0; k < run->map.num_clients; k++) {
    if (!fh_client_store_initialised(run->state, f_alpha, k)) continue;
    const float *a = fh_client_store_acquire(run->state, f_alpha, k, NULL);
    int below = 0;
    for (int j = 0; j < 16; j++) {
      assert_true(a[j] >= 0.0f && a[j] <= 1.0f);
      below += a[j] < 1.0f;
    }
    trained++;
    moved += below > 0;
    fh_client_store_release(run->state, f_alpha, k, 0);
  }
  assert_true(trained >= 4 && moved >= 1);

  /* scored with the mixed models only */
  fh_evaluator *ev;
  fh_evaluator_create(&ev, run);
  fh_round_metrics m;
  fh_round_metrics_clear(&m, 4, 4);
  assert_int_equal(fh_evaluate(ev, run, 3, &m), 0);
  print_message("personal accuracy %.4f\n", m.personal.accuracy);
  assert_true(isnan(m.test_accuracy) && isnan(m.train_loss));
  assert_true(m.personal.accuracy > 0.2 && m.personal.accuracy <= 1.0);
  fh_evaluator_free(ev);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  assert_int_equal(system(cmd), 0);
  rig_free(run, cfg);
}

/* A client's round: step 1's score is kept, the model and alpha change, the
 * contribution is G after step 2 with weight n_k; latest scores with the
 * current G instead. */
static void test_client_round(void **state) {
  (void)state;
  fh_config *cfg;
  fh_run *run = rig_run(&cfg, hetero_sets, NHS);
  float *g0 = malloc(run->payload_n * sizeof(float));
  memcpy(g0, run->global, run->payload_n * sizeof(float));
  fh_accum acc;
  fh_accum_create(&acc, run->payload_n, 32, 4);
  fh_client_report rep = {0};
  rig_client(run, 2, 0, &acc, &rep);
  assert_true(rep.weight == run->data->clients[2].train.n && rep.weight > 0);
  assert_true(isfinite(rep.train_loss) && rep.train_loss > 0);
  float *g1 = malloc(run->payload_n * sizeof(float));
  assert_true(fh_accum_mean(&acc, g1) == rep.weight);
  assert_memory_equal(run->global, g0, run->payload_n * sizeof(float)); /* the client works on a copy */
  assert_true(dist2(g0, g1, run->payload_n) > 1e-3);                     /* step 2 moved G */
  fh_client_ctx ctx = {.id = 2, .round = 0, .data = &run->data->clients[2], .model = run->model};
  double c1 = -1, l1 = -1;
  assert_int_equal(run->alg->client_evaluate(run, &ctx, &run->data->clients[2].test, &c1, &l1), 0);
  assert_true(c1 >= 0 && c1 <= run->data->clients[2].test.n && l1 > 0);
  /* the same answer again (nothing changed), and an untrained client scores too */
  double c2 = -1, l2 = -1;
  assert_int_equal(run->alg->client_evaluate(run, &ctx, &run->data->clients[2].test, &c2, &l2), 0);
  assert_true(c1 == c2 && l1 == l2);
  fh_client_ctx other = {.id = 5, .round = 0, .data = &run->data->clients[5], .model = run->model};
  assert_int_equal(run->alg->client_evaluate(run, &other, &run->data->clients[5].test, &c2, &l2), 0);
  assert_true(c2 >= 0 && isfinite(l2));
  fh_accum_destroy(&acc);
  free(g0);
  free(g1);
  rig_free(run, cfg);
}

static void test_refusals(void **state) {
  (void)state;
  const char *const cases[][2] = {
      {"hetero.models=mlp-32-16,mlp-24-12", "end in features of one width"},
      {"pfedafm.shared=mlp-12", "ends in 12 features but the clients' models in"},
      {"hetero.models=mlp-32-16,mlp-", "is not mlp-H1-H2-"},
      {"hetero.models=cnn1", "needs images of at least 16x16"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const char *sets[] = {"run.algorithm=pfedafm", "hetero.models=mlp-32-16", "pfedafm.shared=mlp-16",
                          "run.clients=8", cases[i][0], "model.hidden=16", "data.synthetic_max_samples=120",
                          "output.save_model=false"};
    const fh_key_spec *tables[64];
    int nt = fh_all_key_tables(tables, 64);
    fh_config *cfg;
    assert_int_equal(fh_config_load(&cfg, NULL, sets, 8, tables, nt), 0);
    fh_run *run = NULL;
    fh_error_clear();
    const int rc = fh_run_create(&run, cfg, MPI_COMM_WORLD);
    print_message("%s -> %s\n", cases[i][0], fh_error_msg());
    assert_int_equal(rc, FH_ERR_CONFIG);
    assert_non_null(strstr(fh_error_msg(), cases[i][1]));
    fh_run_free(run);
    fh_config_free(cfg);
  }
  fh_error_clear();
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  expect_n = -1;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_mixture_matches_torch),
      cmocka_unit_test(test_steps_match_torch_and_freeze),
      cmocka_unit_test(test_client_round),
      cmocka_unit_test(test_only_g_travels),
      cmocka_unit_test(test_refusals),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  MPI_Finalize();
  return rc;
}
