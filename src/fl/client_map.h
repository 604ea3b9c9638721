/* Which rank hosts which clients: balanced contiguous blocks of client ids.
 * With run.dedicated_server = true rank 0 hosts none and the K clients are
 * spread over ranks 1..P-1. Ranks left without a client (P > K) stay idle in the
 * local phase but take part in every collective. */
#ifndef FH_CLIENT_MAP_H
#define FH_CLIENT_MAP_H

typedef struct {
  int num_clients; /* K */
  int nranks;
  int dedicated_server;
} fh_client_map;

/* First client id and count hosted by rank r. */
void fh_client_block(const fh_client_map *map, int r, int *first, int *count);
/* Rank that hosts client k. */
int fh_client_owner(const fh_client_map *map, int k);

#endif
