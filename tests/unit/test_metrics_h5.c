/* metrics.h5 round trip: rows written per round come back with the HDF5 C API
 * exactly; a completed file is renamed from .partial, a failed one is not. */
#include <hdf5.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <mpi.h>

#include "core/error.h"
#include "io/metrics.h"

static char dir[64];

static void read_doubles(hid_t f, const char *name, double *out, int n) {
  hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
  assert_true(d >= 0);
  hid_t sp = H5Dget_space(d);
  assert_int_equal(H5Sget_simple_extent_npoints(sp), n);
  assert_true(H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) >= 0);
  H5Sclose(sp);
  H5Dclose(d);
}

static void read_attr_str(hid_t f, const char *name, char *out, size_t len) {
  hid_t a = H5Aopen(f, name, H5P_DEFAULT);
  assert_true(a >= 0);
  hid_t t = H5Aget_type(a);
  size_t sz = H5Tget_size(t);
  assert_true(sz < len);
  memset(out, 0, len);
  assert_true(H5Aread(a, t, out) >= 0);
  H5Tclose(t);
  H5Aclose(a);
}

static int exists(const char *path) { return access(path, F_OK) == 0; }

static void test_round_trip(void **state) {
  (void)state;
  fh_metrics_file mf;
  fh_error_clear();
  assert_int_equal(fh_metrics_open(&mf, dir, "[run]\nrounds = 3\n", "v1", 4, "fedavg"), 0);
  char partial[256], final[256];
  snprintf(partial, sizeof partial, "%s/metrics.h5.partial", dir);
  snprintf(final, sizeof final, "%s/metrics.h5", dir);
  assert_true(exists(partial));
  for (int r = 1; r <= 3; r++) {
    fh_round_metrics m = {.round = r, .clients = 10, .wall = 0.5 * r, .train_loss = 1.0 / r, .local_loss = 3.0 * r,
                          .test_accuracy = r == 2 ? NAN : 0.25 * r, .test_loss = 2.0 / r};
    for (int p = 0; p < FH_NPHASES; p++) m.phase[p] = 0.01 * (p + 1) * r;
    for (int i = 0; i < 5; i++) m.client_acc[i] = 0.1 * i + 0.01 * r;
    assert_int_equal(fh_metrics_append(&mf, &m), 0);
    assert_int_equal(fh_metrics_finish_row(&mf, m.phase[FH_PH_IO]), 0);
  }
  assert_int_equal(fh_metrics_close(&mf, "complete"), 0);
  assert_false(exists(partial));
  assert_true(exists(final));

  hid_t f = H5Fopen(final, H5F_ACC_RDONLY, H5P_DEFAULT);
  assert_true(f >= 0);
  double v[3];
  read_doubles(f, "train_loss", v, 3);
  assert_true(v[0] == 1.0 && v[1] == 0.5 && v[2] == 1.0 / 3);
  read_doubles(f, "local_loss", v, 3);
  assert_true(v[0] == 3.0 && v[2] == 9.0);
  read_doubles(f, "test_accuracy", v, 3);
  assert_true(v[0] == 0.25 && isnan(v[1]) && v[2] == 0.75);
  read_doubles(f, "time/reduce", v, 3);
  assert_true(v[2] == 0.01 * 3 * 3);
  read_doubles(f, "time/io", v, 3);
  assert_true(v[1] == 0.01 * 6 * 2);
  read_doubles(f, "client_accuracy/p90", v, 3);
  assert_true(v[0] == 0.4 + 0.01);
  read_doubles(f, "round", v, 3); /* stored as int, read converted */
  assert_true(v[0] == 1 && v[2] == 3);
  char s[256];
  read_attr_str(f, "status", s, sizeof s);
  assert_string_equal(s, "complete");
  read_attr_str(f, "config", s, sizeof s);
  assert_string_equal(s, "[run]\nrounds = 3\n");
  read_attr_str(f, "algorithm", s, sizeof s);
  assert_string_equal(s, "fedavg");
  H5Fclose(f);
}

static void test_failed_run_stays_partial(void **state) {
  (void)state;
  fh_metrics_file mf;
  char final[256], partial[256];
  snprintf(final, sizeof final, "%s/metrics.h5", dir);
  snprintf(partial, sizeof partial, "%s/metrics.h5.partial", dir);
  assert_int_equal(fh_metrics_open(&mf, dir, "", "v1", 1, "fedavg"), 0);
  /* Opening removed the previous run's complete file. */
  assert_false(exists(final));
  fh_round_metrics m = {.round = 1, .test_accuracy = NAN};
  assert_int_equal(fh_metrics_append(&mf, &m), 0);
  assert_int_equal(fh_metrics_finish_row(&mf, 0.0), 0);
  assert_int_equal(fh_metrics_close(&mf, "failed: round 1, client 3: training loss became NaN"), 0);
  assert_false(exists(final));
  hid_t f = H5Fopen(partial, H5F_ACC_RDONLY, H5P_DEFAULT);
  assert_true(f >= 0);
  char s[256];
  read_attr_str(f, "status", s, sizeof s);
  assert_non_null(strstr(s, "failed: round 1, client 3"));
  H5Fclose(f);
}

static void test_percentiles(void **state) {
  (void)state;
  double v[5] = {0.1, 0.2, 0.3, 0.4, 1.0};
  assert_true(fabs(fh_percentile_sorted(v, 5, 0.10) - 0.14) < 1e-12); /* numpy: 0.14 */
  assert_true(fabs(fh_percentile_sorted(v, 5, 0.90) - 0.76) < 1e-12); /* numpy: 0.76 */
  assert_true(fh_percentile_sorted(v, 1, 0.9) == 0.1);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  snprintf(dir, sizeof dir, "/tmp/fh_metrics_XXXXXX");
  if (!mkdtemp(dir)) return 1;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_round_trip),
      cmocka_unit_test(test_failed_run_stays_partial),
      cmocka_unit_test(test_percentiles),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0) rc = 1;
  MPI_Finalize();
  return rc;
}
