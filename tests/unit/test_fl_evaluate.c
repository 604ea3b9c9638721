/* Evaluation modes: which clients are held out (fraction or count, from the
 * seed, never sampled for training), the checks on the eval.* keys, and the
 * modes a run fills in. */
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
#include "fl/blocks/local_sgd.h"
#include "fl/evaluate.h"
#include "fl_rig.h"

static fh_config *config(const char *const *sets, int n) {
  const fh_key_spec *tables[64];
  int nt = fh_all_key_tables(tables, 64);
  fh_config *cfg = NULL;
  if (fh_config_load(&cfg, NULL, sets, n, tables, nt) != 0) fail_msg("%s", fh_error_msg());
  return cfg;
}

static void test_holdout_draw(void **state) {
  (void)state;
  struct { const char *v; int K, expect; } cases[] = {{"0", 10, 0}, {"0.25", 8, 2}, {"0.2", 100, 20},
                                                      {"3", 8, 3}, {"0.01", 10, 0}};
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    char s[64];
    snprintf(s, sizeof s, "eval.holdout_clients=%s", cases[c].v);
    const char *sets[] = {s};
    fh_config *cfg = config(sets, 1);
    int *ids, n, *again, n2;
    assert_int_equal(fh_holdout_draw(cfg, 7, cases[c].K, &ids, &n), 0);
    assert_int_equal(n, cases[c].expect);
    for (int i = 0; i < n; i++) {
      assert_true(ids[i] >= 0 && ids[i] < cases[c].K);
      if (i) assert_true(ids[i] > ids[i - 1]);
    }
    assert_int_equal(fh_holdout_draw(cfg, 7, cases[c].K, &again, &n2), 0);
    assert_int_equal(n2, n);
    if (n) assert_memory_equal(ids, again, n * sizeof(int));
    free(ids);
    free(again);
    fh_config_free(cfg);
  }
  /* another seed, another set */
  const char *sets[] = {"eval.holdout_clients=10"};
  fh_config *cfg = config(sets, 1);
  int *a, *b, na, nb;
  fh_holdout_draw(cfg, 1, 100, &a, &na);
  fh_holdout_draw(cfg, 2, 100, &b, &nb);
  assert_true(memcmp(a, b, 10 * sizeof(int)) != 0);
  free(a);
  free(b);
  fh_config_free(cfg);
}

static void expect_config_error(const char *const *sets, int n, int K, const char *alg, const char *msg) {
  fh_config *cfg = config(sets, n);
  int *ids = NULL, nh = 0;
  fh_error_clear();
  int rc = fh_holdout_draw(cfg, 1, K, &ids, &nh);
  if (rc == 0) rc = fh_eval_check(cfg, fh_algorithm_find(alg), nh);
  assert_int_equal(rc, FH_ERR_CONFIG);
  if (!strstr(fh_error_msg(), msg)) fail_msg("message '%s' lacks '%s'", fh_error_msg(), msg);
  free(ids);
  fh_config_free(cfg);
  fh_error_clear();
}

static void test_bad_settings(void **state) {
  (void)state;
  const char *half[] = {"eval.holdout_clients=2.5"};
  expect_config_error(half, 1, 10, "fedavg", "whole number");
  const char *all[] = {"eval.holdout_clients=10"};
  expect_config_error(all, 1, 10, "fedavg", "leaves none");
  const char *both[] = {"eval.finetune_steps=2", "eval.finetune_epochs=1"};
  expect_config_error(both, 2, 10, "fedavg", "by steps or by epochs");
}

/* A FedAvg that notes who trains. */
static int trained[64], ntrained;
static int spy_update(fh_run *run, fh_client_ctx *c, fh_accum *acc, fh_client_report *rep) {
  trained[c->id]++;
  ntrained++;
  return fh_algorithm_find("fedavg")->client_update(run, c, acc, rep);
}

