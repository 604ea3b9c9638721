#include "io/metrics.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

static const char *const client_acc_names[5] = {"mean", "min", "max", "p10", "p90"};

void fh_round_metrics_clear(fh_round_metrics *m, int round, int clients) {
  memset(m, 0, sizeof *m);
  m->round = round;
  m->clients = clients;
  m->local_loss = m->train_loss = m->test_accuracy = m->test_loss = NAN;
  m->global_test_accuracy = m->global_test_loss = NAN;
  fh_eval_stats *groups[3] = {&m->personal, &m->finetune, &m->holdout};
  for (int i = 0; i < 5; i++) m->client_acc[i] = NAN;
  for (int g = 0; g < 3; g++) {
    groups[g]->accuracy = groups[g]->loss = NAN;
    for (int i = 0; i < 5; i++) groups[g]->client_acc[i] = NAN;
  }
}

/* ---- the columns ------------------------------------------------------------ */

static fh_metric_column columns[FH_METRIC_MAX_COLUMNS];
static int ncolumns;

static void add_column(const char *path, int is_int, size_t offset) {
  fh_metric_column *c = &columns[ncolumns++];
  snprintf(c->path, sizeof c->path, "%s", path);
  c->is_int = is_int;
  c->offset = offset;
}

/* GROUP/accuracy, GROUP/loss, GROUP/client_accuracy/{mean,...} of a mode. */
static void add_eval_columns(const char *group, size_t base) {
  char path[48];
  snprintf(path, sizeof path, "%s/accuracy", group);
  add_column(path, 0, base + offsetof(fh_eval_stats, accuracy));
  snprintf(path, sizeof path, "%s/loss", group);
  add_column(path, 0, base + offsetof(fh_eval_stats, loss));
  for (int i = 0; i < 5; i++) {
    snprintf(path, sizeof path, "%s/client_accuracy/%s", group, client_acc_names[i]);
    add_column(path, 0, base + offsetof(fh_eval_stats, client_acc) + (size_t)i * sizeof(double));
  }
}

int fh_metric_columns(const fh_metric_column **cols) {
  if (ncolumns == 0) {
    char path[48];
    add_column("round", 1, offsetof(fh_round_metrics, round));
    add_column("clients_sampled", 1, offsetof(fh_round_metrics, clients));
    add_column("wall_time", 0, offsetof(fh_round_metrics, wall));
    add_column("local_loss", 0, offsetof(fh_round_metrics, local_loss));
    add_column("train_loss", 0, offsetof(fh_round_metrics, train_loss));
    add_column("test_accuracy", 0, offsetof(fh_round_metrics, test_accuracy));
    add_column("test_loss", 0, offsetof(fh_round_metrics, test_loss));
    for (int p = 0; p < FH_NPHASES; p++) {
      snprintf(path, sizeof path, "time/%s", fh_phase_names[p]);
      add_column(path, 0, offsetof(fh_round_metrics, phase) + (size_t)p * sizeof(double));
    }
    for (int i = 0; i < 5; i++) {
      snprintf(path, sizeof path, "client_accuracy/%s", client_acc_names[i]);
      add_column(path, 0, offsetof(fh_round_metrics, client_acc) + (size_t)i * sizeof(double));
    }
    add_column("comm/bcast_bytes", 0, offsetof(fh_round_metrics, bcast_bytes));
    add_column("comm/reduce_bytes", 0, offsetof(fh_round_metrics, reduce_bytes));
    add_column("global_test/accuracy", 0, offsetof(fh_round_metrics, global_test_accuracy));
    add_column("global_test/loss", 0, offsetof(fh_round_metrics, global_test_loss));
    add_eval_columns("personal", offsetof(fh_round_metrics, personal));
    add_eval_columns("finetune", offsetof(fh_round_metrics, finetune));
    add_eval_columns("holdout", offsetof(fh_round_metrics, holdout));
  }
  *cols = columns;
  return ncolumns;
}

/* time/io is written by finish_row, after the row's own I/O was timed. */
static size_t io_offset(void) { return offsetof(fh_round_metrics, phase) + (size_t)FH_PH_IO * sizeof(double); }

/* Creates the series of column c under its groups. */
static int column_create(fh_h5_series *s, hid_t file, const fh_metric_column *c) {
  char group[48];
  snprintf(group, sizeof group, "%s", c->path);
  char *slash = strrchr(group, '/');
  const char *leaf = c->path;
  hid_t g = file;
  if (slash) {
    *slash = '\0';
    leaf = c->path + (slash - group) + 1;
    g = fh_h5_group(file, group);
    if (g < 0) return FH_FAIL(FH_ERR_OUTPUT, "metrics.h5: cannot create group %s", group);
  }
  int rc = fh_h5_series_create(s, g, leaf, c->is_int ? H5T_NATIVE_INT : H5T_NATIVE_DOUBLE, 0, NULL);
  if (slash) H5Gclose(g);
  return rc;
}

