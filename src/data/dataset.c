/* The data section of a deck, and the in-memory dataset every rank fills.
 *
 * Pool sources (data/source.h) go through four steps, the same on every rank:
 * open the source (every label, no features), deal the train pool to clients
 * and each client's test rows from the test pool (data/partition.h, from the
 * seed only), read the features of this rank's clients' rows and of its block
 * of the global test pool, and normalise them per channel. A rank keeps the
 * labels and the partition (a few bytes per row) and only its own features. */
#include "data/dataset.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/log.h"
#include "core/memory.h"
#include "core/progress.h"
#include "data/dataset_build.h"
#include "data/partition.h"
#include "data/server_split.h"
#include "data/source.h"
#include "data/source_impl.h"

/* Rows per read_rows call while gathering (bounds the bounce buffer). */
#define GATHER_BYTES ((size_t)8 << 20)

const fh_key_spec fh_data_keys[] = {
    {"data.source", FH_T_ENUM, "synthetic", 0, 0, "synthetic|hdf5|idx|fmnist|cifar10|cifar100|leaf|synthimg|features",
     "where samples come from: the Synthetic(alpha,beta) generator, or a sample pool (docs/datasets.md); "
     "fmnist: Fashion-MNIST as Debian's dataset-fashion-mnist installs it (data.path may be left empty)"},
    {"data.path", FH_T_STRING, "", 0, 0, NULL,
     "hdf5: the dataset file (docs/dataset-format.md); features: the feature file (docs/features.md); idx, "
     "cifar10, cifar100, leaf: the folder of the files; fmnist: empty = /usr/share/datasets/fashion-mnist"},
    {"data.mean", FH_T_STRING, "", 0, 0, NULL,
     "per-channel mean subtracted after dividing by the value scale, 1 or C numbers (empty: the dataset's usual)"},
    {"data.std", FH_T_STRING, "", 0, 0, NULL,
     "per-channel std divided by after the mean, 1 or C numbers (empty: the dataset's usual)"},
    {"data.normalise", FH_T_BOOL, "true", 0, 0, NULL,
     "false: pixels only divided by the value scale, in [0, 1] (torchvision's ToTensor alone, as LIPS's code "
     "feeds them); data.mean and data.std must then be empty"},
    {"data.emnist_split", FH_T_ENUM, "none", 0, 0, "none|byclass|bymerge|balanced|letters|digits|mnist",
     "idx: read EMNIST's emnist-<split>-* files; none = MNIST / Fashion-MNIST file names"},
    {"data.cifar100_labels", FH_T_ENUM, "fine", 0, 0, "fine|coarse",
     "cifar100: the 100 fine classes or the 20 coarse superclasses"},
    {"data.leaf_classes", FH_T_INT, "0", 0, 1000000, NULL,
     "leaf: number of classes; 0 = 62 for 784-feature images (FEMNIST), else the largest label + 1"},
    {"data.synthimg_channels", FH_T_INT, "3", 1, 4096, NULL, "synthimg: channels C of every image"},
    {"data.synthimg_height", FH_T_INT, "32", 1, 16384, NULL, "synthimg: image height H"},
    {"data.synthimg_width", FH_T_INT, "32", 1, 16384, NULL, "synthimg: image width W"},
    {"data.synthimg_classes", FH_T_INT, "10", 2, 100000, NULL, "synthimg: number of classes"},
    {"data.synthimg_train", FH_T_INT, "50000", 1, 4294967294.0, NULL, "synthimg: rows of the train pool"},
    {"data.synthimg_test", FH_T_INT, "10000", 1, 4294967294.0, NULL, "synthimg: rows of the test pool"},
    {"data.synthimg_difficulty", FH_T_REAL, "0.5", 0, 1, NULL,
     "synthimg: 0 = every image its class prototype; 1 = strong per-sample variation and shifts"},
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
    {"data.server_fraction", FH_T_REAL, "0", 0, 0.99, NULL,
     "share of each class of the train pool held out from every client for the server (fedhpc pretrain, "
     "AugFL's regulariser); 0 = none"},
    {"data.server_shards", FH_T_INT, "16", 1, 1e6, NULL,
     "the server rows are cut into this many contiguous shards, each processed as a unit, so server-side "
     "results do not depend on the rank count; at most this many ranks share the server's work"},
    FH_KEYS_END};

