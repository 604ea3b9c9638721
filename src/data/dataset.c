/* The data section of a deck, and the in-memory dataset every source fills. */
#include "data/dataset.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "data/dataset_build.h"

const fh_key_spec fh_data_keys[] = {
    {"data.source", FH_T_ENUM, "synthetic", 0, 0, "synthetic|hdf5",
     "where samples come from: the Synthetic(alpha,beta) generator or an HDF5 file"},
    {"data.path", FH_T_STRING, "", 0, 0, NULL,
     "HDF5 dataset (layout in docs/dataset-format.md); required when data.source = hdf5"},
    {"data.synthetic_alpha", FH_T_REAL, "0.5", 0, 100, NULL,
     "synthetic: std of each client's model mean u_k (how much labelling differs)"},
    {"data.synthetic_beta", FH_T_REAL, "0.5", 0, 100, NULL,
     "synthetic: std of each client's feature mean B_k (how much inputs differ)"},
    {"data.synthetic_dim", FH_T_INT, "60", 1, 100000, NULL, "synthetic: features per sample"},
    {"data.synthetic_classes", FH_T_INT, "10", 2, 100000, NULL, "synthetic: number of classes"},
    {"data.synthetic_size_mu", FH_T_REAL, "4.0", -20, 20, NULL,
     "synthetic: client k has floor(lognormal(mu, sigma)) + min_samples samples"},
    {"data.synthetic_size_sigma", FH_T_REAL, "2.0", 0, 10, NULL,
     "synthetic: sigma of the lognormal client sizes"},
    {"data.synthetic_min_samples", FH_T_INT, "50", 2, 100000000, NULL,
     "synthetic: samples every client has at least (train + test)"},
    {"data.synthetic_max_samples", FH_T_INT, "0", 0, 1000000000, NULL,
     "synthetic: cap on a client's samples (0 = no cap)"},
    {"data.test_fraction", FH_T_REAL, "0.2", 0.01, 0.99, NULL,
     "synthetic: share of each client's samples held out for testing"},
    FH_KEYS_END};

void fh_dataset_alloc_rows(fh_dataset *ds, const int *train_n, const int *test_n) {
  size_t rows = 0;
  for (int i = 0; i < ds->nlocal; i++) rows += (size_t)train_n[i] + (size_t)test_n[i];
  ds->x_store = fh_malloc(rows * (size_t)ds->dim * sizeof(float));
  ds->y_store = fh_malloc(rows * sizeof(int32_t));
  size_t row = 0;
  for (int i = 0; i < ds->nlocal; i++) {
    fh_split *s = &ds->clients[i].train;
    s->n = train_n[i];
    s->x = ds->x_store + row * (size_t)ds->dim;
    s->y = ds->y_store + row;
    row += (size_t)train_n[i];
  }
  for (int i = 0; i < ds->nlocal; i++) {
    fh_split *s = &ds->clients[i].test;
    s->n = test_n[i];
    s->x = ds->x_store + row * (size_t)ds->dim;
    s->y = ds->y_store + row;
    row += (size_t)test_n[i];
  }
}

static int read_clients(const fh_config *cfg, int *num_clients) {
  long long k = fh_cfg_int(cfg, "run.clients");
  if (k < 1 || k > 0x7fffffff)
    return FH_FAIL(FH_ERR_CONFIG, "run.clients = %lld: must be between 1 and 2147483647", k);
  *num_clients = (int)k;
  return 0;
}

static int is_hdf5_source(const fh_config *cfg) { return strcmp(fh_cfg_str(cfg, "data.source"), "hdf5") == 0; }

int fh_dataset_load(fh_dataset **out, const fh_config *cfg, int first_client, int nlocal) {
  *out = NULL;
  int num_clients = 0;
  FH_TRY(read_clients(cfg, &num_clients));
  if (first_client < 0 || nlocal < 0 || (long long)first_client + nlocal > num_clients)
    return FH_FAIL(FH_ERR_RUNTIME, "dataset: clients %d..%d asked for, but run.clients = %d", first_client,
                   first_client + nlocal - 1, num_clients);
  uint64_t seed = (uint64_t)fh_cfg_int(cfg, "run.seed");

  fh_dataset *ds = fh_calloc(1, sizeof *ds);
  ds->num_clients = num_clients;
  ds->first_client = first_client;
  ds->nlocal = nlocal;
  ds->clients = fh_calloc((size_t)(nlocal > 0 ? nlocal : 1), sizeof *ds->clients);
  for (int i = 0; i < nlocal; i++) ds->clients[i].id = first_client + i;

  int rc = is_hdf5_source(cfg) ? fh_hdf5_load(ds, cfg, seed) : fh_synthetic_load(ds, cfg, seed);
  if (rc != 0) {
    fh_dataset_free(ds);
    return rc;
  }
  *out = ds;
  return 0;
}

void fh_dataset_free(fh_dataset *ds) {
  if (!ds) return;
  free(ds->x_store);
  free(ds->y_store);
  free(ds->clients);
  free(ds);
}

int fh_dataset_client_sizes(const fh_config *cfg, int *train_n, int *test_n) {
  int num_clients = 0;
  FH_TRY(read_clients(cfg, &num_clients));
  uint64_t seed = (uint64_t)fh_cfg_int(cfg, "run.seed");
  return is_hdf5_source(cfg) ? fh_hdf5_sizes(cfg, seed, num_clients, train_n, test_n)
                             : fh_synthetic_sizes(cfg, seed, num_clients, train_n, test_n);
}