int fh_metrics_open(fh_metrics_file *mf, const char *run_dir, const char *config_ini,
                    const char *versions, int nranks, const char *algorithm) {
  memset(mf, 0, sizeof *mf);
  snprintf(mf->final_path, sizeof mf->final_path, "%s/metrics.h5", run_dir);
  snprintf(mf->partial_path, sizeof mf->partial_path, "%s/metrics.h5.partial", run_dir);
  remove(mf->final_path); /* an older run's file must not pass for this one */
  mf->file = H5Fcreate(mf->partial_path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (mf->file < 0) return FH_FAIL(FH_ERR_OUTPUT, "%s: cannot create file; check that output.dir is writable and not full", mf->partial_path);
  FH_TRY(fh_h5_attr_str(mf->file, "status", "running"));
  FH_TRY(fh_h5_attr_str(mf->file, "config", config_ini));
  FH_TRY(fh_h5_attr_str(mf->file, "versions", versions));
  FH_TRY(fh_h5_attr_int(mf->file, "nranks", nranks));
  FH_TRY(fh_h5_attr_str(mf->file, "algorithm", algorithm));
  FH_TRY(fh_h5_attr_str(mf->file, "source_revision", FEDHPC_GIT_REV));
  FH_TRY(fh_h5_attr_str(mf->file, "fedhpc_version", FEDHPC_VERSION));

  const fh_metric_column *cols;
  mf->ncols = fh_metric_columns(&cols);
  for (int c = 0; c < mf->ncols; c++) FH_TRY(column_create(&mf->col[c], mf->file, &cols[c]));
  H5Fflush(mf->file, H5F_SCOPE_GLOBAL);
  return 0;
}

int fh_metrics_append(fh_metrics_file *mf, const fh_round_metrics *m) {
  if (mf->nrows == mf->cap) {
    mf->cap = mf->cap ? 2 * mf->cap : 64;
    fh_round_metrics *grown = fh_malloc((size_t)mf->cap * sizeof *grown);
    if (mf->nrows) memcpy(grown, mf->rows, (size_t)mf->nrows * sizeof *grown);
    free(mf->rows);
    mf->rows = grown;
  }
  mf->rows[mf->nrows++] = *m;
  const fh_metric_column *cols;
  fh_metric_columns(&cols);
  for (int c = 0; c < mf->ncols; c++)
    if (cols[c].offset != io_offset()) FH_TRY(fh_h5_series_append(&mf->col[c], (const char *)m + cols[c].offset));
  return 0;
}

int fh_metrics_finish_row(fh_metrics_file *mf, double io_seconds) {
  if (mf->nrows > 0) mf->rows[mf->nrows - 1].phase[FH_PH_IO] = io_seconds;
  const fh_metric_column *cols;
  fh_metric_columns(&cols);
  for (int c = 0; c < mf->ncols; c++)
    if (cols[c].offset == io_offset()) FH_TRY(fh_h5_series_append(&mf->col[c], &io_seconds));
  if (H5Fflush(mf->file, H5F_SCOPE_GLOBAL) < 0) return FH_FAIL(FH_ERR_OUTPUT, "%s: cannot flush", mf->partial_path);
  return 0;
}

int fh_metrics_close(fh_metrics_file *mf, const char *status) {
  free(mf->rows);
  mf->rows = NULL;
  mf->nrows = mf->cap = 0;
  if (mf->file <= 0) return 0;
  fh_h5_attr_str(mf->file, "status", status);
  for (int c = 0; c < mf->ncols; c++) fh_h5_series_close(&mf->col[c]);
  herr_t st = H5Fclose(mf->file);
  mf->file = 0;
  if (st < 0) return FH_FAIL(FH_ERR_OUTPUT, "%s: cannot close file", mf->partial_path);
  if (strcmp(status, "complete") == 0 && rename(mf->partial_path, mf->final_path) != 0)
    return FH_FAIL(FH_ERR_OUTPUT, "cannot rename %s to %s", mf->partial_path, mf->final_path);
  return 0;
}

double fh_percentile_sorted(const double *sorted, int n, double q) {
  if (n <= 0) return 0.0;
  double pos = q * (n - 1);
  int lo = (int)pos;
  if (lo >= n - 1) return sorted[n - 1];
  double frac = pos - lo;
  return sorted[lo] + frac * (sorted[lo + 1] - sorted[lo]);
}
