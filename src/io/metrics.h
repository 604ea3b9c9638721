/* metrics.h5: one row per round, written by rank 0 (layout in docs/outputs.md).
 * While the run is going the file is RUN/metrics.h5.partial (attribute status =
 * "running", flushed each round); a run that ends well renames it to
 * RUN/metrics.h5 with status = "complete", so a file named metrics.h5 is always
 * a finished run. A failed run leaves metrics.h5.partial with status
 * "failed: <message>", a run stopped by a signal "interrupted: <how to resume>".
 * Every row written is also kept in mf->rows (phase[FH_PH_IO] included once
 * the row is finished), so a checkpoint can carry the history.
 *
 * A full disk: every finished row is first appended as one line to the text
 * file RUN/metrics.rows.csv (header: the column paths), which an append that
 * fails cannot damage beyond its own last line; then it goes to the HDF5
 * file. When an HDF5 write fails the file is left as it was last flushed (a
 * failed HDF5 flush can leave it unreadable) and the error names the rows
 * kept in the CSV. A complete run removes the CSV. */
#ifndef FH_METRICS_H
#define FH_METRICS_H

#include <hdf5.h>

#include "core/profile.h"
#include "io/h5util.h"

/* One evaluation mode over clients' own test splits (src/fl/evaluate.c). */
typedef struct {
  double accuracy;             /* correct / total over the clients' test samples */
  double loss;                 /* mean cross-entropy over the same samples       */
  double client_acc[5];        /* mean, min, max, p10, p90 over clients of their
                                  own test accuracy                              */
} fh_eval_stats;

typedef struct {
  int round;                   /* 1-based                                */
  int clients;                 /* clients sampled                        */
  double wall;                 /* seconds, whole round                   */
  double phase[FH_NPHASES];    /* seconds, max over ranks                */
  double bcast_bytes;          /* bytes the round's broadcast carries    */
  double reduce_bytes;         /* bytes of the round's reduction buffer  */
  double moved_clients;        /* run.schedule = balanced: clients trained
                                  away from their host (fl/schedule.h)   */
  double move_bytes;           /* their rows and state out, state back   */
  double move_seconds;         /* max over ranks of the time moving them */
  double local_loss;           /* n_k-weighted mean of the sampled clients'
                                  losses in their last local epoch       */
  double train_loss;           /* global model on every client's train
                                  split; NaN if not evaluated            */
  double test_accuracy;        /* all test samples; NaN if not evaluated */
  double test_loss;
  double client_acc[5];        /* mean, min, max, p10, p90 over clients  */
  double global_test_accuracy; /* global model on the global test set     */
  double global_test_loss;
  fh_eval_stats personal;      /* each client's own (personalised) model  */
  fh_eval_stats finetune;      /* the global model fine-tuned per client  */
  fh_eval_stats holdout;       /* held-out clients: adapt, then test      */
} fh_round_metrics;

/* The row of a round: every measured value NaN until filled in. */
void fh_round_metrics_clear(fh_round_metrics *m, int round, int clients);

/* One dataset of metrics.h5: its path and where its value sits in a row.
 * The table (fh_metric_columns) is the one list of what a row holds: the file
 * writer and the checkpoint (src/fl/checkpoint.c) both walk it, so a new
 * metric is a field in fh_round_metrics plus one line in the table. */
typedef struct {
  char path[48]; /* "test_accuracy", "personal/client_accuracy/p10" */
  int is_int;    /* int field (round, clients_sampled), else double */
  size_t offset; /* offsetof(fh_round_metrics, ...)                 */
} fh_metric_column;

#define FH_METRIC_MAX_COLUMNS 64

/* The columns in file order; returns how many. */
int fh_metric_columns(const fh_metric_column **cols);

typedef struct {
  hid_t file;
  char partial_path[4096], final_path[4096];
  fh_round_metrics *rows; /* every row written, in memory (for checkpoints) */
  int nrows, cap;
  int ncols;
  fh_h5_series col[FH_METRIC_MAX_COLUMNS]; /* one per fh_metric_columns entry */
  char csv_path[4096];
  int csv_fd;  /* metrics.rows.csv, or -1 */
  int broken;  /* an HDF5 write failed: the file is left open, never written again */
} fh_metrics_file;

/* attrs: resolved config (INI text), library versions, ranks, revision. */
int fh_metrics_open(fh_metrics_file *mf, const char *run_dir, const char *config_ini,
                    const char *versions, int nranks, const char *algorithm);
/* A row is written in two steps so that it can hold its own I/O time: append
 * writes everything but time/io; finish_row writes time/io and flushes. */
int fh_metrics_append(fh_metrics_file *mf, const fh_round_metrics *m);
int fh_metrics_finish_row(fh_metrics_file *mf, double io_seconds);
/* status "complete" renames to metrics.h5; anything else keeps .partial.
 * Frees the rows kept in memory. */
int fh_metrics_close(fh_metrics_file *mf, const char *status);

/* Percentiles with linear interpolation (numpy's default) of v [n]; sorts v. */
double fh_percentile_sorted(const double *sorted, int n, double q);

#endif
