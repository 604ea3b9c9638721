/* How pool rows are dealt to clients (deterministic from the seed, never from
 * the rank count), and how a client's samples are cut into train and test. */
#ifndef FH_PARTITION_H
#define FH_PARTITION_H

#include <stdint.h>

#include "core/config.h"

/* Part p of n items cut into k contiguous blocks whose sizes differ by at most
 * one: items [*begin, *end), begin = floor(p*n/k). */
void fh_block_range(int64_t n, int k, int p, int64_t *begin, int64_t *end);

/* Test samples of a client with n >= 2 samples: round(test_fraction * n),
 * at least 1 and at most n - 1 (so train keeps at least one sample). */
int fh_test_count(int n, double test_fraction);

/* Rows of a pool per client, CSR: client k owns rows[offsets[k] ..
 * offsets[k+1]-1], ascending within a client; a row may repeat (sampling with
 * replacement) and may belong to several clients. */
typedef struct {
  int num_clients;
  int64_t *offsets; /* [num_clients + 1] */
  int64_t *rows;    /* [offsets[num_clients]] */
} fh_client_rows;

void fh_client_rows_free(fh_client_rows *r);

/* Deck keys of the [partition] section (partition.method = iid | dirichlet |
 * shards | ..., its parameters, the per-client test split). */
extern const fh_key_spec fh_partition_keys[];

/* The method the deck's partition.method resolves to ("auto": "natural" when
 * the source has natural clients, else "iid"); a static string. */
const char *fh_partition_method(const fh_config *cfg, int has_natural);

/* Whether the deck's partition uses the source's natural clients, checked
 * against run.clients: 0 when it does not use them or when natural_clients ==
 * num_clients; FH_ERR_DATA when partition.method = natural and the source has
 * none (natural_clients = 0), or when the counts differ (the message says what
 * to set run.clients to). Call it before passing natural_offsets below. */
int fh_partition_check_natural(const fh_config *cfg, int natural_clients, int num_clients);

/* Train rows of every client from the labels of the train pool [n].
 * natural_offsets: [num_clients+1] when the source has natural clients (LEAF,
 * HDF5 client_offsets) and fh_partition_check_natural passed, else NULL.
 * Every client gets at least one row (or the call fails). Pure function of
 * (deck, seed, labels): the same on every rank and any rank count.
 * Errors: FH_ERR_CONFIG / FH_ERR_DATA with a message that names the key. */
int fh_partition_train(const fh_config *cfg, uint64_t seed, const int32_t *labels, int64_t n,
                       int num_classes, int num_clients, const int64_t *natural_offsets,
                       fh_client_rows *out);

/* Test rows of every client from the test pool [m], following each client's
 * own train label distribution (natural_offsets: the test pool's, as above).
 * Method iid without partition.test_per_client / test_fraction: the test pool
 * shuffled and cut into near-equal blocks (docs/dataset-format.md). */
int fh_partition_test(const fh_config *cfg, uint64_t seed, const fh_client_rows *train,
                      const int32_t *train_labels, const int32_t *test_labels, int64_t m,
                      int num_classes, const int64_t *natural_offsets, fh_client_rows *out);

/* LIPS's class counts of one client (partition.method = lips; their
 * sampling.py, dirichlet_sampling): for c < last, int(s q[c] + 0.5) capped at
 * what is left of s (never below 0); class last takes the rest. q [last+1]
 * sums to 1; cnt [last+1] sums to s. */
void fh_lips_class_counts(const double *q, int last, int64_t s, int64_t *cnt);

/* ---- statistics (data/partition_stats.c) ------------------------------------ */

/* Client x class counts of a partition, newly allocated [num_clients,
 * num_classes] row-major: rows of class c that client k owns (repeats counted). */
int64_t *fh_partition_counts(const fh_client_rows *r, const int32_t *labels, int num_classes);

/* Summary of train (and optionally test) counts [K, C]. The skew figure is
 * the earth mover's distance between a client's label mix and the global one
 * under the 0/1 ground distance, sum_c |p_kc - p_c| (0: the global mix, 2:
 * disjoint); test_vs_train is the same distance between a client's test and
 * train mixes. */
typedef struct {
  int clients, classes;
  int64_t train_total, test_total;
  int64_t train_min, train_max, test_min, test_max;
  double train_mean, test_mean;
  int classes_min, classes_max; /* classes with at least one train row */
  double classes_mean;
  double emd_min, emd_mean, emd_max;
  double test_vs_train_mean, test_vs_train_max; /* 0 without test counts */
} fh_partition_stats;

void fh_partition_summarize(const int64_t *train_counts, const int64_t *test_counts, int num_clients,
                            int num_classes, fh_partition_stats *s);
/* The summary as a few lines on rank 0's stdout (fh_info). */
void fh_partition_print(const char *method, const fh_partition_stats *s);

/* Writes path (HDF5): train_counts and test_counts [K, C] int64, attributes
 * method, config (the resolved deck), num_clients, num_classes, seed (cfg is
 * a whole deck: run.seed is read). test_counts may be NULL. Errors:
 * FH_ERR_OUTPUT naming the file. */
int fh_partition_write(const char *path, const fh_config *cfg, const char *method, const int64_t *train_counts,
                       const int64_t *test_counts, int num_clients, int num_classes);
/* The same plus each client's rows (when train / test are not NULL):
 * train_offsets, test_offsets [K + 1] and train_rows, test_rows int64, client
 * k's rows of the train (test) pool being rows[offsets[k] .. offsets[k + 1]);
 * and holdout_clients [nholdout] int (the
 * clients eval.holdout_clients holds out, when holdout is not NULL). */
int fh_partition_write_rows(const char *path, const fh_config *cfg, const char *method, const int64_t *train_counts,
                            const int64_t *test_counts, int num_clients, int num_classes, const fh_client_rows *train,
                            const fh_client_rows *test, const int *holdout, int nholdout);

#endif