int fh_dataset_alloc_rows(fh_dataset *ds, const int *train_n, const int *test_n) {
  size_t rows = 0;
  for (int i = 0; i < ds->nlocal; i++) rows += (size_t)train_n[i] + (size_t)test_n[i];
  char what[160];
  snprintf(what, sizeof what, "the data of this rank's %d clients (%zu rows of %d values)", ds->nlocal, rows, ds->dim);
  FH_TRY(fh_memory_reserve(what, (double)rows * ((double)ds->dim * sizeof(float) + sizeof(int32_t)),
                           "run more ranks (on more nodes) or fewer clients (run.clients)"));
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
  return 0;
}

static int read_clients(const fh_config *cfg, int *num_clients) {
  long long k = fh_cfg_int(cfg, "run.clients");
  if (k < 1 || k > 0x7fffffff)
    return FH_FAIL(FH_ERR_CONFIG, "run.clients = %lld: must be between 1 and 2147483647", k);
  *num_clients = (int)k;
  return 0;
}

/* ---- normalisation ------------------------------------------------------------ */

/* data.mean or data.std: empty (keep the source's), or 1 or c numbers. */
static int parse_norm(const fh_config *cfg, const char *key, int c, float *out, int *count) {
  const char *text = fh_cfg_str(cfg, key);
  *count = 0;
  const char *p = text;
  while (*p) {
    char *end;
    double v = strtod(p, &end);
    if (end == p || !isfinite(v))
      return FH_FAIL(FH_ERR_CONFIG, "%s = '%s': expected 1 or %d comma-separated numbers (one per channel)", key,
                     text, c);
    if (*count >= c)
      return FH_FAIL(FH_ERR_CONFIG, "%s = '%s' has more values than the %d channels of the data", key, text, c);
    out[(*count)++] = (float)v;
    p = end;
    while (*p == ' ') p++;
    if (*p == ',') p++;
    else if (*p != '\0')
      return FH_FAIL(FH_ERR_CONFIG, "%s = '%s': expected 1 or %d comma-separated numbers (one per channel)", key,
                     text, c);
  }
  if (*count != 0 && *count != 1 && *count != c)
    return FH_FAIL(FH_ERR_CONFIG, "%s = '%s' has %d values; give 1 (every channel) or %d (one per channel)", key,
                   text, *count, c);
  return 0;
}

/* ds->mean / std [c]: the deck's data.mean / data.std where given, else the
 * source's usual values (NULL: 0 and 1); data.normalise = false: 0 and 1. */
static int set_norm(fh_dataset *ds, const fh_config *cfg, const float *src_mean, const float *src_std) {
  const int c = ds->c;
  if (!fh_cfg_bool(cfg, "data.normalise")) {
    const char *given = fh_cfg_str(cfg, "data.mean")[0]  ? "data.mean"
                        : fh_cfg_str(cfg, "data.std")[0] ? "data.std"
                                                         : NULL;
    if (given)
      return FH_FAIL(FH_ERR_CONFIG,
                     "data.normalise = false feeds pixels in [0, 1] unnormalised, but %s = '%s' is set; remove %s "
                     "or set data.normalise = true",
                     given, fh_cfg_str(cfg, given), given);
    src_mean = src_std = NULL;
  }
  ds->mean = fh_malloc(sizeof(float) * (size_t)c);
  ds->std = fh_malloc(sizeof(float) * (size_t)c);
  float *m = fh_malloc(sizeof(float) * (size_t)c), *s = fh_malloc(sizeof(float) * (size_t)c);
  int nm = 0, ns = 0;
  int rc = parse_norm(cfg, "data.mean", c, m, &nm);
  if (rc == 0) rc = parse_norm(cfg, "data.std", c, s, &ns);
  for (int i = 0; i < c && rc == 0; i++) {
    ds->mean[i] = nm ? m[nm == 1 ? 0 : i] : src_mean ? src_mean[i] : 0.0f;
    ds->std[i] = ns ? s[ns == 1 ? 0 : i] : src_std ? src_std[i] : 1.0f;
    if (!(ds->std[i] > 0))
      rc = FH_FAIL(FH_ERR_CONFIG, "data.std = '%s': channel %d has std %g; every std must be positive",
                   fh_cfg_str(cfg, "data.std"), i, (double)ds->std[i]);
  }
  free(m);
  free(s);
  return rc;
}

