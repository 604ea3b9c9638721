/* The server's rows over ranks, shard by shard (see server_shards.h). */
#include "fl/blocks/server_shards.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "data/partition.h"

int fh_server_group_for(int nshards, int per_shard, int chunk) {
  const long long g = per_shard > 0 ? ((long long)chunk + per_shard - 1) / per_shard : 1;
  return g < 1 ? 1 : g > nshards ? nshards : (int)g;
}

int fh_server_shards_load(fh_server_shards *s, const fh_config *cfg, int rank, int nranks) {
  return fh_server_shards_load_grouped(s, cfg, rank, nranks, 1);
}

int fh_server_shards_load_grouped(fh_server_shards *s, const fh_config *cfg, int rank, int nranks, int group) {
  memset(s, 0, sizeof *s);
  s->nshards = (int)fh_cfg_int(cfg, "data.server_shards");
  s->group = group < 1 ? 1 : group > s->nshards ? s->nshards : group;
  const int ngroups = (s->nshards + s->group - 1) / s->group;
  int64_t b, e;
  fh_block_range(ngroups, nranks, rank, &b, &e);
  s->g0 = (int)b, s->g1 = (int)e;
  /* the last group may be short: clamp both ends to M (none here: s0 = s1) */
  s->s0 = s->g0 * s->group < s->nshards ? s->g0 * s->group : s->nshards;
  s->s1 = s->g1 * s->group < s->nshards ? s->g1 * s->group : s->nshards;
  FH_TRY(fh_dataset_load_server(cfg, s->nshards, s->s0, s->s1, &s->rows, &s->total));
  fh_block_range(s->total, s->nshards, s->s0, &s->first, &e);
  s->max_rows = (int)((s->total + s->nshards - 1) / s->nshards); /* shards differ by one row at most */
  if (s->total < s->nshards)
    return FH_FAIL(FH_ERR_CONFIG, "data.server_shards = %d, but the server holds only %lld rows; lower "
                                  "data.server_shards or raise data.server_fraction",
                   s->nshards, (long long)s->total);
  return 0;
}

void fh_server_shards_free(fh_server_shards *s) {
  free(s->rows.x);
  free(s->rows.y);
  memset(s, 0, sizeof *s);
}

void fh_server_shard_rows(const fh_server_shards *s, int j, int *b, int *e) {
  int64_t gb, ge;
  fh_block_range(s->total, s->nshards, j, &gb, &ge);
  *b = (int)(gb - s->first);
  *e = (int)(ge - s->first);
}

void fh_server_group_shards(const fh_server_shards *s, int g, int *j0, int *j1) {
  *j0 = g * s->group;
  *j1 = (g + 1) * s->group < s->nshards ? (g + 1) * s->group : s->nshards;
}
