/* What a partition looks like: client x class counts, a summary (sizes,
 * classes per client, label skew as the distance of each client's label mix
 * from the global one), and partition.h5 for analysis/plot_partition.py. */
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/log.h"
#include "data/partition.h"
#include "io/h5util.h"

int64_t *fh_partition_counts(const fh_client_rows *r, const int32_t *labels, int num_classes) {
  size_t K = (size_t)r->num_clients, C = (size_t)num_classes;
  int64_t *counts = fh_calloc(K * C > 0 ? K * C : 1, sizeof(int64_t));
  for (size_t k = 0; k < K; k++)
    for (int64_t i = r->offsets[k]; i < r->offsets[k + 1]; i++) {
      if (i + 16 < r->offsets[K]) __builtin_prefetch(&labels[r->rows[i + 16]]);
      counts[k * C + (size_t)labels[r->rows[i]]]++;
    }
  return counts;
}

/* sum_c |a_c / na - b_c / nb| over the C classes (0 when either is empty). */
static double mix_distance(const int64_t *a, int64_t na, const int64_t *b, int64_t nb, int C) {
  if (na == 0 || nb == 0) return 0;
  double d = 0;
  for (int c = 0; c < C; c++) d += fabs((double)a[c] / (double)na - (double)b[c] / (double)nb);
  return d;
}

static int64_t row_sum(const int64_t *row, int C) {
  int64_t s = 0;
  for (int c = 0; c < C; c++) s += row[c];
  return s;
}

void fh_partition_summarize(const int64_t *train, const int64_t *test, int K, int C, fh_partition_stats *s) {
  memset(s, 0, sizeof *s);
  s->clients = K;
  s->classes = C;
  if (K < 1 || C < 1) return;
  int64_t *global = fh_calloc((size_t)C, sizeof(int64_t));
  for (int k = 0; k < K; k++)
    for (int c = 0; c < C; c++) global[c] += train[(size_t)k * C + c];
  int64_t gtotal = row_sum(global, C);
  s->train_min = s->test_min = INT64_MAX;
  s->classes_min = C + 1;
  s->emd_min = INFINITY;
  for (int k = 0; k < K; k++) {
    const int64_t *row = train + (size_t)k * C;
    int64_t n = row_sum(row, C);
    int ncls = 0;
    for (int c = 0; c < C; c++) ncls += row[c] > 0;
    double emd = mix_distance(row, n, global, gtotal, C);
    s->train_total += n;
    if (n < s->train_min) s->train_min = n;
    if (n > s->train_max) s->train_max = n;
    if (ncls < s->classes_min) s->classes_min = ncls;
    if (ncls > s->classes_max) s->classes_max = ncls;
    s->classes_mean += ncls;
    if (emd < s->emd_min) s->emd_min = emd;
    if (emd > s->emd_max) s->emd_max = emd;
    s->emd_mean += emd;
    if (test) {
      const int64_t *trow = test + (size_t)k * C;
      int64_t t = row_sum(trow, C);
      double d = mix_distance(trow, t, row, n, C);
      s->test_total += t;
      if (t < s->test_min) s->test_min = t;
      if (t > s->test_max) s->test_max = t;
      s->test_vs_train_mean += d;
      if (d > s->test_vs_train_max) s->test_vs_train_max = d;
    }
  }
  s->train_mean = (double)s->train_total / K;
  s->classes_mean /= K;
  s->emd_mean /= K;
  if (test) {
    s->test_mean = (double)s->test_total / K;
    s->test_vs_train_mean /= K;
  } else {
    s->test_min = 0;
  }
  free(global);
}