static void test_holdout_never_trains(void **state) {
  (void)state;
  const char *sets[] = {"run.clients=12", "eval.holdout_clients=4", "run.clients_per_round=3", "run.rounds=20",
                        "run.eval_every=10", "train.epochs=1", "eval.finetune_steps=2", "eval.adapt_steps=3"};
  fh_config *cfg;
  fh_run *run = rig_run(&cfg, sets, 8);
  assert_int_equal(run->nholdout, 4);
  fh_algorithm spy = *run->alg;
  spy.client_update = spy_update;
  run->alg = &spy;
  memset(trained, 0, sizeof trained);
  ntrained = 0;
  char dir[] = "/tmp/fedhpc-holdout-XXXXXX";
  assert_non_null(mkdtemp(dir));
  assert_int_equal(fh_run_execute(run, dir), 0);
  assert_int_equal(ntrained, 20 * 3);
  for (int h = 0; h < run->nholdout; h++) assert_int_equal(trained[run->holdout[h]], 0);
  int used = 0;
  for (int k = 0; k < 12; k++) used += trained[k] > 0;
  assert_int_equal(used, 8); /* every training client took part in 20 rounds of 3 */

  /* the modes of a global method without personalisation */
  fh_evaluator *ev;
  fh_round_metrics m;
  fh_evaluator_create(&ev, run);
  fh_round_metrics_clear(&m, 20, 3);
  assert_int_equal(fh_evaluate(ev, run, 19, &m), 0);
  fh_evaluator_free(ev);
  assert_true(isfinite(m.test_accuracy) && isfinite(m.finetune.accuracy) && isfinite(m.holdout.accuracy));
  assert_true(isnan(m.personal.accuracy) && isnan(m.global_test_accuracy));
  for (int i = 0; i < 5; i++) assert_true(m.holdout.client_acc[i] >= 0 && m.holdout.client_acc[i] <= 1);
  assert_true(m.holdout.client_acc[1] <= m.holdout.client_acc[0] && m.holdout.client_acc[0] <= m.holdout.client_acc[2]);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  assert_int_equal(system(cmd), 0);
  rig_free(run, cfg);
}

/* LIPS's final fine-tune (eval.finetune_from = own, eval.finetune_final):
 * after a FedAvg+LIPS run with client-local biases and BatchNorm, the
 * fine-tune mode equals fine-tuning each client's own model by hand (its
 * client model, eval.finetune_epochs epochs of local SGD from the stream
 * (seed, FH_RNG_EVAL, client, round), then its test split); it is made only
 * at the last round; from the global model it differs; and in a run without
 * client models "own" is the global model. */
static void manual_finetune(fh_run *run, const fh_config *cfg, int t, int from_own, int epochs, double *mean_acc,
                            double *loss) {
  fh_local_sgd sgd;
  fh_local_sgd_create(&sgd, cfg, run->data->dim, fh_model_nparams(run->model));
  sgd.epochs = epochs;
  sgd.iterations = 0;
  double acc = 0, lsum = 0, n = 0;
  for (int k = 0; k < run->nlocal; k++) {
    const fh_client_data *cd = &run->data->clients[k];
    fh_client_ctx ctx = {.id = cd->id, .round = t, .data = cd, .model = run->model};
    if (from_own && fh_run_has_client_model(run)) assert_int_equal(fh_run_client_model(run, &ctx), 0);
    else fh_model_load_state(run->model, run->global);
    fh_rng rng;
    fh_rng_init(&rng, run->seed, FH_RNG_EVAL, (uint32_t)cd->id, (uint32_t)t);
    double last;
    assert_int_equal(fh_local_sgd_run_rng(&sgd, run->model, &cd->train, &rng, &last), 0);
    double l = 0;
    double correct = fh_model_evaluate(run->model, cd->test.x, cd->test.y, cd->test.n, &l);
    acc += correct / cd->test.n;
    lsum += l;
    n += cd->test.n;
  }
  fh_local_sgd_destroy(&sgd);
  *mean_acc = acc / run->nlocal;
  *loss = lsum / n;
}

