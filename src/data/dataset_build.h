/* Shared by the dataset sources (not part of the public interface). */
#ifndef FH_DATASET_BUILD_H
#define FH_DATASET_BUILD_H

#include <stdint.h>

#include "data/dataset.h"

/* Allocates ds->x_store / y_store for the local clients' splits and points each
 * split into them: train of local client 0, 1, .. then test of 0, 1, ..
 * train_n/test_n: [ds->nlocal]. ds->dim must be set. */
/* FH_ERR_CONFIG (the estimate and the memory available, fh_memory_reserve)
 * when the rows cannot fit the node; nothing allocated then. */
int fh_dataset_alloc_rows(fh_dataset *ds, const int *train_n, const int *test_n);

/* The synthetic generator fills ds (name, shape, classes, samples) for the
 * clients ds->first_client .. + ds->nlocal - 1 of ds->num_clients. */
int fh_synthetic_load(fh_dataset *ds, const fh_config *cfg, uint64_t seed);

/* Sizes of all K clients' splits, [K] each. */
int fh_synthetic_sizes(const fh_config *cfg, uint64_t seed, int K, int *train_n, int *test_n);

#endif