void fh_partition_print(const char *method, const fh_partition_stats *s) {
  fh_info("partition %s: %d clients, %d classes, %lld train rows%s", method, s->clients, s->classes,
          (long long)s->train_total, s->test_total > 0 ? "" : " (no test split)");
  fh_info("                              min         mean          max");
  fh_info("  train rows per client %10lld %12.2f %12lld", (long long)s->train_min, s->train_mean,
          (long long)s->train_max);
  if (s->test_total > 0)
    fh_info("  test rows per client  %10lld %12.2f %12lld   (%lld in all)", (long long)s->test_min, s->test_mean,
            (long long)s->test_max, (long long)s->test_total);
  fh_info("  classes per client    %10d %12.2f %12d", s->classes_min, s->classes_mean, s->classes_max);
  fh_info("  EMD to global mix     %10.3f %12.3f %12.3f   (sum_c |p_kc - p_c|: 0 = global mix, 2 = disjoint)",
          s->emd_min, s->emd_mean, s->emd_max);
  if (s->test_total > 0)
    fh_info("  test vs train mix     %10s %12.3f %12.3f   (same distance, client's test vs its train)", "",
            s->test_vs_train_mean, s->test_vs_train_max);
}

int fh_partition_write(const char *path, const fh_config *cfg, const char *method, const int64_t *train_counts,
                       const int64_t *test_counts, int K, int C) {
  return fh_partition_write_rows(path, cfg, method, train_counts, test_counts, K, C, NULL, NULL, NULL, 0);
}

/* One client_rows as <what>_offsets [K + 1] and <what>_rows [total]. */
static int write_rows(hid_t f, const char *what, const fh_client_rows *r) {
  char name[64];
  hsize_t n = (hsize_t)r->num_clients + 1, m = (hsize_t)r->offsets[r->num_clients];
  snprintf(name, sizeof name, "%s_offsets", what);
  FH_TRY(fh_h5_write(f, name, H5T_NATIVE_INT64, 1, &n, r->offsets));
  snprintf(name, sizeof name, "%s_rows", what);
  const int64_t none = 0;
  return fh_h5_write(f, name, H5T_NATIVE_INT64, 1, &m, m ? r->rows : &none);
}

int fh_partition_write_rows(const char *path, const fh_config *cfg, const char *method, const int64_t *train_counts,
                            const int64_t *test_counts, int K, int C, const fh_client_rows *train,
                            const fh_client_rows *test, const int *holdout, int nholdout) {
  hid_t f = fh_h5_mem_create(); /* written to disk whole by fh_h5_mem_commit */
  if (f < 0) return FH_FAIL(FH_ERR_RUNTIME, "%s: cannot create the file in memory", path);
  hsize_t dims[2] = {(hsize_t)K, (hsize_t)C};
  char *ini = fh_config_dump(cfg);
  int rc = fh_h5_write(f, "train_counts", H5T_NATIVE_INT64, 2, dims, train_counts);
  if (rc == 0 && test_counts) rc = fh_h5_write(f, "test_counts", H5T_NATIVE_INT64, 2, dims, test_counts);
  if (rc == 0) rc = fh_h5_attr_str(f, "method", method);
  if (rc == 0) rc = fh_h5_attr_str(f, "config", ini);
  if (rc == 0) rc = fh_h5_attr_int(f, "num_clients", K);
  if (rc == 0) rc = fh_h5_attr_int(f, "num_classes", C);
  if (rc == 0) rc = fh_h5_attr_int(f, "seed", fh_cfg_int(cfg, "run.seed"));
  if (rc == 0 && train) rc = write_rows(f, "train", train);
  if (rc == 0 && test) rc = write_rows(f, "test", test);
  if (rc == 0 && holdout) {
    hsize_t n = (hsize_t)nholdout;
    const int none = 0;
    rc = fh_h5_write(f, "holdout_clients", H5T_NATIVE_INT, 1, &n, nholdout ? holdout : &none);
  }
  free(ini);
  if (rc == 0) return fh_h5_mem_commit(f, path); /* its errors name path and the cause */
  H5Fclose(f); /* in memory: nothing reached the disk */
  fh_error_prefix("%s: ", path);
  return rc;
}