/* x [n, c*h*w] = (x / value_scale - mean[ch]) / std[ch]. */
static void normalise(const fh_dataset *ds, float *x, size_t n) {
  const size_t plane = (size_t)ds->h * (size_t)ds->w;
  int identity = ds->value_scale == 1.0f;
  for (int ch = 0; ch < ds->c; ch++) identity = identity && ds->mean[ch] == 0.0f && ds->std[ch] == 1.0f;
  if (identity) return;
  for (size_t r = 0; r < n; r++) {
    float *row = x + r * (size_t)ds->dim;
    for (int ch = 0; ch < ds->c; ch++) {
      const float m = ds->mean[ch], s = ds->std[ch], scale = ds->value_scale;
      float *p = row + (size_t)ch * plane;
      for (size_t i = 0; i < plane; i++) p[i] = (p[i] / scale - m) / s;
    }
  }
}

/* ---- reading a rank's rows of a pool ------------------------------------------ */

typedef struct {
  int64_t row; /* in the pool          */
  size_t dst;  /* row of the destination */
} gather_item;

static int cmp_item(const void *a, const void *b) {
  const gather_item *x = a, *y = b;
  if (x->row != y->row) return (x->row > y->row) - (x->row < y->row);
  return (x->dst > y->dst) - (x->dst < y->dst);
}

/* Reads pool rows items[i].row of split into row items[i].dst of x [.., dim]
 * (and its label into y): the items sorted by pool row, each distinct row read
 * once, in ascending runs of at most GATHER_BYTES. */
static int gather(fh_source *src, int split, gather_item *items, size_t n, float *x, int32_t *y) {
  qsort(items, n, sizeof *items, cmp_item);
  const size_t row_bytes = sizeof(float) * (size_t)src->dim;
  const size_t chunk = GATHER_BYTES / row_bytes > 0 ? GATHER_BYTES / row_bytes : 1;
  int64_t *rows = fh_malloc(sizeof(int64_t) * (chunk < n ? chunk : (n ? n : 1)));
  float *buf = fh_malloc(row_bytes * (chunk < n ? chunk : (n ? n : 1)));
  int rc = 0;
  fh_progress pr;
  fh_progress_begin(&pr, split == FH_SPLIT_TRAIN ? "data: reading rank 0's train rows" : "data: reading rank 0's test rows",
                    (long long)n);
  for (size_t i = 0; i < n && rc == 0; fh_progress_step(&pr, (long long)i)) {
    /* distinct rows of items[i..j) */
    size_t j = i, m = 0;
    while (j < n && (m < chunk || items[j].row == rows[m - 1])) {
      if (m == 0 || items[j].row != rows[m - 1]) rows[m++] = items[j].row;
      j++;
    }
    rc = src->read_rows(src, split, rows, (int64_t)m, buf);
    for (size_t t = i, u = 0; t < j && rc == 0; t++) {
      while (rows[u] != items[t].row) u++;
      memcpy(x + items[t].dst * (size_t)src->dim, buf + u * (size_t)src->dim, row_bytes);
      y[items[t].dst] = src->labels[split][items[t].row];
    }
    i = j;
  }
  fh_progress_end(&pr);
  free(rows);
  free(buf);
  return rc;
}

