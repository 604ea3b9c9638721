/* Federated datasets in memory. Each rank holds only the clients it hosts:
 * client k's train and test samples, as float features [n, C*H*W] and int32
 * labels [n], plus its block of the global test set. The same (deck, seed)
 * gives every client the same samples on any rank count. Sources: the
 * Synthetic(alpha, beta) generator (data/synthetic.c), which makes each
 * client's samples itself, and the sample pools of data/source.h (HDF5, IDX,
 * CIFAR, LEAF, synthetic images), whose rows the partitioner
 * (data/partition.h) deals to clients and of which a rank reads only its
 * clients' rows. */
#ifndef FH_DATASET_H
#define FH_DATASET_H

#include <stdint.h>

#include "core/config.h"
#include "data/augment.h"

typedef struct {
  int n;          /* samples                                   */
  float *x;       /* [n, dim]                                   */
  int32_t *y;     /* [n], each in [0, num_classes)              */
  /* Training augmentation of minibatches drawn from this split (train splits
   * when data.augment_* asks for one; NULL otherwise). Local SGD applies it
   * to each gathered batch (src/fl/blocks/local_sgd.c). */
  const fh_augment *augment;
  /* Train splits with generated data (FedGC, src/fl/addons/fedgc.h): the last
   * `generated` of the n rows are generated; `weight_skip` of them are left
   * out of the client's aggregation weight (fedgc.weights = real). 0 else. */
  int generated, weight_skip;
} fh_split;

/* The aggregation weight n_k of a client with train split s: its rows, less
 * the generated ones when the deck says so (fedgc.weights). */
static inline double fh_split_weight(const fh_split *s) { return (double)(s->n - s->weight_skip); }

typedef struct {
  int id;         /* global client id                           */
  fh_split train, test;
} fh_client_data;

typedef struct {
  char name[64];       /* "synthetic(0.5,0.5)" or the file's name */
  int num_classes;
  int c, h, w;         /* sample shape; flat features are [d, 1, 1] */
  int dim;             /* c*h*w                                    */
  int num_clients;     /* K, all ranks                             */
  int first_client;    /* this rank hosts first_client ..          */
  int nlocal;          /*   .. first_client + nlocal - 1           */
  fh_client_data *clients; /* [nlocal]                             */
  /* This rank's block of the global test set (pool sources: the whole test
   * pool cut into contiguous blocks over ranks; n = 0 where a source has no
   * global test set). Evaluation sums counts over ranks. */
  fh_split global_test; /* owns its x and y (freed by fh_dataset_free) */
  /* Storage the client splits point into (owned; freed by fh_dataset_free):
   * every local client's train rows, then every local client's test rows. */
  float *x_store;      /* [rows, dim] */
  int32_t *y_store;    /* [rows]      */
  /* The per-channel normalisation the features went through:
   * x = (raw / value_scale - mean[ch]) / std[ch], [c] each (0, 1 and scale 1
   * for the synthetic generator). A raw 0 (zero padding) lands on -mean/std. */
  float value_scale;
  float *mean, *std;
  fh_augment augment;  /* data.augment_*: what the train splits point to   */
} fh_dataset;

/* Deck keys of the data section. */
extern const fh_key_spec fh_data_keys[];

/* Loads (or generates) the data of clients [first_client, first_client+nlocal)
 * out of run.clients, as the deck says, and block `rank` of `nranks` of the
 * global test set. Errors: FH_ERR_DATA naming the file and what is wrong
 * (missing file, wrong layout, labels out of range, too few samples for the
 * clients), or FH_ERR_CONFIG. Collective over nothing: each rank calls it for
 * its own block. nlocal may be 0 (a rank without clients still learns the
 * sample shape and the number of classes). */
int fh_dataset_load(fh_dataset **out, const fh_config *cfg, int first_client, int nlocal, int rank, int nranks);
void fh_dataset_free(fh_dataset *ds);

/* The server's rows (data.server_fraction, data/server_split.h) cut into
 * `parts` contiguous near-equal parts: the rows of parts [p0, p1) into out
 * (x [n, dim] normalised like the clients' data, y [n]; the caller frees x and
 * y), and the number of server rows in all parts in *total. Every rank may
 * call it for its own parts; no communication. Errors: FH_ERR_CONFIG when the
 * deck holds no row out or the source is not a pool, FH_ERR_DATA as the load. */
int fh_dataset_load_server(const fh_config *cfg, int parts, int p0, int p1, fh_split *out, int64_t *total);

/* Appends extra_n[i] rows (x[i] [extra_n[i], dim], y[i] [extra_n[i]]) at the
 * end of local client i's train split, rebuilding the store; the split's
 * `generated` becomes extra_n[i] and `weight_skip` extra_n[i] when skip_weight.
 * x[i], y[i] stay the caller's (src/data/generator_merge.c). */
void fh_dataset_append_train(fh_dataset *ds, const int *extra_n, float *const *x, int32_t *const *y, int skip_weight);

/* Train and test sample counts of every client 0..run.clients-1, without loading
 * any sample (synthetic: the size draws only; pools: labels and partition).
 * train_n and test_n hold run.clients entries each. Same errors as the load. */
int fh_dataset_client_sizes(const fh_config *cfg, int *train_n, int *test_n);

#endif
