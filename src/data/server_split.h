/* Server-side data: rows of the train pool that no client ever sees, for what
 * only the server does (fedhpc pretrain trains the pretrained model on them;
 * AugFL's regulariser is evaluated on them).
 *
 * data.server_fraction = f > 0 holds out, from each class c of the train pool,
 * round(f * n_c) of its rows, chosen by a permutation from the stream (seed,
 * FH_RNG_SERVER, c, none); the partitioner then deals only the other rows to
 * clients (any partition.method but natural, whose clients own every row). The
 * test pool is untouched: clients' test rows and the global test set come from
 * it as before. Stratified, so the server sees every class in the pool's
 * proportions. Pure function of (deck, seed, labels): the same on every rank.
 *
 * The held-out rows, ascending, are cut into data.server_shards contiguous
 * near-equal shards; a rank holds whole shards (fl/blocks/server_shards.h). Both keys
 * are in the [data] table (data/dataset.c). */
#ifndef FH_SERVER_SPLIT_H
#define FH_SERVER_SPLIT_H

#include <stdint.h>

#include "core/config.h"
#include "data/partition.h"

/* The held-out rows of a train pool with labels [n] in [0, C): *rows [*count]
 * ascending, newly allocated (NULL when data.server_fraction = 0). */
int fh_server_rows(const fh_config *cfg, uint64_t seed, const int32_t *labels, int64_t n, int C,
                   int64_t **rows, int64_t *count);

/* fh_partition_train over the rows not held out; the rows it returns are rows
 * of the whole pool. FH_ERR_CONFIG when rows are held out and the partition
 * uses natural clients (natural_offsets != NULL). */
int fh_partition_train_clients(const fh_config *cfg, uint64_t seed, const int32_t *labels, int64_t n, int C,
                               int num_clients, const int64_t *natural_offsets, fh_client_rows *out);

#endif