/* The local clients' rows of one split, read into their place in the store. */
static int read_client_rows(fh_dataset *ds, fh_source *src, int split, const fh_client_rows *part,
                            size_t store_row0) {
  size_t total = 0;
  for (int i = 0; i < ds->nlocal; i++) {
    const int k = ds->first_client + i;
    total += (size_t)(part->offsets[k + 1] - part->offsets[k]);
  }
  gather_item *items = fh_malloc(sizeof *items * (total ? total : 1));
  size_t at = 0;
  for (int i = 0; i < ds->nlocal; i++) {
    const int k = ds->first_client + i;
    for (int64_t r = part->offsets[k]; r < part->offsets[k + 1]; r++, at++)
      items[at] = (gather_item){part->rows[r], store_row0 + at};
  }
  int rc = gather(src, split, items, total, ds->x_store, ds->y_store);
  free(items);
  return rc;
}

/* This rank's contiguous block of the whole test pool. */
static int read_global_test(fh_dataset *ds, fh_source *src, int rank, int nranks) {
  int64_t b, e;
  fh_block_range(src->n[FH_SPLIT_TEST], nranks, rank, &b, &e);
  if (e - b > INT_MAX)
    return FH_FAIL(FH_ERR_DATA, "%s: a rank's block of the test pool has %lld rows, more than 2^31-1; use more ranks",
                   src->name, (long long)(e - b));
  fh_split *g = &ds->global_test;
  g->n = (int)(e - b);
  g->x = fh_malloc(sizeof(float) * (size_t)ds->dim * (size_t)(g->n ? g->n : 1));
  g->y = fh_malloc(sizeof(int32_t) * (size_t)(g->n ? g->n : 1));
  const size_t chunk = GATHER_BYTES / (sizeof(float) * (size_t)ds->dim) + 1;
  int64_t *rows = fh_malloc(sizeof(int64_t) * chunk);
  int rc = 0;
  for (int64_t r0 = b; r0 < e && rc == 0; r0 += (int64_t)chunk) {
    int64_t m = e - r0 < (int64_t)chunk ? e - r0 : (int64_t)chunk;
    for (int64_t i = 0; i < m; i++) rows[i] = r0 + i;
    rc = src->read_rows(src, FH_SPLIT_TEST, rows, m, g->x + (size_t)(r0 - b) * (size_t)ds->dim);
  }
  if (g->n > 0) memcpy(g->y, src->labels[FH_SPLIT_TEST] + b, sizeof(int32_t) * (size_t)g->n);
  free(rows);
  return rc;
}

/* Train and test rows of every client, from the source's labels and the seed;
 * the source's natural clients when the partition method is "natural". Rows
 * held out for the server (data.server_fraction) go to no client. */
static int partition(const fh_config *cfg, uint64_t seed, const fh_source *src, int num_clients, fh_client_rows *tr,
                     fh_client_rows *te) {
  const int natural = strcmp(fh_partition_method(cfg, src->natural_clients > 0), "natural") == 0;
  if (natural && src->natural_clients > 0 && src->natural_clients != num_clients)
    return FH_FAIL(FH_ERR_DATA, "%s: the %s has %d clients (%s) but the deck asks for %d (run.clients); set run.clients = %d",
                   src->origin, fh_file_exists(src->origin) ? "file" : "data", src->natural_clients, src->natural_from,
                   num_clients, src->natural_clients);
  FH_TRY(fh_partition_check_natural(cfg, src->natural_clients, num_clients));
  const int64_t *nat_train = natural ? src->offsets[FH_SPLIT_TRAIN] : NULL;
  const int64_t *nat_test = natural ? src->offsets[FH_SPLIT_TEST] : NULL;
  FH_TRY(fh_partition_train_clients(cfg, seed, src->labels[FH_SPLIT_TRAIN], src->n[FH_SPLIT_TRAIN],
                                    src->num_classes, num_clients, nat_train, tr));
  FH_TRY(fh_partition_test(cfg, seed, tr, src->labels[FH_SPLIT_TRAIN], src->labels[FH_SPLIT_TEST],
                           src->n[FH_SPLIT_TEST], src->num_classes, nat_test, te));
  for (int k = 0; k < num_clients; k++)
    if (tr->offsets[k + 1] - tr->offsets[k] > INT_MAX || te->offsets[k + 1] - te->offsets[k] > INT_MAX)
      return FH_FAIL(FH_ERR_DATA, "%s: client %d has more than 2^31-1 samples; use more clients", src->name, k);
  return 0;
}

