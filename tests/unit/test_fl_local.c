/* Local sends nothing: its clients' updates add nothing to the accumulator,
 * the global payload never changes, and a whole run makes no model broadcast
 * and no reduction of an accumulator (counted through the MPI profiling
 * interface; FedAvg, counted the same way, makes them). Each client continues
 * its own model from round to round, and is evaluated with it. */
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
#include "fl/blocks/local_sgd.h"
#include "fl_rig.h"

/* ---- MPI calls that carry a model or an accumulator --------------------------- */
static long n_bcast_float, n_reduce_int64;

int MPI_Bcast(void *buf, int count, MPI_Datatype type, int root, MPI_Comm comm) {
  if (type == MPI_FLOAT) n_bcast_float++;
  return PMPI_Bcast(buf, count, type, root, comm);
}
int MPI_Reduce(const void *s, void *r, int count, MPI_Datatype type, MPI_Op op, int root, MPI_Comm comm) {
  if (type == MPI_INT64_T) n_reduce_int64++;
  return PMPI_Reduce(s, r, count, type, op, root, comm);
}
int MPI_Allreduce(const void *s, void *r, int count, MPI_Datatype type, MPI_Op op, MPI_Comm comm) {
  if (type == MPI_INT64_T) n_reduce_int64++;
  return PMPI_Allreduce(s, r, count, type, op, comm);
}

static void whole_run(const char *alg, long *bcasts, long *reduces, fh_round_metrics *last) {
  char a[64];
  snprintf(a, sizeof a, "run.algorithm=%s", alg);
  const char *sets[] = {a, "run.client_fraction=0.5", "run.rounds=4"};
  fh_config *cfg;
  fh_run *run = rig_run(&cfg, sets, 3);
  float *theta0 = malloc(run->payload_n * sizeof(float));
  memcpy(theta0, run->global, run->payload_n * sizeof(float));
  char dir[] = "/tmp/fedhpc-local-XXXXXX";
  assert_non_null(mkdtemp(dir));
  n_bcast_float = n_reduce_int64 = 0;
  if (fh_run_execute(run, dir) != 0) fail_msg("%s", fh_error_msg());
  *bcasts = n_bcast_float;
  *reduces = n_reduce_int64;
  if (strcmp(alg, "local") == 0) assert_memory_equal(run->global, theta0, run->payload_n * sizeof(float));
  fh_evaluator *ev;
  fh_evaluator_create(&ev, run);
  fh_round_metrics_clear(last, 4, 4);
  assert_int_equal(fh_evaluate(ev, run, 3, last), 0);
  fh_evaluator_free(ev);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  assert_int_equal(system(cmd), 0);
  free(theta0);
  rig_free(run, cfg);
}

static void test_run_sends_nothing(void **state) {
  (void)state;
  long b, r;
  fh_round_metrics m;
  whole_run("fedavg", &b, &r, &m);
  print_message("fedavg: %ld float broadcasts, %ld int64 reductions\n", b, r);
  /* FedAvg's round is one allreduce (run.allreduce): one reduction per
   * round, and a broadcast of theta^0 at least */
  assert_true(b >= 1 && r >= 4);
  assert_true(isfinite(m.test_accuracy) && isnan(m.personal.accuracy));
  whole_run("local", &b, &r, &m);
  print_message("local: %ld float broadcasts, %ld int64 reductions; own models' accuracy %.4f\n", b, r,
                m.personal.accuracy);
  assert_int_equal(b, 0);
  assert_int_equal(r, 0);
  /* evaluated with the clients' own models only */
  assert_true(isnan(m.test_accuracy) && isnan(m.train_loss) && isnan(m.finetune.accuracy));
  assert_true(m.personal.accuracy > 0.3);
}

static void test_update_adds_nothing_and_continues(void **state) {
  (void)state;
  const char *sets[] = {"run.algorithm=local"};
  fh_config *cfg;
  fh_run *run = rig_run(&cfg, sets, 1);
  const size_t n = run->model_n;
  float *theta0 = malloc(n * sizeof(float)), *s1 = malloc(n * sizeof(float));
  memcpy(theta0, run->global, n * sizeof(float));
  fh_accum acc;
  fh_accum_create(&acc, run->payload_n, 32, 4);
  for (int k = 0; k < 4; k++) rig_client(run, k, 0, &acc, NULL);
  for (size_t i = 0; i <= acc.n; i++) assert_true(acc.sum[i] == 0);
  assert_true(fh_accum_weight(&acc) == 0.0);
  assert_memory_equal(run->global, theta0, n * sizeof(float));

  /* round 0 trained client 1 from theta^0; round 5 continues from there */
  int fresh;
  const float *own = fh_client_store_acquire(run->state, 0, 1, &fresh);
  assert_int_equal(fresh, 0);
  memcpy(s1, own, n * sizeof(float));
  fh_client_store_release(run->state, 0, 1, 0);
  assert_true(dist2(s1, theta0, n) > 0.05);
  rig_client(run, 1, 5, &acc, NULL);
  fh_local_sgd sgd;
  fh_local_sgd_create(&sgd, cfg, run->data->dim, fh_model_nparams(run->model));
  fh_model_load_state(run->model, s1);
  double loss;
  assert_int_equal(fh_local_sgd_run(&sgd, run->model, &run->data->clients[1].train, run->seed, 1, 5, &loss), 0);
  own = fh_client_store_acquire(run->state, 0, 1, &fresh);
  assert_memory_equal(own, fh_model_params(run->model), fh_model_nparams(run->model) * sizeof(float));
  fh_client_store_release(run->state, 0, 1, 0);
  /* evaluated with it */
  fh_client_ctx ctx = {.id = 1, .round = 5, .data = &run->data->clients[1], .model = run->model};
  memset(fh_model_params(run->model), 0, fh_model_nparams(run->model) * sizeof(float));
  assert_int_equal(run->alg->client_model(run, &ctx), 0);
  own = fh_client_store_acquire(run->state, 0, 1, &fresh);
  assert_memory_equal(own, fh_model_params(run->model), fh_model_nparams(run->model) * sizeof(float));
  fh_client_store_release(run->state, 0, 1, 0);
  fh_local_sgd_destroy(&sgd);
  fh_accum_destroy(&acc);
  free(theta0);
  free(s1);
  rig_free(run, cfg);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_update_adds_nothing_and_continues),
      cmocka_unit_test(test_run_sends_nothing),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  MPI_Finalize();
  return rc;
}
