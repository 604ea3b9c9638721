#include "io/metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "core/paths.h"

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
    add_column("schedule/moved_clients", 0, offsetof(fh_round_metrics, moved_clients));
    add_column("schedule/move_bytes", 0, offsetof(fh_round_metrics, move_bytes));
    add_column("schedule/move_seconds", 0, offsetof(fh_round_metrics, move_seconds));
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

/* ---- the CSV of finished rows ------------------------------------------------- */

static int write_all(int fd, const char *buf, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, buf, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      if (w == 0) errno = ENOSPC;
      return -1;
    }
    buf += w, n -= (size_t)w;
  }
  return 0;
}

static int csv_fail(fh_metrics_file *mf, const char *what) {
  int e = errno;
  const char *cause = fh_write_cause(mf->csv_path, e);
  close(mf->csv_fd);
  mf->csv_fd = -1;
  return FH_FAIL(FH_ERR_OUTPUT, "%s: cannot write %s: %s; free space and resume from the last checkpoint",
                 mf->csv_path, what, cause[0] ? cause : strerror(e));
}

static int csv_open(fh_metrics_file *mf, const char *run_dir) {
  snprintf(mf->csv_path, sizeof mf->csv_path, "%s/metrics.rows.csv", run_dir);
  mf->csv_fd = open(mf->csv_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
  if (mf->csv_fd < 0) {
    const char *cause = fh_write_cause(mf->csv_path, errno);
    return FH_FAIL(FH_ERR_OUTPUT, "%s: cannot create: %s; check that output.dir is writable and not full",
                   mf->csv_path, cause[0] ? cause : strerror(errno));
  }
  const fh_metric_column *cols;
  const int ncols = fh_metric_columns(&cols);
  char line[FH_METRIC_MAX_COLUMNS * 48 + 2];
  size_t n = 0;
  for (int c = 0; c < ncols; c++) n += (size_t)snprintf(line + n, sizeof line - n, "%s%s", c ? "," : "", cols[c].path);
  line[n++] = '\n';
  return write_all(mf->csv_fd, line, n) == 0 ? 0 : csv_fail(mf, "its header");
}

static int csv_row(fh_metrics_file *mf, const fh_round_metrics *m) {
  if (mf->csv_fd < 0) return 0;
  const fh_metric_column *cols;
  const int ncols = fh_metric_columns(&cols);
  char line[FH_METRIC_MAX_COLUMNS * 26 + 2];
  size_t n = 0;
  for (int c = 0; c < ncols; c++) {
    const char *v = (const char *)m + cols[c].offset;
    if (cols[c].is_int) n += (size_t)snprintf(line + n, sizeof line - n, "%s%d", c ? "," : "", *(const int *)v);
    else n += (size_t)snprintf(line + n, sizeof line - n, "%s%.17g", c ? "," : "", *(const double *)v);
  }
  line[n++] = '\n';
  if (write_all(mf->csv_fd, line, n) == 0) return 0;
  char what[64];
  snprintf(what, sizeof what, "round %d", m->round);
  return csv_fail(mf, what);
}

/* An HDF5 write of metrics.h5.partial failed: the file is never written again.
 * had: an error was recorded before the write (else the HDF5 helper's own
 * message, which names neither file nor cause, gives way to this one). */
static int h5_fail(fh_metrics_file *mf, int round, int had) {
  if (!had) fh_error_clear();
  const char *cause = fh_write_cause(mf->partial_path, errno);
  mf->broken = 1;
  return FH_FAIL(FH_ERR_OUTPUT, "%s: cannot write round %d: %s; the finished rows are in %s; free space and "
                                "resume from the last checkpoint", mf->partial_path, round,
                 cause[0] ? cause : "HDF5 write failed", mf->csv_path);
}

/* ---- the HDF5 file ---------------------------------------------------------------- */

int fh_metrics_open(fh_metrics_file *mf, const char *run_dir, const char *config_ini,
                    const char *versions, int nranks, const char *algorithm) {
  memset(mf, 0, sizeof *mf);
  mf->csv_fd = -1;
  snprintf(mf->final_path, sizeof mf->final_path, "%s/metrics.h5", run_dir);
  snprintf(mf->partial_path, sizeof mf->partial_path, "%s/metrics.h5.partial", run_dir);
  remove(mf->final_path); /* an older run's file must not pass for this one */
  FH_TRY(csv_open(mf, run_dir));
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
  if (H5Fflush(mf->file, H5F_SCOPE_GLOBAL) < 0) return h5_fail(mf, 0, 1);
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
  if (mf->broken) return FH_FAIL(FH_ERR_OUTPUT, "%s: written after a failed write", mf->partial_path);
  const fh_metric_column *cols;
  fh_metric_columns(&cols);
  const int had = fh_error_code() != 0;
  for (int c = 0; c < mf->ncols; c++)
    if (cols[c].offset != io_offset() && fh_h5_series_append(&mf->col[c], (const char *)m + cols[c].offset) != 0) {
      return h5_fail(mf, m->round, had);
    }
  return 0;
}

int fh_metrics_finish_row(fh_metrics_file *mf, double io_seconds) {
  if (mf->nrows > 0) mf->rows[mf->nrows - 1].phase[FH_PH_IO] = io_seconds;
  const int round = mf->nrows > 0 ? mf->rows[mf->nrows - 1].round : 0;
  if (mf->nrows > 0) FH_TRY(csv_row(mf, &mf->rows[mf->nrows - 1]));
  if (mf->broken) return FH_FAIL(FH_ERR_OUTPUT, "%s: written after a failed write", mf->partial_path);
  const fh_metric_column *cols;
  fh_metric_columns(&cols);
  const int had = fh_error_code() != 0;
  for (int c = 0; c < mf->ncols; c++)
    if (cols[c].offset == io_offset() && fh_h5_series_append(&mf->col[c], &io_seconds) != 0) {
      return h5_fail(mf, round, had);
    }
  if (H5Fflush(mf->file, H5F_SCOPE_GLOBAL) < 0) return h5_fail(mf, round, had);
  return 0;
}

int fh_metrics_close(fh_metrics_file *mf, const char *status) {
  const int last = mf->nrows > 0 ? mf->rows[mf->nrows - 1].round : 0;
  free(mf->rows);
  mf->rows = NULL;
  mf->nrows = mf->cap = 0;
  const int complete = strcmp(status, "complete") == 0;
  if (mf->csv_fd >= 0) close(mf->csv_fd);
  mf->csv_fd = -1;
  if (mf->file <= 0) return 0;
  if (mf->broken) { /* left open as it was last flushed (io/h5util.h: fh_h5_close) */
    mf->file = 0;
    return complete ? FH_FAIL(FH_ERR_OUTPUT, "%s: incomplete after a failed write", mf->partial_path) : 0;
  }
  const int had = fh_error_code() != 0;
  if (fh_h5_attr_str(mf->file, "status", status) != 0) { /* left open, as above */
    int rc = h5_fail(mf, last, had);
    mf->file = 0;
    return rc;
  }
  for (int c = 0; c < mf->ncols; c++) fh_h5_series_close(&mf->col[c]);
  int rc = fh_h5_close(mf->file, mf->partial_path);
  mf->file = 0;
  if (rc != 0) return rc;
  if (complete && rename(mf->partial_path, mf->final_path) != 0)
    return FH_FAIL(FH_ERR_OUTPUT, "cannot rename %s to %s: %s", mf->partial_path, mf->final_path, strerror(errno));
  if (complete) remove(mf->csv_path);
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
