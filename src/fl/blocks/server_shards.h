/* The server's rows (data.server_fraction, data/server_split.h) spread over
 * ranks for data-parallel work: the rows are cut into M = data.server_shards
 * contiguous shards and rank r holds the contiguous block of shards
 * fh_block_range(M, P, r) (none when P > M and r is past them). Work is done
 * shard by shard, each shard's rows in fixed chunks from its start, and the
 * per-chunk results are summed in fixed point (fl/accumulate.h): which rank
 * holds a shard changes nothing, so the sums are the same on any rank count.
 *
 * Small shards make small products (a shard's minibatch of 8 rows runs an
 * MLP at a tenth of the sgemm rate), so a pass may group G consecutive shards
 * and compute a group's rows as one batch: fh_server_shards_load_grouped
 * deals whole groups to ranks, rank r holding groups fh_block_range(ceil(M /
 * G), P, r), so a group is never split between ranks and its product is the
 * same on any rank count. G = 1 is the plain load.
 *
 *   fh_server_shards s;
 *   FH_TRY(fh_server_shards_load(&s, cfg, rank, nranks));
 *   for (int j = s.s0; j < s.s1; j++) {
 *     int b, e; fh_server_shard_rows(&s, j, &b, &e);  // local rows [b, e)
 *     ...
 *   }
 */
#ifndef FH_SERVER_SHARDS_H
#define FH_SERVER_SHARDS_H

#include <stdint.h>

#include "core/config.h"
#include "data/dataset.h"

typedef struct {
  int nshards;     /* M                                              */
  int s0, s1;      /* this rank's shards [s0, s1)                     */
  int64_t total;   /* server rows in all shards                       */
  int64_t first;   /* index among them of this rank's first row       */
  int max_rows;    /* rows of the largest shard                       */
  int group;       /* G: consecutive shards dealt to ranks as one unit */
  int g0, g1;      /* this rank's groups [g0, g1): shards [g0 G, min(g1 G, M)) */
  fh_split rows;   /* this rank's rows, x [n, dim] normalised, y [n]  */
} fh_server_shards;

/* Reads this rank's shards (no communication). Errors as
 * fh_dataset_load_server. */
int fh_server_shards_load(fh_server_shards *s, const fh_config *cfg, int rank, int nranks);
/* The same with shards dealt in groups of `group` (>= 1; above M: one group). */
int fh_server_shards_load_grouped(fh_server_shards *s, const fh_config *cfg, int rank, int nranks, int group);
/* Groups of G shards such that G shards' minibatches of `per_shard` rows reach
 * at least `chunk` rows: ceil(chunk / per_shard), within [1, M]. */
int fh_server_group_for(int nshards, int per_shard, int chunk);
void fh_server_shards_free(fh_server_shards *s);

/* Local rows [*b, *e) of shard j (s0 <= j < s1). */
void fh_server_shard_rows(const fh_server_shards *s, int j, int *b, int *e);
/* Shards [*j0, *j1) of group g (g0 <= g < g1). */
void fh_server_group_shards(const fh_server_shards *s, int g, int *j0, int *j1);

#endif
