/* train.iterations: a fixed number of local steps per round.
 * - iterations = E x ceil(n / B) gives bit for bit the parameters, the step
 *   count and the loss of E epochs (the same permutations, drawn from the same
 *   stream, and the same batches, the last of each pass short);
 * - any other count takes exactly that many steps, a new permutation when one
 *   is used up, and differs from the epoch run;
 * - FedAvg's client update honours it through the deck (the update differs
 *   from the epoch default), while fstcbdg and augfl refuse it (exit 3 class
 *   error naming the key) rather than ignoring it. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <mpi.h>

#include "fl/blocks/local_sgd.h"
#include "fl_rig.h"

static void run_local(fh_run *run, fh_config *cfg, const float *theta, int k, float *out, long long *steps,
                      double *loss) {
  fh_local_sgd sgd;
  fh_local_sgd_create(&sgd, cfg, run->data->dim, fh_model_nparams(run->model));
  fh_model_load_state(run->model, theta);
  if (fh_local_sgd_run(&sgd, run->model, &run->data->clients[k].train, run->seed, k, 3, loss) != 0)
    fail_msg("%s", fh_error_msg());
  memcpy(out, fh_model_params(run->model), fh_model_nparams(run->model) * sizeof(float));
  *steps = sgd.steps;
  fh_local_sgd_destroy(&sgd);
}

static void test_iterations_equal_epochs(void **state) {
  (void)state;
  const char *sets[] = {"train.batch_size=7", "train.momentum=0.9"};
  fh_config *cfg;
  fh_run *run = rig_run(&cfg, sets, 2);
  const size_t np = fh_model_nparams(run->model);
  float *theta = malloc(run->model_n * sizeof(float)), *a = malloc(np * sizeof(float)), *b = malloc(np * sizeof(float));
  memcpy(theta, run->global, run->model_n * sizeof(float));
  const int k = 2, n = run->data->clients[k].train.n, per = (n + 6) / 7;
  assert_true(n % 7 != 0); /* a short last batch is part of what is checked */
  long long sa, sb;
  double la, lb;
  run_local(run, cfg, theta, k, a, &sa, &la); /* train.epochs = 2 (the rig's) */
  fh_config *cfg2;
  char it[64];
  snprintf(it, sizeof it, "train.iterations=%d", 2 * per);
  const char *sets2[] = {"train.batch_size=7", "train.momentum=0.9", it};
  fh_run *run2 = rig_run(&cfg2, sets2, 3);
  run_local(run2, cfg2, theta, k, b, &sb, &lb);
  assert_int_equal(sa, 2 * per);
  assert_int_equal(sb, 2 * per);
  assert_memory_equal(a, b, np * sizeof(float));
  /* the loss: the epoch run reports its last epoch, the iteration run all its steps */
  assert_true(isfinite(la) && isfinite(lb));
  rig_free(run2, cfg2);
  /* another count: exactly that many steps, a different model */
  snprintf(it, sizeof it, "train.iterations=%d", 2 * per + 3);
  run2 = rig_run(&cfg2, sets2, 3);
  run_local(run2, cfg2, theta, k, b, &sb, &lb);
  assert_int_equal(sb, 2 * per + 3);
  assert_true(dist2(a, b, np) > 0);
  rig_free(run2, cfg2);
  free(theta);
  free(a);
  free(b);
  rig_free(run, cfg);
}

static void test_fedavg_honours_others_refuse(void **state) {
  (void)state;
  /* FedAvg's update through the algorithm table differs with the key */
  float *u[2];
  size_t n = 0;
  for (int v = 0; v < 2; v++) {
    const char *sets[] = {"run.algorithm=fedavg", v ? "train.iterations=5" : "train.epochs=2"};
    fh_config *cfg;
    fh_run *run = rig_run(&cfg, sets, 2);
    n = run->payload_n;
    fh_accum acc;
    fh_accum_create(&acc, n, 32, 4);
    rig_client(run, 1, 0, &acc, NULL);
    u[v] = malloc(n * sizeof(float));
    assert_true(fh_accum_mean(&acc, u[v]) > 0);
    fh_accum_destroy(&acc);
    rig_free(run, cfg);
  }
  assert_true(dist2(u[0], u[1], n) > 0);
  free(u[0]);
  free(u[1]);
  for (int a = 0; a < 2; a++) {
    const char *alg = a ? "run.algorithm=augfl" : "run.algorithm=fstcbdg";
    const char *src = a ? "data.source=synthetic" : "data.source=features";
    const char *hidden = a ? "model.hidden=16" : "model.hidden=";
    const char *path = a ? "data.path=" : "data.path=" FH_FIXTURES_DIR "/features_small.h5";
    const char *sets[] = {"run.clients=8", hidden, "data.synthetic_max_samples=120", alg, src, path,
                          "train.iterations=5", "run.client_fraction=1"};
    const fh_key_spec *tables[64];
    int nt = fh_all_key_tables(tables, 64);
    fh_config *cfg;
    assert_int_equal(fh_config_load(&cfg, NULL, sets, 8, tables, nt), 0);
    fh_run *run = NULL;
    int rc = fh_run_create(&run, cfg, MPI_COMM_WORLD);
    assert_int_not_equal(rc, 0);
    if (!strstr(fh_error_msg(), "train.iterations")) fail_msg("%s: %s", alg, fh_error_msg());
    fh_run_free(run);
    fh_config_free(cfg);
  }
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_iterations_equal_epochs),
      cmocka_unit_test(test_fedavg_honours_others_refuse),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  MPI_Finalize();
  return rc;
}