/* "0.4914,0.4822,0.4465" (the first channels, then ",..."). */
static void channel_text(const float *v, int c, char *out, size_t len) {
  size_t at = 0;
  out[0] = '\0';
  for (int i = 0; i < c && i < 3 && at < len; i++) at += (size_t)snprintf(out + at, len - at, "%s%g", i ? "," : "", (double)v[i]);
  if (c > 3 && at < len) snprintf(out + at, len - at, ",...");
}

/* One line on rank 0: what the run learns from and how it is scaled. */
static void describe(const fh_dataset *ds, const fh_source *src) {
  char m[64], s[64];
  channel_text(ds->mean, ds->c, m, sizeof m);
  channel_text(ds->std, ds->c, s, sizeof s);
  fh_info("data: %s, %lld train / %lld test rows of %dx%dx%d, %d classes; features (x / %g - mean) / std, mean %s, std %s",
          ds->name, (long long)src->n[FH_SPLIT_TRAIN], (long long)src->n[FH_SPLIT_TEST], ds->c, ds->h, ds->w,
          ds->num_classes, (double)ds->value_scale, m, s);
}

static int load_pool(fh_dataset *ds, const fh_config *cfg, uint64_t seed, int rank, int nranks) {
  fh_source *src = NULL;
  FH_TRY(fh_source_open(&src, cfg));
  snprintf(ds->name, sizeof ds->name, "%s", src->name);
  ds->num_classes = src->num_classes;
  ds->c = src->c;
  ds->h = src->h;
  ds->w = src->w;
  ds->dim = src->dim;
  ds->value_scale = src->value_scale;
  fh_client_rows tr = {0}, te = {0};
  int rc = set_norm(ds, cfg, src->mean, src->std);
  if (rc == 0) rc = partition(cfg, seed, src, ds->num_clients, &tr, &te);
  if (rc == 0) {
    const int nl = ds->nlocal > 0 ? ds->nlocal : 1;
    int *train_n = fh_malloc(sizeof(int) * (size_t)nl), *test_n = fh_malloc(sizeof(int) * (size_t)nl);
    size_t train_rows = 0;
    for (int i = 0; i < ds->nlocal; i++) {
      const int k = ds->first_client + i;
      train_n[i] = (int)(tr.offsets[k + 1] - tr.offsets[k]);
      test_n[i] = (int)(te.offsets[k + 1] - te.offsets[k]);
      train_rows += (size_t)train_n[i];
    }
    rc = fh_dataset_alloc_rows(ds, train_n, test_n);
    free(train_n);
    free(test_n);
    if (rc == 0) rc = read_client_rows(ds, src, FH_SPLIT_TRAIN, &tr, 0);
    if (rc == 0) rc = read_client_rows(ds, src, FH_SPLIT_TEST, &te, train_rows);
  }
  fh_client_rows_free(&tr);
  fh_client_rows_free(&te);
  if (rc == 0) rc = read_global_test(ds, src, rank, nranks);
  if (rc == 0) describe(ds, src);
  fh_source_close(src);
  if (rc != 0) return rc;

  size_t local_rows = 0;
  for (int i = 0; i < ds->nlocal; i++) local_rows += (size_t)ds->clients[i].train.n + (size_t)ds->clients[i].test.n;
  normalise(ds, ds->x_store, local_rows);
  normalise(ds, ds->global_test.x, (size_t)ds->global_test.n);
  return 0;
}

