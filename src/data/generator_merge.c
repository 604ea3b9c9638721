/* Generated rows into the clients' train splits: the store is rebuilt with
 * each local client's real train rows followed by its generated ones (then
 * every test split, as fh_dataset_alloc_rows lays them out), so every
 * algorithm trains on the merged split without knowing where it came from. */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "data/dataset.h"

void fh_dataset_append_train(fh_dataset *ds, const int *extra_n, float *const *x, int32_t *const *y, int skip_weight) {
  const size_t dim = (size_t)ds->dim;
  size_t rows = 0;
  for (int i = 0; i < ds->nlocal; i++)
    rows += (size_t)ds->clients[i].train.n + (size_t)extra_n[i] + (size_t)ds->clients[i].test.n;
  float *xs = fh_malloc((rows ? rows : 1) * dim * sizeof(float));
  int32_t *ys = fh_malloc((rows ? rows : 1) * sizeof(int32_t));
  size_t at = 0;
  for (int i = 0; i < ds->nlocal; i++) {
    fh_split *s = &ds->clients[i].train;
    memcpy(xs + at * dim, s->x, (size_t)s->n * dim * sizeof(float));
    memcpy(ys + at, s->y, (size_t)s->n * sizeof(int32_t));
    if (extra_n[i] > 0) {
      memcpy(xs + (at + (size_t)s->n) * dim, x[i], (size_t)extra_n[i] * dim * sizeof(float));
      memcpy(ys + at + (size_t)s->n, y[i], (size_t)extra_n[i] * sizeof(int32_t));
    }
    s->x = xs + at * dim;
    s->y = ys + at;
    s->n += extra_n[i];
    s->generated = extra_n[i];
    s->weight_skip = skip_weight ? extra_n[i] : 0;
    at += (size_t)s->n;
  }
  for (int i = 0; i < ds->nlocal; i++) {
    fh_split *s = &ds->clients[i].test;
    memcpy(xs + at * dim, s->x, (size_t)s->n * dim * sizeof(float));
    memcpy(ys + at, s->y, (size_t)s->n * sizeof(int32_t));
    s->x = xs + at * dim;
    s->y = ys + at;
    at += (size_t)s->n;
  }
  free(ds->x_store);
  free(ds->y_store);
  ds->x_store = xs;
  ds->y_store = ys;
}