static void finetune_case(int lips, const char *from, fh_round_metrics *last, fh_round_metrics *first,
                          double manual[2][2]) {
  char f[64];
  snprintf(f, sizeof f, "eval.finetune_from=%s", from);
  const char *sets[] = {"data.source=synthimg", "data.synthimg_channels=3", "data.synthimg_height=8",
                        "data.synthimg_width=8", "data.synthimg_classes=4", "data.synthimg_train=400",
                        "data.synthimg_test=200", "partition.method=lowdata", "partition.alpha=0.1",
                        "partition.samples_per_client=20", "partition.test_per_client=20", "model.arch=resnet4",
                        "train.batch_size=10", "train.lr=0.05", "train.momentum=0.9", "eval.finetune_epochs=2",
                        "eval.finetune_final=true", f, lips ? "lips.enable=true" : "lips.enable=false",
                        "lips.d0=0.5", "lips.every=1", "run.eval_every=1", "run.client_fraction=0.5"};
  fh_config *cfg;
  fh_run *run = rig_run(&cfg, sets, sizeof sets / sizeof sets[0]);
  assert_int_equal(fh_run_has_client_model(run), lips);
  char dir[] = "/tmp/fedhpc-finetune-XXXXXX";
  assert_non_null(mkdtemp(dir));
  assert_int_equal(fh_run_execute(run, dir), 0);
  fh_evaluator *ev;
  fh_evaluator_create(&ev, run);
  fh_round_metrics_clear(last, 3, 8);
  fh_round_metrics_clear(first, 1, 8);
  assert_int_equal(fh_evaluate(ev, run, run->rounds - 1, last), 0);
  assert_int_equal(fh_evaluate(ev, run, 0, first), 0);
  fh_evaluator_free(ev);
  manual_finetune(run, cfg, run->rounds - 1, 1, 2, &manual[0][0], &manual[0][1]);
  manual_finetune(run, cfg, run->rounds - 1, 0, 2, &manual[1][0], &manual[1][1]);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  assert_int_equal(system(cmd), 0);
  rig_free(run, cfg);
}

static void test_finetune_own_final(void **state) {
  (void)state;
  fh_round_metrics last, first, glast, gfirst, plast, pfirst;
  double man[2][2], gman[2][2], pman[2][2];
  finetune_case(1, "own", &last, &first, man);
  /* made at the last round only; the clients' own models every time */
  assert_true(isfinite(last.finetune.accuracy) && isnan(first.finetune.accuracy));
  assert_true(isfinite(first.personal.accuracy));
  /* equals the hand fine-tune of each client's own model (mean client
   * accuracy and pooled loss), and not the one from the global model */
  assert_true(fabs(last.finetune.client_acc[0] - man[0][0]) < 1e-12);
  assert_true(fabs(last.finetune.loss - man[0][1]) < 1e-9 * (1 + fabs(man[0][1])));
  assert_true(fabs(last.finetune.loss - man[1][1]) > 1e-6);
  /* eval.finetune_from = global in the same run: the hand fine-tune from
   * the global model */
  finetune_case(1, "global", &glast, &gfirst, gman);
  assert_true(fabs(glast.finetune.client_acc[0] - gman[1][0]) < 1e-12);
  assert_true(fabs(glast.finetune.loss - gman[1][1]) < 1e-9 * (1 + fabs(gman[1][1])));
  assert_true(last.personal.accuracy == glast.personal.accuracy); /* the runs are the same */
  /* no client models (plain FedAvg): "own" is the global model */
  finetune_case(0, "own", &plast, &pfirst, pman);
  assert_true(isnan(plast.personal.accuracy));
  assert_true(fabs(plast.finetune.loss - pman[1][1]) < 1e-9 * (1 + fabs(pman[1][1])));
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_holdout_draw),
      cmocka_unit_test(test_bad_settings),
      cmocka_unit_test(test_holdout_never_trains),
      cmocka_unit_test(test_finetune_own_final),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  MPI_Finalize();
  return rc;
}