/* ---- the dataset -------------------------------------------------------------- */

/* data.augment_*: built once per rank with the dataset's normalisation (so a
 * padded pixel is a raw 0) and pointed to by every train split. */
static int attach_augment(fh_dataset *ds, const fh_config *cfg) {
  FH_TRY(fh_augment_init(&ds->augment, cfg, ds->c, ds->mean, ds->std));
  if (!fh_augment_active(&ds->augment)) return 0;
  if (ds->h == 1 && ds->w == 1 && (ds->augment.crop_pad > 0 || ds->augment.flip || ds->augment.erase_p > 0))
    return FH_FAIL(FH_ERR_CONFIG, "data.augment_*: the samples of %s are flat feature vectors [%d], not images; "
                                  "turn the augmentations off for this dataset", ds->name, ds->dim);
  ds->augment.h = ds->h;
  ds->augment.w = ds->w;
  for (int i = 0; i < ds->nlocal; i++) ds->clients[i].train.augment = &ds->augment;
  return 0;
}

int fh_dataset_load(fh_dataset **out, const fh_config *cfg, int first_client, int nlocal, int rank, int nranks) {
  *out = NULL;
  int num_clients = 0;
  FH_TRY(read_clients(cfg, &num_clients));
  if (first_client < 0 || nlocal < 0 || (long long)first_client + nlocal > num_clients)
    return FH_FAIL(FH_ERR_RUNTIME, "dataset: clients %d..%d asked for, but run.clients = %d", first_client,
                   first_client + nlocal - 1, num_clients);
  if (nranks < 1 || rank < 0 || rank >= nranks)
    return FH_FAIL(FH_ERR_RUNTIME, "dataset: rank %d of %d asked for", rank, nranks);
  uint64_t seed = (uint64_t)fh_cfg_int(cfg, "run.seed");

  fh_dataset *ds = fh_calloc(1, sizeof *ds);
  ds->num_clients = num_clients;
  ds->first_client = first_client;
  ds->nlocal = nlocal;
  ds->value_scale = 1.0f;
  ds->clients = fh_calloc((size_t)(nlocal > 0 ? nlocal : 1), sizeof *ds->clients);
  for (int i = 0; i < nlocal; i++) ds->clients[i].id = first_client + i;

  int rc;
  if (fh_source_is_pool(cfg)) {
    rc = load_pool(ds, cfg, seed, rank, nranks);
  } else {
    rc = fh_synthetic_load(ds, cfg, seed);
    if (rc == 0) rc = set_norm(ds, cfg, NULL, NULL);
    if (rc == 0) {
      size_t rows = 0;
      for (int i = 0; i < nlocal; i++) rows += (size_t)ds->clients[i].train.n + (size_t)ds->clients[i].test.n;
      normalise(ds, ds->x_store, rows);
    }
  }
  if (rc == 0) rc = attach_augment(ds, cfg);
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
  free(ds->global_test.x);
  free(ds->global_test.y);
  free(ds->mean);
  free(ds->std);
  fh_augment_free(&ds->augment);
  free(ds->clients);
  free(ds);
}

