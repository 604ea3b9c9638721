#include "fl/client_map.h"

/* Worker w of W gets clients [w*K/W, (w+1)*K/W): sizes differ by at most one. */
void fh_client_block(const fh_client_map *map, int r, int *first, int *count) {
  int skip = map->dedicated_server ? 1 : 0;
  int workers = map->nranks - skip;
  int w = r - skip;
  if (w < 0 || workers <= 0) {
    *first = 0;
    *count = 0;
    return;
  }
  long long K = map->num_clients;
  long long lo = K * w / workers, hi = K * (w + 1) / workers;
  *first = (int)lo;
  *count = (int)(hi - lo);
}

int fh_client_owner(const fh_client_map *map, int k) {
  int skip = map->dedicated_server ? 1 : 0;
  int workers = map->nranks - skip;
  /* Inverse of the block formula: the largest w with w*K/W <= k. */
  long long K = map->num_clients;
  int w = (int)(((long long)k * workers + workers - 1) / K);
  if (w >= workers) w = workers - 1;
  while (w > 0 && K * w / workers > k) w--;
  while (w + 1 < workers && K * (w + 1) / workers <= k) w++;
  return w + skip;
}
