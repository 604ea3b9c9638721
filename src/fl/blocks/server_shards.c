/* The server's rows over ranks, shard by shard (see server_shards.h). */
#include "fl/blocks/server_shards.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "data/partition.h"

int fh_server_shards_load(fh_server_shards *s, const fh_config *cfg, int rank, int nranks) {
  memset(s, 0, sizeof *s);
  s->nshards = (int)fh_cfg_int(cfg, "data.server_shards");
  int64_t b, e;
  fh_block_range(s->nshards, nranks, rank, &b, &e);
  s->s0 = (int)b, s->s1 = (int)e;
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