int fh_dataset_client_sizes(const fh_config *cfg, int *train_n, int *test_n) {
  int num_clients = 0;
  FH_TRY(read_clients(cfg, &num_clients));
  uint64_t seed = (uint64_t)fh_cfg_int(cfg, "run.seed");
  if (!fh_source_is_pool(cfg)) return fh_synthetic_sizes(cfg, seed, num_clients, train_n, test_n);

  fh_source *src = NULL;
  FH_TRY(fh_source_open(&src, cfg));
  fh_client_rows tr = {0}, te = {0};
  int rc = partition(cfg, seed, src, num_clients, &tr, &te);
  for (int k = 0; k < num_clients && rc == 0; k++) {
    train_n[k] = (int)(tr.offsets[k + 1] - tr.offsets[k]);
    test_n[k] = (int)(te.offsets[k + 1] - te.offsets[k]);
  }
  fh_client_rows_free(&tr);
  fh_client_rows_free(&te);
  fh_source_close(src);
  return rc;
}

/* ---- the server's rows ---------------------------------------------------------- */

int fh_dataset_load_server(const fh_config *cfg, int parts, int p0, int p1, fh_split *out, int64_t *total) {
  memset(out, 0, sizeof *out);
  *total = 0;
  if (!fh_source_is_pool(cfg))
    return FH_FAIL(FH_ERR_CONFIG, "data.source = %s has no pool to hold server rows out of; use a pool source "
                                  "(hdf5, idx, cifar10, cifar100, synthimg, ...)", fh_cfg_str(cfg, "data.source"));
  if (parts < 1 || p0 < 0 || p1 < p0 || p1 > parts)
    return FH_FAIL(FH_ERR_RUNTIME, "server rows: parts %d..%d of %d asked for", p0, p1 - 1, parts);
  fh_source *src = NULL;
  FH_TRY(fh_source_open(&src, cfg));
  const uint64_t seed = (uint64_t)fh_cfg_int(cfg, "run.seed");
  int64_t *rows = NULL, count = 0;
  int rc = fh_server_rows(cfg, seed, src->labels[FH_SPLIT_TRAIN], src->n[FH_SPLIT_TRAIN], src->num_classes, &rows,
                          &count);
  if (rc == 0 && count == 0)
    rc = FH_FAIL(FH_ERR_CONFIG, "data.server_fraction = %g holds no row of %s out for the server; set it above 0 "
                                "(e.g. 0.2)", fh_cfg_real(cfg, "data.server_fraction"), src->name);
  int64_t b = 0, e = 0, tmp;
  if (rc == 0) {
    /* parts [p0, p1) of fh_block_range: from the start of p0 to the start of p1 */
    fh_block_range(count, parts, p0, &b, &tmp);
    if (p1 < parts) fh_block_range(count, parts, p1, &e, &tmp);
    else e = count;
    if (e - b > INT_MAX)
      rc = FH_FAIL(FH_ERR_DATA, "%s: a rank's server rows number %lld, more than 2^31-1; raise data.server_shards "
                                "and the rank count", src->name, (long long)(e - b));
  }
  fh_dataset norm = {0}; /* only what the normalisation reads */
  if (rc == 0) {
    norm.c = src->c, norm.h = src->h, norm.w = src->w, norm.dim = src->dim;
    norm.value_scale = src->value_scale;
    rc = set_norm(&norm, cfg, src->mean, src->std);
  }
  if (rc == 0) {
    const size_t n = (size_t)(e - b);
    out->n = (int)n;
    out->x = fh_malloc((n ? n : 1) * (size_t)src->dim * sizeof(float));
    out->y = fh_malloc((n ? n : 1) * sizeof(int32_t));
    gather_item *items = fh_malloc((n ? n : 1) * sizeof *items);
    for (size_t i = 0; i < n; i++) items[i] = (gather_item){rows[b + (int64_t)i], i};
    rc = gather(src, FH_SPLIT_TRAIN, items, n, out->x, out->y);
    free(items);
    if (rc == 0) normalise(&norm, out->x, n);
    *total = count;
  }
  if (rc != 0) {
    free(out->x);
    free(out->y);
    memset(out, 0, sizeof *out);
  }
  free(norm.mean);
  free(norm.std);
  free(rows);
  fh_source_close(src);
  return rc;
}
