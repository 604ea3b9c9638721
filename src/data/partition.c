/* Partitioners: which rows of a labelled pool each client owns, from the
 * labels alone, deterministic from the seed. Every rank computes the whole
 * partition itself (a pure function of deck, seed and labels), so the result
 * cannot depend on the rank count.
 *
 * Methods (partition.method):
 *   iid        the pool shuffled by one permutation from (seed, FH_RNG_SPLIT,
 *              none, none) and cut into near-equal contiguous blocks, as
 *              docs/dataset-format.md documents for HDF5 files
 *   dirichlet  label skew of Hsu et al. 2019 as NIID-bench (Li et al. 2022)
 *              draws it: per class, shares over clients ~ Dir(alpha), clients
 *              already above the mean size get no more; the whole draw is
 *              repeated until every client has partition.min_size rows, at
 *              most partition.max_retries times
 *   shards     k = partition.classes_per_client distinct classes per client,
 *              each class held by the same number of clients (+-1), its rows
 *              cut into equal shares
 *   shards_pfedafm  the same class assignment (pFedHN's gen_classes_per_node,
 *              which pFedAFM uses: each pick among the classes held the least
 *              so far), with the shares of a class drawn from
 *              U(share_min, share_max) and normalised over its holders
 *   lowdata    LIPS: partition.samples_per_client rows per client with label
 *              proportions ~ Dir(alpha); a class's rows are dealt without
 *              replacement until they run out, then reshuffled and dealt again
 *   lips       LIPS as their code splits (lips_counts, train_lips): the same
 *              Dir(alpha) proportions q, counts int(s q + 0.5) with the rest
 *              to the last class, each client drawing its rows from the whole
 *              class pools on its own (clients may share rows); the test
 *              split with the same q
 *   twoclass   AugFL: after a seeded shuffle of the clients, the client in
 *              slot s holds classes 2s and 2s+1 (mod C) with base + b rows of
 *              each, b uniform in 0..size_jitter per client; with
 *              partition.train_share its rows are cut as the authors cut
 *              them (a shuffled share for train, the rest for test)
 *   quantity   quantity skew: sizes min_size + log-normal(0, size_sigma) shares
 *              of the rest, rows from one shuffle of the pool (labels iid)
 *   natural    the source's own clients (LEAF users, HDF5 client_offsets)
 *   auto       natural when the source has natural clients, else iid
 *
 * Test rows (fh_partition_test) follow each client's train label mix (see
 * test_follow); iid keeps the documented blocks of the shuffled test pool.
 *
 * Random streams: iid uses the documented (seed, FH_RNG_SPLIT, none, none);
 * everything else (seed, FH_RNG_SPLIT, who, 0x80000000 | tag << 24 | sub) with
 * who a class or a client and sub a retry, so no two draws share a stream.
 * Rows are dealt by plans (see plan below) that assign a class's rows to the
 * demand in a random order and then scan the pool in row order, so each
 * client's rows come out ascending without sorting. Cost: O(n + K*C + rows
 * dealt) per method (dirichlet: O(n + K*C) per try). */
#include "data/partition.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/rng.h"

const fh_key_spec fh_partition_keys[] = {
    {"partition.method", FH_T_ENUM, "auto", 0, 0,
     "auto|iid|dirichlet|shards|shards_pfedafm|lowdata|lips|twoclass|quantity|natural",
     "how pool rows are dealt to clients (auto: the source's natural clients if it has them, else iid); "
     "see docs/partitioners.md"},
    {"partition.alpha", FH_T_REAL, "0.5", 1e-4, 1e6, NULL,
     "dirichlet, lowdata, lips: concentration of the Dirichlet label proportions (small: few classes per client)"},
    {"partition.min_size", FH_T_INT, "10", 0, 1e9, NULL,
     "dirichlet, quantity: train rows every client must have at least"},
    {"partition.max_retries", FH_T_INT, "100", 1, 1e6, NULL,
     "dirichlet: draws tried before giving up on partition.min_size"},
    {"partition.classes_per_client", FH_T_INT, "2", 1, 1e6, NULL,
     "shards, shards_pfedafm: distinct classes per client"},
    {"partition.share_min", FH_T_REAL, "0.4", 1e-6, 1e6, NULL,
     "shards_pfedafm: a client's share of a class is drawn from U(share_min, share_max), then normalised"},
    {"partition.share_max", FH_T_REAL, "0.6", 1e-6, 1e6, NULL, "shards_pfedafm: see partition.share_min"},
    {"partition.samples_per_client", FH_T_INT, "100", 1, 1e9, NULL, "lowdata, lips: train rows of every client"},
    {"partition.class_samples", FH_T_INT, "0", 0, 1e9, NULL,
     "twoclass: base rows per class and client (0: as many as the smallest class allows)"},
    {"partition.size_jitter", FH_T_INT, "10", 0, 1e9, NULL,
     "twoclass: each client gets 0..size_jitter rows more of each of its classes"},
    {"partition.train_share", FH_T_REAL, "0", 0, 0.999, NULL,
     "twoclass: 0 = off; else a client's 2 x (base + b) rows are cut as AugFL's authors cut them: after a "
     "shuffle its first floor(train_share x rows) are its train split (from the train pool), the rest its test "
     "split (the same classes, from the test pool)"},
    {"partition.size_sigma", FH_T_REAL, "1.0", 0, 20, NULL,
     "quantity: sigma of the log-normal client sizes"},
    {"partition.test_per_client", FH_T_INT, "0", 0, 1e9, NULL,
     "test rows per client, with its train label mix (0: see partition.test_fraction; lips: required, with its "
     "train proportions q)"},
    {"partition.test_fraction", FH_T_REAL, "0", 0, 1000, NULL,
     "test rows per client = test_fraction x its train rows, with its train label mix (0 and test_per_client = "
     "0: each class's test rows shared among clients in proportion to their train rows of it; iid: blocks)"},
    FH_KEYS_END};

void fh_block_range(int64_t n, int k, int p, int64_t *begin, int64_t *end) {
  *begin = (int64_t)((__int128)n * p / k);
  *end = (int64_t)((__int128)n * (p + 1) / k);
}

int fh_test_count(int n, double test_fraction) {
  long t = lround(test_fraction * n);
  if (t < 1) t = 1;
  if (t > n - 1) t = n - 1;
  return (int)t;
}

void fh_client_rows_free(fh_client_rows *r) {
  if (!r) return;
  free(r->offsets);
  free(r->rows);
  r->offsets = NULL;
  r->rows = NULL;
  r->num_clients = 0;
}

/* ---- deck ---------------------------------------------------------------------- */

enum { M_IID, M_DIRICHLET, M_SHARDS, M_SHARDS_PFEDAFM, M_LOWDATA, M_LIPS, M_TWOCLASS, M_QUANTITY, M_NATURAL };
static const char *const method_names[] = {"iid",  "dirichlet", "shards",   "shards_pfedafm", "lowdata",
                                           "lips", "twoclass",  "quantity", "natural"};

typedef struct {
  int method;
  double alpha;
  int64_t min_size;
  int max_retries;
  int classes_per_client;
  double share_min, share_max;
  int64_t samples_per_client, class_samples, size_jitter;
  double size_sigma;
  int64_t test_per_client;
  double test_fraction;
  double train_share;
} params;

static int resolve_method(const fh_config *cfg, int has_natural) {
  const char *m = fh_cfg_str(cfg, "partition.method");
  if (strcmp(m, "auto") == 0) return has_natural ? M_NATURAL : M_IID;
  for (int i = 0; i < (int)(sizeof method_names / sizeof method_names[0]); i++)
    if (strcmp(m, method_names[i]) == 0) return i;
  return M_IID; /* unreachable: the config checked the choice */
}

const char *fh_partition_method(const fh_config *cfg, int has_natural) {
  return method_names[resolve_method(cfg, has_natural)];
}

static int read_params(const fh_config *cfg, int has_natural, params *p) {
  p->method = resolve_method(cfg, has_natural);
  p->alpha = fh_cfg_real(cfg, "partition.alpha");
  p->min_size = fh_cfg_int(cfg, "partition.min_size");
  p->max_retries = (int)fh_cfg_int(cfg, "partition.max_retries");
  p->classes_per_client = (int)fh_cfg_int(cfg, "partition.classes_per_client");
  p->share_min = fh_cfg_real(cfg, "partition.share_min");
  p->share_max = fh_cfg_real(cfg, "partition.share_max");
  p->samples_per_client = fh_cfg_int(cfg, "partition.samples_per_client");
  p->class_samples = fh_cfg_int(cfg, "partition.class_samples");
  p->size_jitter = fh_cfg_int(cfg, "partition.size_jitter");
  p->size_sigma = fh_cfg_real(cfg, "partition.size_sigma");
  p->test_per_client = fh_cfg_int(cfg, "partition.test_per_client");
  p->test_fraction = fh_cfg_real(cfg, "partition.test_fraction");
  p->train_share = fh_cfg_real(cfg, "partition.train_share");
  if (p->train_share > 0 && p->method != M_TWOCLASS)
    return FH_FAIL(FH_ERR_CONFIG, "partition.train_share = %g applies to partition.method = twoclass only (this "
                                  "deck: %s); remove it or choose twoclass",
                   p->train_share, method_names[p->method]);
  if (p->train_share > 0 && (p->test_per_client > 0 || p->test_fraction > 0))
    return FH_FAIL(FH_ERR_CONFIG, "partition.train_share = %g sets the test rows itself; remove "
                                  "partition.test_per_client and partition.test_fraction",
                   p->train_share);
  if (p->train_share > 0 && p->class_samples == 0)
    return FH_FAIL(FH_ERR_CONFIG, "partition.train_share = %g needs partition.class_samples (the authors' a, e.g. "
                                  "10) rather than 0 (as many as the pool allows)",
                   p->train_share);
  if (p->share_min > p->share_max)
    return FH_FAIL(FH_ERR_CONFIG, "partition.share_min = %g is above partition.share_max = %g; swap them",
                   p->share_min, p->share_max);
  if (p->test_per_client > 0 && p->test_fraction > 0)
    return FH_FAIL(FH_ERR_CONFIG,
                   "partition.test_per_client = %lld and partition.test_fraction = %g both set; give only one",
                   (long long)p->test_per_client, p->test_fraction);
  if (p->method == M_LIPS && p->test_per_client == 0)
    return FH_FAIL(FH_ERR_CONFIG, "partition.method = lips draws a fixed number of test rows per client with its "
                                  "train proportions: set partition.test_per_client (the authors: 400)%s",
                   p->test_fraction > 0 ? " instead of partition.test_fraction" : "");
  return 0;
}

int fh_partition_check_natural(const fh_config *cfg, int natural_clients, int num_clients) {
  const char *m = fh_cfg_str(cfg, "partition.method");
  int wants = strcmp(m, "natural") == 0;
  if (!wants && !(strcmp(m, "auto") == 0 && natural_clients > 0)) return 0;
  if (natural_clients <= 0)
    return FH_FAIL(FH_ERR_DATA,
                   "partition.method = natural, but the data source has no natural clients (LEAF users or HDF5 "
                   "client_offsets); choose another partition.method");
  if (natural_clients != num_clients)
    return FH_FAIL(FH_ERR_DATA,
                   "the data source has %d natural clients but the deck asks for %d (run.clients); set "
                   "run.clients = %d%s",
                   natural_clients, num_clients, natural_clients,
                   wants ? "" : ", or choose a partition.method other than auto/natural");
  return 0;
}

/* ---- random streams ------------------------------------------------------------ */

enum {
  TAG_CLASS_TRAIN = 1, /* a class's train rows shuffled (who = class)      */
  TAG_CLASS_TEST,      /* a class's test rows shuffled (who = class)       */
  TAG_DIRICHLET,       /* a class's shares over clients (who = class, sub = try) */
  TAG_ASSIGN,          /* classes of each client (shards)                  */
  TAG_SHARES,          /* pFedAFM shares of a class's holders (who = class) */
  TAG_LOWDATA,         /* a client's label proportions (who = client)      */
  TAG_TWOCLASS,        /* client order (who = none) and sizes (who = client) */
  TAG_QUANTITY,        /* a client's size (who = client), the shuffle (none) */
  TAG_LIPS             /* lips: q (who = client, sub 0), rows (sub 1 train, 2 test) */
};

static void split_stream(fh_rng *r, uint64_t seed, uint32_t tag, uint32_t who, uint32_t sub) {
  fh_rng_init(r, seed, FH_RNG_SPLIT, who, 0x80000000u | (tag << 24) | (sub & 0xffffffu));
}

/* Gamma(a, 1) by Marsaglia and Tsang (2000); a < 1 through Gamma(a+1) U^(1/a). */
static double gamma_draw(fh_rng *r, double a) {
  if (a < 1.0) {
    double u = fh_rng_uniform(r);
    return gamma_draw(r, a + 1.0) * pow(u, 1.0 / a);
  }
  double d = a - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d);
  for (;;) {
    double x, v;
    do {
      x = fh_rng_normal(r);
      v = 1.0 + c * x;
    } while (v <= 0.0);
    v = v * v * v;
    double u = fh_rng_uniform(r);
    if (u < 1.0 - 0.0331 * x * x * x * x) return d * v;
    if (log(u) < 0.5 * x * x + d * (1.0 - v + log(v))) return d * v;
  }
}

/* Fisher-Yates (the draws and swaps of fh_rng_permutation, i from n-1 down),
 * with each j drawn AHEAD swaps early so that a[j], a cache miss on a large
 * array, is prefetched by the time it is swapped. */
#define AHEAD 32
#define DEFINE_SHUFFLE(name, T)                                                  \
  static void name(fh_rng *r, T *a, int64_t n) {                                 \
    uint32_t ring[AHEAD];                                                        \
    for (int64_t t = 0; t < AHEAD && n - 1 - t > 0; t++) {                       \
      ring[t] = fh_rng_below(r, (uint32_t)(n - t));                              \
      __builtin_prefetch(&a[ring[t]], 1);                                        \
    }                                                                            \
    for (int64_t i = n - 1, t = 0; i > 0; i--, t++) {                            \
      uint32_t j = ring[t % AHEAD];                                              \
      if (i - AHEAD > 0) {                                                       \
        ring[t % AHEAD] = fh_rng_below(r, (uint32_t)(i - AHEAD + 1));           \
        __builtin_prefetch(&a[ring[t % AHEAD]], 1);                              \
      }                                                                          \
      T v = a[i];                                                                \
      a[i] = a[j];                                                               \
      a[j] = v;                                                                  \
    }                                                                            \
  }
DEFINE_SHUFFLE(shuffle_i32, int32_t)
DEFINE_SHUFFLE(shuffle_int, int)

/* fh_rng_permutation, faster on large n (the same numbers). */
static void permutation(fh_rng *r, int *perm, int64_t n) {
  for (int64_t i = 0; i < n; i++) perm[i] = (int)i;
  shuffle_int(r, perm, n);
}

/* Classes of rows[b .. e-1] counted into cnt [C]. The rows lie scattered
 * over a large label array: labels are prefetched 32 rows ahead, past e
 * while rows[] lasts (up to total). */
static void count_classes(const int32_t *labels, const int64_t *rows, int64_t b, int64_t e, int64_t total,
                          int64_t *cnt) {
  for (int64_t i = b; i < e; i++) {
    if (i + 32 < total) __builtin_prefetch(&labels[rows[i + 32]]);
    cnt[labels[rows[i]]]++;
  }
}

/* out[i] = floor(total * W_i / W) - floor(total * W_{i-1} / W), W_i the
 * cumulative weights: the counts sum to total exactly and each is within one
 * of total * w_i / W. */
static void apportion(int64_t total, const double *w, int n, int64_t *out) {
  double sum = 0;
  for (int i = 0; i < n; i++) sum += w[i];
  double cum = 0;
  int64_t prev = 0;
  for (int i = 0; i < n; i++) {
    cum += w[i];
    int64_t cut = i == n - 1 ? total : (int64_t)floor((double)total * (cum / sum));
    if (cut < prev) cut = prev;
    if (cut > total) cut = total;
    out[i] = cut - prev;
    prev = cut;
  }
}

/* The same with integer weights (exact). */
static void apportion_int(int64_t total, const int64_t *w, int n, int64_t *out) {
  __int128 sum = 0, cum = 0;
  for (int i = 0; i < n; i++) sum += w[i];
  int64_t prev = 0;
  for (int i = 0; i < n; i++) {
    cum += w[i];
    int64_t cut = (int64_t)((__int128)total * cum / sum);
    out[i] = cut - prev;
    prev = cut;
  }
}

/* ---- from owners to the CSR --------------------------------------------------- */

/* Offsets [K+1] from sizes [K]. */
static int64_t *offsets_from(const int64_t *sizes, int K) {
  int64_t *off = fh_malloc(((size_t)K + 1) * sizeof(int64_t));
  off[0] = 0;
  for (int k = 0; k < K; k++) off[k + 1] = off[k] + sizes[k];
  return off;
}

/* Rows given by their owner (owner[r] = client, or -1): a scan of the pool in
 * row order writes each row behind its client's cursor, so every client's rows
 * come out ascending without sorting. sizes [K] must match the owners. */
static void csr_from_owner(const int32_t *owner, int64_t n, int K, const int64_t *sizes, fh_client_rows *out) {
  out->num_clients = K;
  out->offsets = offsets_from(sizes, K);
  out->rows = fh_malloc((size_t)(out->offsets[K] > 0 ? out->offsets[K] : 1) * sizeof(int64_t));
  int64_t *cursor = fh_malloc((size_t)K * sizeof(int64_t));
  memcpy(cursor, out->offsets, (size_t)K * sizeof(int64_t));
  for (int64_t r = 0; r < n; r++)
    if (owner[r] >= 0) out->rows[cursor[owner[r]]++] = r;
  free(cursor);
}

/* A dealing plan over a labelled pool. Each class's demand is a sequence of
 * owners (client k, count times), appended in dealing order; at the end the
 * sequence is cut into passes of N_c positions (the last one padded with
 * "nobody") and each pass shuffled, and the j-th row of class c (in row
 * order) goes to the owner at position j of every pass. One pass is a uniform
 * random assignment of rows to the demand, without replacement; a class asked
 * for more rows than it has is dealt again in further passes: sampling with
 * replacement, and only then. The final scan in row order yields every
 * client's rows ascending: O(n + rows dealt), no sorting. */
typedef struct {
  int C, K;
  int64_t n;
  const int32_t *labels;
  int64_t *size;        /* [C] rows of each class in the pool */
  int32_t **seq;        /* [C] owners in dealing order */
  int64_t *len, *cap;   /* [C] */
  int64_t *client_rows; /* [K] rows dealt to each client */
} plan;

static void plan_init(plan *pl, const int32_t *labels, int64_t n, int C, int K) {
  pl->C = C;
  pl->K = K;
  pl->n = n;
  pl->labels = labels;
  pl->size = fh_calloc((size_t)C, sizeof(int64_t));
  for (int64_t r = 0; r < n; r++) pl->size[labels[r]]++;
  pl->seq = fh_calloc((size_t)C, sizeof(int32_t *));
  pl->len = fh_calloc((size_t)C, sizeof(int64_t));
  pl->cap = fh_calloc((size_t)C, sizeof(int64_t));
  pl->client_rows = fh_calloc((size_t)K, sizeof(int64_t));
}

static void plan_free(plan *pl) {
  for (int c = 0; c < pl->C; c++) free(pl->seq[c]);
  free(pl->seq);
  free(pl->size);
  free(pl->len);
  free(pl->cap);
  free(pl->client_rows);
}

static void plan_reserve(plan *pl, int c, int64_t need) {
  if (need <= pl->cap[c]) return;
  int64_t cap = pl->cap[c] > 0 ? pl->cap[c] : 64;
  while (cap < need) cap *= 2;
  int32_t *grown = realloc(pl->seq[c], (size_t)cap * sizeof(int32_t));
  if (!grown) { /* as fh_malloc: the message, and the run stops */
    fprintf(stderr, "fedhpc: error: out of memory growing the row plan of class %d to %lld rows\n", c, (long long)cap);
    MPI_Abort(MPI_COMM_WORLD, FH_ERR_RUNTIME);
    abort();
  }
  pl->seq[c] = grown;
  pl->cap[c] = cap;
}

/* Client k takes count rows of class c (which must have rows). */
static void plan_deal(plan *pl, int c, int k, int64_t count) {
  if (count <= 0) return;
  plan_reserve(pl, c, pl->len[c] + count);
  int32_t *s = pl->seq[c] + pl->len[c];
  for (int64_t i = 0; i < count; i++) s[i] = k;
  pl->len[c] += count;
  pl->client_rows[k] += count;
}

/* Shuffles each class's passes with the stream (seed, tag, class) and builds
 * the CSR. */
static void plan_finish(plan *pl, uint64_t seed, uint32_t tag, fh_client_rows *out) {
  int C = pl->C;
  int64_t *passes = fh_calloc((size_t)C, sizeof(int64_t));
  for (int c = 0; c < C; c++) {
    int64_t N = pl->size[c];
    if (pl->len[c] == 0 || N == 0) continue;
    passes[c] = (pl->len[c] + N - 1) / N;
    plan_reserve(pl, c, passes[c] * N);
    for (int64_t i = pl->len[c]; i < passes[c] * N; i++) pl->seq[c][i] = -1;
    fh_rng r;
    split_stream(&r, seed, tag, (uint32_t)c, 0);
    for (int64_t p = 0; p < passes[c]; p++) shuffle_i32(&r, pl->seq[c] + p * N, N);
  }
  int K = pl->K;
  out->num_clients = K;
  out->offsets = offsets_from(pl->client_rows, K);
  out->rows = fh_malloc((size_t)(out->offsets[K] > 0 ? out->offsets[K] : 1) * sizeof(int64_t));
  int64_t *cursor = fh_malloc((size_t)K * sizeof(int64_t));
  memcpy(cursor, out->offsets, (size_t)K * sizeof(int64_t));
  /* rank[c]: rows of class c seen so far; lead[c]: the same 64 rows ahead,
   * to prefetch the cursor of the client that will take that row */
  int64_t *rank = fh_calloc((size_t)C, sizeof(int64_t)), *lead = fh_calloc((size_t)C, sizeof(int64_t));
  for (int64_t r = 0; r < pl->n + 64; r++) {
    if (r < pl->n) {
      int c = pl->labels[r];
      int64_t j = lead[c]++;
      if (passes[c] > 0 && pl->seq[c][j] >= 0) __builtin_prefetch(&cursor[pl->seq[c][j]], 1);
    }
    if (r < 64) continue;
    int64_t row = r - 64;
    int c = pl->labels[row];
    int64_t j = rank[c]++;
    for (int64_t p = 0; p < passes[c]; p++) {
      int32_t k = pl->seq[c][p * pl->size[c] + j];
      if (k >= 0) out->rows[cursor[k]++] = row;
    }
  }
  free(rank);
  free(lead);
  free(cursor);
  free(passes);
}

/* ---- train methods ------------------------------------------------------------ */

typedef struct {
  const params *p;
  uint64_t seed;
  const int32_t *labels;
  int64_t n;
  int C, K;
} job;

/* The documented IID split: permutation (seed, FH_RNG_SPLIT, none, none) of
 * the pool, client k owning positions floor(kn/K) .. floor((k+1)n/K)-1. */
static void train_iid(const job *j, fh_client_rows *out) {
  int *perm = fh_malloc((size_t)(j->n > 0 ? j->n : 1) * sizeof(int));
  fh_rng r;
  fh_rng_init(&r, j->seed, FH_RNG_SPLIT, FH_RNG_NONE, FH_RNG_NONE);
  permutation(&r, perm, j->n);
  int32_t *owner = fh_malloc((size_t)(j->n > 0 ? j->n : 1) * sizeof(int32_t));
  int64_t *sizes = fh_malloc((size_t)j->K * sizeof(int64_t));
  for (int k = 0; k < j->K; k++) {
    int64_t b, e;
    fh_block_range(j->n, j->K, k, &b, &e);
    sizes[k] = e - b;
    for (int64_t i = b; i < e; i++) owner[perm[i]] = k;
  }
  free(perm);
  csr_from_owner(owner, j->n, j->K, sizes, out);
  free(owner);
  free(sizes);
}

/* One class of one Dirichlet draw: shares of the class's Nc rows over the K
 * clients ~ Dir(alpha); clients already at or above the mean size n/K get none
 * (NIID-bench's balance rule). Each client's part is floor(Nc * cumulative
 * share) minus the previous cut, added to sizes [K] (and dealt with pl). g [K]
 * is scratch. */
static void dirichlet_class(const job *j, int c, int attempt, int64_t Nc, int64_t *sizes, double *g, plan *pl) {
  fh_rng r;
  split_stream(&r, j->seed, TAG_DIRICHLET, (uint32_t)c, (uint32_t)attempt);
  double sum = 0, raw = 0;
  for (int k = 0; k < j->K; k++) {
    g[k] = gamma_draw(&r, j->p->alpha);
    raw += g[k];
    if ((__int128)sizes[k] * j->K < j->n) sum += g[k];
  }
  int lone = (int)fh_rng_below(&r, (uint32_t)j->K);
  /* Every client at the mean already: no balance rule for this class; every
   * draw underflowed (tiny alpha): the class goes to one client. */
  int balance = sum > 0, single = !(raw > 0);
  if (!balance) sum = single ? 1.0 : raw;
  double cum = 0;
  int64_t prev = 0;
  for (int k = 0; k < j->K; k++) {
    if (single) cum += k == lone;
    else if (!balance || (__int128)sizes[k] * j->K < j->n) cum += g[k];
    int64_t cut = k == j->K - 1 ? Nc : (int64_t)floor((double)Nc * (cum / sum));
    if (cut < prev) cut = prev;
    if (cut > Nc) cut = Nc;
    if (pl) plan_deal(pl, c, k, cut - prev);
    sizes[k] += cut - prev;
    prev = cut;
  }
}

static int train_dirichlet(const job *j, fh_client_rows *out) {
  const params *p = j->p;
  /* every client needs a row, and partition.min_size rows when it is larger */
  const int64_t need = p->min_size > 1 ? p->min_size : 1;
  if ((__int128)need * j->K > j->n)
    return FH_FAIL(FH_ERR_CONFIG,
                   "partition.method = dirichlet with partition.min_size = %lld for run.clients = %d needs %lld "
                   "train rows (at least one per client), the pool has %lld; lower partition.min_size or "
                   "run.clients",
                   (long long)p->min_size, j->K, (long long)((__int128)need * j->K), (long long)j->n);
  plan pl;
  plan_init(&pl, j->labels, j->n, j->C, j->K);
  int64_t *sizes = fh_malloc((size_t)j->K * sizeof(int64_t));
  double *g = fh_malloc((size_t)j->K * sizeof(double));
  int found = -1;
  int64_t smallest = 0;
  for (int t = 0; t < p->max_retries && found < 0; t++) {
    memset(sizes, 0, (size_t)j->K * sizeof(int64_t));
    for (int c = 0; c < j->C; c++) dirichlet_class(j, c, t, pl.size[c], sizes, g, NULL);
    smallest = sizes[0];
    for (int k = 1; k < j->K; k++)
      if (sizes[k] < smallest) smallest = sizes[k];
    if (smallest >= p->min_size && smallest >= 1) found = t;
  }
  int rc = 0;
  if (found < 0) {
    rc = FH_FAIL(FH_ERR_CONFIG,
                 "partition.method = dirichlet: after %d draws (partition.max_retries) the smallest client still "
                 "had %lld train rows, below partition.min_size = %lld; raise partition.alpha or "
                 "partition.max_retries, or lower partition.min_size or run.clients",
                 p->max_retries, (long long)smallest, (long long)(p->min_size > 1 ? p->min_size : 1));
  } else {
    /* replay the successful draw, this time dealing the rows */
    memset(sizes, 0, (size_t)j->K * sizeof(int64_t));
    for (int c = 0; c < j->C; c++) dirichlet_class(j, c, found, pl.size[c], sizes, g, &pl);
    plan_finish(&pl, j->seed, TAG_CLASS_TRAIN, out);
  }
  free(sizes);
  free(g);
  plan_free(&pl);
  return rc;
}

/* pFedHN's class assignment: each of a client's k picks is uniform among the
 * classes picked least so far (a pool refilled with all C classes whenever it
 * empties), excluding classes the client already holds, so every client has
 * k distinct classes and every class k*K/C holders (+-1). picks [K*k]. */
static void assign_classes(uint64_t seed, int K, int C, int k, int32_t *picks) {
  fh_rng r;
  split_stream(&r, seed, TAG_ASSIGN, FH_RNG_NONE, 0);
  int32_t *pool = fh_malloc((size_t)C * sizeof(int32_t));
  unsigned char *held = fh_calloc((size_t)C, 1);
  int avail = 0;
  for (int i = 0; i < K; i++) {
    int32_t *mine = picks + (size_t)i * k;
    for (int q = 0; q < k; q++) {
      if (avail == 0) {
        for (int c = 0; c < C; c++) pool[c] = c;
        avail = C;
      }
      /* eligible = pool entries the client does not hold; at least one (k <= C) */
      int u = -1;
      for (int tries = 0; tries < 16 && u < 0; tries++) {
        int v = (int)fh_rng_below(&r, (uint32_t)avail);
        if (!held[pool[v]]) u = v;
      }
      if (u < 0) {
        int eligible = 0;
        for (int v = 0; v < avail; v++) eligible += !held[pool[v]];
        int want = (int)fh_rng_below(&r, (uint32_t)eligible);
        for (int v = 0; v < avail && u < 0; v++)
          if (!held[pool[v]] && want-- == 0) u = v;
      }
      mine[q] = pool[u];
      held[pool[u]] = 1;
      pool[u] = pool[--avail];
    }
    for (int q = 0; q < k; q++) held[mine[q]] = 0;
  }
  free(pool);
  free(held);
}

static int train_shards(const job *j, int pfedafm, fh_client_rows *out) {
  const params *p = j->p;
  int k = p->classes_per_client;
  if (k > j->C)
    return FH_FAIL(FH_ERR_CONFIG, "partition.classes_per_client = %d, but the data has only %d classes; lower it", k,
                   j->C);
  size_t npicks = (size_t)j->K * (size_t)k;
  int32_t *picks = fh_malloc(npicks * sizeof(int32_t));
  assign_classes(j->seed, j->K, j->C, k, picks);

  /* holders of each class, in client order: CSR by class */
  int64_t *hstart = fh_calloc((size_t)j->C + 1, sizeof(int64_t));
  for (size_t i = 0; i < npicks; i++) hstart[picks[i] + 1]++;
  for (int c = 0; c < j->C; c++) hstart[c + 1] += hstart[c];
  int32_t *holder = fh_malloc(npicks * sizeof(int32_t));
  int64_t *at = fh_malloc((size_t)j->C * sizeof(int64_t));
  memcpy(at, hstart, (size_t)j->C * sizeof(int64_t));
  for (size_t i = 0; i < npicks; i++) holder[at[picks[i]]++] = (int32_t)(i / (size_t)k);
  free(at);
  free(picks);

  /* each holder's part of its class: equal, or U(share_min, share_max) normalised */
  plan pl;
  plan_init(&pl, j->labels, j->n, j->C, j->K);
  int64_t *part = fh_malloc((npicks > 0 ? npicks : 1) * sizeof(int64_t));
  double *w = fh_malloc((npicks > 0 ? npicks : 1) * sizeof(double));
  int rc = 0;
  for (int c = 0; c < j->C && rc == 0; c++) {
    int64_t m = hstart[c + 1] - hstart[c], Nc = pl.size[c];
    if (m == 0) continue;
    fh_rng r;
    split_stream(&r, j->seed, TAG_SHARES, (uint32_t)c, 0);
    for (int64_t h = 0; h < m; h++)
      w[h] = pfedafm ? p->share_min + (p->share_max - p->share_min) * fh_rng_uniform(&r) : 1.0;
    apportion(Nc, w, (int)m, part);
    for (int64_t h = 0; h < m && rc == 0; h++) {
      if (part[h] == 0)
        rc = FH_FAIL(FH_ERR_DATA,
                     "partition.method = %s: class %d has %lld train rows for the %lld clients that hold it, so "
                     "client %d gets none; lower partition.classes_per_client or run.clients",
                     method_names[p->method], c, (long long)Nc, (long long)m, holder[hstart[c] + h]);
      plan_deal(&pl, c, holder[hstart[c] + h], part[h]);
    }
  }
  if (rc == 0) plan_finish(&pl, j->seed, TAG_CLASS_TRAIN, out);
  plan_free(&pl);
  free(w);
  free(part);
  free(holder);
  free(hstart);
  return rc;
}

/* Dirichlet(alpha) proportions over the classes present in the pool (absent
 * classes get 0); if every draw underflows (tiny alpha), one present class. */
static void client_mix(fh_rng *r, double alpha, const int64_t *size, int C, double *q) {
  double sum = 0;
  for (int c = 0; c < C; c++) {
    double x = gamma_draw(r, alpha);
    q[c] = size[c] > 0 ? x : 0;
    sum += q[c];
  }
  uint32_t pick = fh_rng_below(r, (uint32_t)C);
  if (sum > 0) return;
  while (size[pick] == 0) pick = (pick + 1) % (uint32_t)C;
  for (int c = 0; c < C; c++) q[c] = c == (int)pick;
}

static int train_lowdata(const job *j, fh_client_rows *out) {
  if (j->n == 0) return FH_FAIL(FH_ERR_DATA, "partition.method = lowdata: the train pool is empty");
  plan pl;
  plan_init(&pl, j->labels, j->n, j->C, j->K);
  double *q = fh_malloc((size_t)j->C * sizeof(double));
  int64_t *cnt = fh_malloc((size_t)j->C * sizeof(int64_t));
  for (int k = 0; k < j->K; k++) {
    fh_rng r;
    split_stream(&r, j->seed, TAG_LOWDATA, (uint32_t)k, 0);
    client_mix(&r, j->p->alpha, pl.size, j->C, q);
    apportion(j->p->samples_per_client, q, j->C, cnt);
    for (int c = 0; c < j->C; c++) plan_deal(&pl, c, k, cnt[c]);
  }
  plan_finish(&pl, j->seed, TAG_CLASS_TRAIN, out);
  plan_free(&pl);
  free(q);
  free(cnt);
  return 0;
}

/* ---- lips: the authors' own split ------------------------------------------------ */

static int cmp_row(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

void fh_lips_class_counts(const double *q, int last, int64_t s, int64_t *cnt) {
  int64_t dealt = 0;
  for (int c = 0; c <= last; c++) {
    int64_t want = s - dealt;
    if (c < last) {
      want = (int64_t)floor((double)s * q[c] + 0.5); /* their int(s * q + 0.5) */
      if (want > s - dealt) want = s - dealt;
      if (want < 0) want = 0;
    }
    cnt[c] = want;
    dealt += want;
  }
}

/* Client k's class counts in LIPS's split: q ~ Dir(alpha) from the stream
 * (seed, TAG_LIPS, k, 0), the same for the train and the test split (their
 * code reseeds both splits with one seed), normalised, then
 * fh_lips_class_counts. Classes absent from the pool get q_c = 0
 * (client_mix); the rest goes to the last class present (their code would
 * ask an absent last class for it and fail). cnt [C] sums to s. */
static void lips_counts(uint64_t seed, int k, double alpha, const int64_t *size, int C, int64_t s, double *q,
                        int64_t *cnt) {
  fh_rng r;
  split_stream(&r, seed, TAG_LIPS, (uint32_t)k, 0);
  client_mix(&r, alpha, size, C, q);
  double sum = 0;
  for (int c = 0; c < C; c++) sum += q[c];
  for (int c = 0; c < C; c++) q[c] /= sum;
  int last = C - 1;
  while (last > 0 && size[last] == 0) last--;
  for (int c = last + 1; c < C; c++) cnt[c] = 0;
  fh_lips_class_counts(q, last, s, cnt);
}

/* LIPS's split of one pool: every client draws cnt_c rows of each class c
 * from the whole class pool (N_c rows) with its own stream
 * (seed, TAG_LIPS, k, sub): distinct rows by Floyd's algorithm when
 * cnt_c <= N_c, else cnt_c independent uniform picks (numpy's
 * choice(replace = cnt_c > N_c), as theirs). Clients draw independently, so
 * two clients may hold the same row. Each client's rows are then sorted.
 * O(n + K s log s). */
static void split_lips(const params *p, uint64_t seed, const int32_t *labels, int64_t n, int C, int K, int64_t s,
                       uint32_t sub, fh_client_rows *out) {
  int64_t *size = fh_calloc((size_t)C, sizeof(int64_t)), *start = fh_calloc((size_t)C + 1, sizeof(int64_t));
  for (int64_t r = 0; r < n; r++) size[labels[r]]++;
  for (int c = 0; c < C; c++) start[c + 1] = start[c] + size[c];
  /* class_rows: the rows of class c ascending at start[c] .. start[c+1]-1 */
  int64_t *class_rows = fh_malloc((size_t)(n > 0 ? n : 1) * sizeof(int64_t)), *cur = fh_malloc((size_t)C * sizeof(int64_t));
  memcpy(cur, start, (size_t)C * sizeof(int64_t));
  for (int64_t r = 0; r < n; r++) class_rows[cur[labels[r]]++] = r;
  unsigned char *taken = fh_calloc((size_t)(n > 0 ? n : 1), 1); /* by position in class_rows */
  double *q = fh_malloc((size_t)C * sizeof(double));
  int64_t *cnt = fh_malloc((size_t)C * sizeof(int64_t));
  out->num_clients = K;
  out->offsets = fh_malloc(((size_t)K + 1) * sizeof(int64_t));
  out->rows = fh_malloc((size_t)(K * s > 0 ? K * s : 1) * sizeof(int64_t));
  for (int k = 0; k <= K; k++) out->offsets[k] = (int64_t)k * s;
  for (int k = 0; k < K; k++) {
    lips_counts(seed, k, p->alpha, size, C, s, q, cnt);
    fh_rng r;
    split_stream(&r, seed, TAG_LIPS, (uint32_t)k, sub);
    int64_t *dst = out->rows + (int64_t)k * s, got = 0;
    for (int c = 0; c < C; c++) {
      const int64_t N = size[c], *pool = class_rows + start[c];
      unsigned char *tk = taken + start[c];
      if (cnt[c] > N) { /* with replacement */
        for (int64_t i = 0; i < cnt[c]; i++) dst[got++] = pool[fh_rng_below(&r, (uint32_t)N)];
        continue;
      }
      int64_t first = got;
      for (int64_t j = N - cnt[c]; j < N; j++) { /* Floyd: cnt[c] distinct positions of N */
        int64_t t = fh_rng_below(&r, (uint32_t)(j + 1));
        if (tk[t]) t = j;
        tk[t] = 1;
        dst[got++] = t;
      }
      for (int64_t i = first; i < got; i++) { /* positions -> rows; taken cleared for the next client */
        tk[dst[i]] = 0;
        dst[i] = pool[dst[i]];
      }
    }
    qsort(dst, (size_t)got, sizeof(int64_t), cmp_row);
  }
  free(size);
  free(start);
  free(class_rows);
  free(cur);
  free(taken);
  free(q);
  free(cnt);
}

static int train_lips(const job *j, fh_client_rows *out) {
  if (j->n == 0) return FH_FAIL(FH_ERR_DATA, "partition.method = lips: the train pool is empty");
  split_lips(j->p, j->seed, j->labels, j->n, j->C, j->K, j->p->samples_per_client, 1, out);
  return 0;
}

/* twoclass's draw, the same for the train and the test split: the client in
 * slot slot[k] holds classes 2 slot[k] and 2 slot[k] + 1 (mod C), with
 * base + extra[k] rows of each. */
typedef struct {
  int *slot;      /* [K] */
  int64_t *extra; /* [K] */
} twoclass_draw;

static void twoclass_draw_make(uint64_t seed, int K, int64_t size_jitter, twoclass_draw *d) {
  d->slot = fh_malloc((size_t)K * sizeof(int));
  d->extra = fh_malloc((size_t)K * sizeof(int64_t));
  fh_rng r;
  split_stream(&r, seed, TAG_TWOCLASS, FH_RNG_NONE, 0);
  fh_rng_permutation(&r, d->slot, K);
  for (int k = 0; k < K; k++) {
    split_stream(&r, seed, TAG_TWOCLASS, (uint32_t)k, 0);
    d->extra[k] = (int64_t)fh_rng_below(&r, (uint32_t)size_jitter + 1u);
  }
}

static void twoclass_draw_free(twoclass_draw *d) {
  free(d->slot);
  free(d->extra);
}

static int twoclass_class(const twoclass_draw *d, int k, int h, int C) {
  return (int)((2 * (int64_t)d->slot[k] + h) % C);
}

/* partition.train_share: client k's 2 n rows (n = base + extra[k] of each of
 * its classes, in class order) shuffled with the stream (seed, TAG_TWOCLASS,
 * k, 1); the first floor(share x 2 n) are its train split. tr[h] gets how
 * many of class h (0, 1) that leaves in the train split; the test split
 * holds the other n - tr[h] of each. */
static void twoclass_train_counts(uint64_t seed, int k, int64_t n, double share, int64_t tr[2]) {
  const int64_t total = 2 * n, ntr = (int64_t)floor(share * (double)total);
  fh_rng r;
  split_stream(&r, seed, TAG_TWOCLASS, (uint32_t)k, 1);
  /* a shuffle's first ntr entries, drawn one by one (sequential sampling
   * without replacement): class 0 with probability left0 / left */
  int64_t left0 = n, left = total;
  tr[0] = tr[1] = 0;
  for (int64_t i = 0; i < ntr; i++, left--) {
    if ((int64_t)fh_rng_below(&r, (uint32_t)left) < left0) {
      tr[0]++;
      left0--;
    } else {
      tr[1]++;
    }
  }
}

static int train_twoclass(const job *j, fh_client_rows *out) {
  const params *p = j->p;
  if (j->C < 2)
    return FH_FAIL(FH_ERR_DATA,
                   "partition.method = twoclass gives each client two classes, but the pool's train rows have %d "
                   "class%s; choose another partition.method or a pool with two classes or more",
                   j->C, j->C == 1 ? "" : "es");
  plan pl;
  plan_init(&pl, j->labels, j->n, j->C, j->K);
  twoclass_draw d;
  twoclass_draw_make(j->seed, j->K, p->size_jitter, &d);
  int64_t *holders = fh_calloc((size_t)j->C, sizeof(int64_t)), *extras = fh_calloc((size_t)j->C, sizeof(int64_t));
  for (int k = 0; k < j->K; k++)
    for (int h = 0; h < 2; h++) {
      int c = twoclass_class(&d, k, h, j->C);
      holders[c]++;
      extras[c] += d.extra[k];
    }
  /* base rows per class: the deck's, or the most the tightest class allows */
  int64_t base = p->class_samples;
  int rc = 0;
  if (base == 0) {
    int tight = -1;
    base = INT64_MAX;
    for (int c = 0; c < j->C; c++) {
      if (holders[c] == 0) continue;
      int64_t b = (pl.size[c] - extras[c]) / holders[c];
      if (b < base) {
        base = b;
        tight = c;
      }
    }
    if (base < 1)
      rc = FH_FAIL(FH_ERR_DATA,
                   "partition.method = twoclass: class %d has %lld train rows for its %lld clients (plus up to "
                   "partition.size_jitter = %lld extra each); lower run.clients or partition.size_jitter",
                   tight, (long long)pl.size[tight], (long long)holders[tight], (long long)p->size_jitter);
  } else {
    for (int c = 0; c < j->C && rc == 0; c++)
      if (holders[c] * base + extras[c] > pl.size[c])
        rc = FH_FAIL(FH_ERR_CONFIG,
                     "partition.method = twoclass: class %d has %lld train rows but its %lld clients need %lld "
                     "(partition.class_samples = %lld each, plus jitter); lower partition.class_samples (0: as "
                     "many as the pool allows) or run.clients",
                     c, (long long)pl.size[c], (long long)holders[c], (long long)(holders[c] * base + extras[c]),
                     (long long)base);
  }
  if (rc == 0) {
    /* demand never exceeds a class's rows here: no row is dealt twice */
    for (int k = 0; k < j->K; k++) {
      int64_t want[2] = {base + d.extra[k], base + d.extra[k]};
      if (p->train_share > 0) twoclass_train_counts(j->seed, k, base + d.extra[k], p->train_share, want);
      for (int h = 0; h < 2; h++) plan_deal(&pl, twoclass_class(&d, k, h, j->C), k, want[h]);
    }
    plan_finish(&pl, j->seed, TAG_CLASS_TRAIN, out);
  }
  plan_free(&pl);
  twoclass_draw_free(&d);
  free(holders);
  free(extras);
  return rc;
}

/* partition.train_share: the rest of each client's rows, of its two classes,
 * from the test pool (every test row dealt at most once). */
static int test_twoclass_share(const params *p, uint64_t seed, const int32_t *test_labels, int64_t m, int C, int K,
                               fh_client_rows *out) {
  plan pl;
  plan_init(&pl, test_labels, m, C, K);
  twoclass_draw d;
  twoclass_draw_make(seed, K, p->size_jitter, &d);
  int64_t *need = fh_calloc((size_t)C, sizeof(int64_t));
  for (int k = 0; k < K; k++) {
    const int64_t n = p->class_samples + d.extra[k];
    int64_t tr[2];
    twoclass_train_counts(seed, k, n, p->train_share, tr);
    for (int h = 0; h < 2; h++) {
      plan_deal(&pl, twoclass_class(&d, k, h, C), k, n - tr[h]);
      need[twoclass_class(&d, k, h, C)] += n - tr[h];
    }
  }
  int rc = 0;
  for (int c = 0; c < C && rc == 0; c++)
    if (need[c] > pl.size[c])
      rc = FH_FAIL(FH_ERR_DATA,
                   "partition.train_share = %g: the clients' test splits need %lld rows of class %d but the test "
                   "pool has %lld; lower partition.class_samples, partition.size_jitter or run.clients",
                   p->train_share, (long long)need[c], c, (long long)pl.size[c]);
  if (rc == 0) plan_finish(&pl, seed, TAG_CLASS_TEST, out);
  plan_free(&pl);
  twoclass_draw_free(&d);
  free(need);
  return rc;
}

static int train_quantity(const job *j, fh_client_rows *out) {
  const params *p = j->p;
  if ((__int128)p->min_size * j->K > j->n)
    return FH_FAIL(FH_ERR_CONFIG,
                   "partition.min_size = %lld for %d clients needs %lld train rows, the pool has %lld; lower "
                   "partition.min_size or run.clients",
                   (long long)p->min_size, j->K, (long long)(p->min_size * j->K), (long long)j->n);
  double *w = fh_malloc((size_t)j->K * sizeof(double));
  for (int k = 0; k < j->K; k++) {
    fh_rng r;
    split_stream(&r, j->seed, TAG_QUANTITY, (uint32_t)k, 0);
    w[k] = fh_rng_lognormal(&r, 0.0, p->size_sigma);
  }
  int64_t *sizes = fh_malloc((size_t)j->K * sizeof(int64_t));
  apportion(j->n - p->min_size * j->K, w, j->K, sizes);
  free(w);
  /* owners in client order, shuffled: row r goes to owner[r] (labels iid) */
  int32_t *owner = fh_malloc((size_t)(j->n > 0 ? j->n : 1) * sizeof(int32_t));
  int64_t at = 0;
  for (int k = 0; k < j->K; k++) {
    sizes[k] += p->min_size;
    for (int64_t i = 0; i < sizes[k]; i++) owner[at++] = k;
  }
  fh_rng r;
  split_stream(&r, j->seed, TAG_QUANTITY, FH_RNG_NONE, 0);
  shuffle_i32(&r, owner, j->n);
  csr_from_owner(owner, j->n, j->K, sizes, out);
  free(owner);
  free(sizes);
  return 0;
}

/* Natural clients: client k owns offsets[k] .. offsets[k+1]-1. */
static int natural_rows(const int64_t *off, int K, int64_t n, const char *pool, fh_client_rows *out) {
  if (!off)
    return FH_FAIL(FH_ERR_DATA,
                   "partition.method = natural, but the data source has no natural clients (LEAF users or HDF5 "
                   "client_offsets); choose another partition.method");
  if (off[0] != 0 || off[K] != n)
    return FH_FAIL(FH_ERR_DATA,
                   "the natural clients of the %s pool run from row %lld to %lld; they must cover its %lld rows "
                   "from 0",
                   pool, (long long)off[0], (long long)off[K], (long long)n);
  for (int k = 0; k < K; k++)
    if (off[k + 1] < off[k])
      return FH_FAIL(FH_ERR_DATA, "the natural client offsets of the %s pool decrease at client %d", pool, k);
  out->num_clients = K;
  out->offsets = fh_malloc(((size_t)K + 1) * sizeof(int64_t));
  memcpy(out->offsets, off, ((size_t)K + 1) * sizeof(int64_t));
  out->rows = fh_malloc((size_t)(n > 0 ? n : 1) * sizeof(int64_t));
  for (int64_t r = 0; r < n; r++) out->rows[r] = r;
  return 0;
}

/* Every client needs a row of each split; say which keys to change. */
static int check_nonempty(const fh_client_rows *r, const char *method, int64_t pool_rows, const char *split) {
  int test = strcmp(split, "test") == 0;
  for (int k = 0; k < r->num_clients; k++)
    if (r->offsets[k + 1] == r->offsets[k])
      return FH_FAIL(FH_ERR_DATA,
                     "partition.method = %s leaves client %d without %s rows (%lld rows over %d clients); every "
                     "client needs at least one: lower run.clients%s or change the partition keys "
                     "(docs/partitioners.md)",
                     method, k, split, (long long)pool_rows, r->num_clients,
                     test ? ", set partition.test_per_client or partition.test_fraction," : "");
  return 0;
}

static int check_args(const int32_t *labels, int64_t n, int num_classes, int num_clients, const char *pool) {
  if (num_clients < 1) return FH_FAIL(FH_ERR_CONFIG, "run.clients = %d: at least one client is needed", num_clients);
  if (num_classes < 1) return FH_FAIL(FH_ERR_DATA, "the data has %d classes; at least one is needed", num_classes);
  if (n < 0 || n > 0x7fffffff)
    return FH_FAIL(FH_ERR_DATA, "the %s pool has %lld rows; the partitioners handle up to 2^31-1", pool,
                   (long long)n);
  for (int64_t i = 0; i < n; i++)
    if (labels[i] < 0 || labels[i] >= num_classes)
      return FH_FAIL(FH_ERR_DATA, "%s pool: label of row %lld is %d, outside [0, %d) (the number of classes)", pool,
                     (long long)i, labels[i], num_classes);
  return 0;
}

int fh_partition_train(const fh_config *cfg, uint64_t seed, const int32_t *labels, int64_t n, int num_classes,
                       int num_clients, const int64_t *natural_offsets, fh_client_rows *out) {
  memset(out, 0, sizeof *out);
  params p;
  FH_TRY(check_args(labels, n, num_classes, num_clients, "train"));
  FH_TRY(read_params(cfg, natural_offsets != NULL, &p));
  job j = {&p, seed, labels, n, num_classes, num_clients};
  int rc = 0;
  switch (p.method) {
    case M_DIRICHLET: rc = train_dirichlet(&j, out); break;
    case M_SHARDS: rc = train_shards(&j, 0, out); break;
    case M_SHARDS_PFEDAFM: rc = train_shards(&j, 1, out); break;
    case M_LOWDATA: rc = train_lowdata(&j, out); break;
    case M_LIPS: rc = train_lips(&j, out); break;
    case M_TWOCLASS: rc = train_twoclass(&j, out); break;
    case M_QUANTITY: rc = train_quantity(&j, out); break;
    case M_NATURAL: rc = natural_rows(natural_offsets, num_clients, n, "train", out); break;
    default: train_iid(&j, out); break;
  }
  if (rc == 0) rc = check_nonempty(out, method_names[p.method], n, "train");
  if (rc != 0) fh_client_rows_free(out);
  return rc;
}

/* ---- test rows ------------------------------------------------------------------ */

/* The documented IID test split: the stream's train permutation comes first
 * (its draws replayed here without storing it), then the test permutation,
 * cut into near-equal blocks. */
static void test_iid_blocks(uint64_t seed, int64_t n_train, int64_t m, int K, fh_client_rows *out) {
  fh_rng r;
  fh_rng_init(&r, seed, FH_RNG_SPLIT, FH_RNG_NONE, FH_RNG_NONE);
  for (int64_t i = n_train - 1; i > 0; i--) (void)fh_rng_below(&r, (uint32_t)i + 1);
  int *perm = fh_malloc((size_t)(m > 0 ? m : 1) * sizeof(int));
  permutation(&r, perm, m);
  int32_t *owner = fh_malloc((size_t)(m > 0 ? m : 1) * sizeof(int32_t));
  int64_t *sizes = fh_malloc((size_t)K * sizeof(int64_t));
  for (int k = 0; k < K; k++) {
    int64_t b, e;
    fh_block_range(m, K, k, &b, &e);
    sizes[k] = e - b;
    for (int64_t i = b; i < e; i++) owner[perm[i]] = k;
  }
  free(perm);
  csr_from_owner(owner, m, K, sizes, out);
  free(owner);
  free(sizes);
}

/* Test rows that follow each client's train label mix.
 * - partition.test_per_client or test_fraction: t_k rows (the fixed count, or
 *   round(test_fraction x n_k), at least one) apportioned over the client's
 *   train class counts (classes absent from the test pool left out), dealt
 *   per class by a plan: without replacement while a class's test rows last,
 *   reused (with replacement) only when the clients together ask a class for
 *   more rows than the test pool holds of it.
 * - neither (the default): each class's M_c test rows shared among the
 *   clients in proportion to their train rows of that class (pFedHN's
 *   gen_data_split, which pFedAFM uses): every test row dealt once; a
 *   client's test mix equals its train mix up to rounding and to the
 *   dataset's own train/test class balance. A client whose shares all round
 *   down to nothing gets one row of its largest train class (which then
 *   serves two clients). */
static int test_follow(const params *p, uint64_t seed, const fh_client_rows *train, const int32_t *train_labels,
                       const int32_t *test_labels, int64_t m, int C, fh_client_rows *out) {
  int K = train->num_clients;
  int share = p->test_per_client == 0 && p->test_fraction == 0;
  if (m == 0) return FH_FAIL(FH_ERR_DATA, "the test pool is empty; every client needs test rows");
  plan pl;
  plan_init(&pl, test_labels, m, C, K);
  int64_t *cnt = fh_calloc((size_t)C, sizeof(int64_t)), *want = fh_malloc((size_t)C * sizeof(int64_t));
  int64_t *dealt = fh_calloc((size_t)C, sizeof(int64_t)), *cum = fh_calloc((size_t)C, sizeof(int64_t));
  int64_t *prev = fh_calloc((size_t)C, sizeof(int64_t));
  if (share) count_classes(train_labels, train->rows, 0, train->offsets[K], train->offsets[K], dealt);
  int rc = 0;
  for (int k = 0; k < K && rc == 0; k++) {
    count_classes(train_labels, train->rows, train->offsets[k], train->offsets[k + 1], train->offsets[K], cnt);
    if (share) {
      int64_t got = 0, top = -1;
      for (int c = 0; c < C; c++) {
        cum[c] += cnt[c];
        int64_t cut = dealt[c] > 0 ? (int64_t)((__int128)pl.size[c] * cum[c] / dealt[c]) : 0;
        want[c] = cut - prev[c];
        prev[c] = cut;
        got += want[c];
        if (pl.size[c] > 0 && cnt[c] > 0 && (top < 0 || cnt[c] > cnt[top])) top = c;
      }
      /* a client whose shares all round down to nothing still gets one row,
       * of its largest train class: the one case where the default split
       * may deal a test row twice */
      if (got == 0 && top >= 0) want[top] = 1;
    } else {
      int64_t nk = train->offsets[k + 1] - train->offsets[k], any = 0;
      int64_t t = p->test_per_client > 0 ? p->test_per_client : llround(p->test_fraction * (double)nk);
      for (int c = 0; c < C; c++) {
        if (pl.size[c] == 0) cnt[c] = 0;
        any += cnt[c];
      }
      if (any == 0) {
        rc = FH_FAIL(FH_ERR_DATA,
                     "client %d: none of the classes of its train rows has rows in the test pool, so its test "
                     "split cannot follow its train labels; check the dataset's test split",
                     k);
        break;
      }
      apportion_int(t < 1 ? 1 : t, cnt, C, want);
    }
    for (int c = 0; c < C; c++) {
      plan_deal(&pl, c, k, want[c]);
      cnt[c] = 0;
    }
  }
  if (rc == 0) plan_finish(&pl, seed, TAG_CLASS_TEST, out);
  plan_free(&pl);
  free(cnt);
  free(want);
  free(dealt);
  free(cum);
  free(prev);
  return rc;
}

int fh_partition_test(const fh_config *cfg, uint64_t seed, const fh_client_rows *train, const int32_t *train_labels,
                      const int32_t *test_labels, int64_t m, int num_classes, const int64_t *natural_offsets,
                      fh_client_rows *out) {
  memset(out, 0, sizeof *out);
  params p;
  int K = train->num_clients;
  FH_TRY(check_args(test_labels, m, num_classes, K, "test"));
  FH_TRY(read_params(cfg, natural_offsets != NULL, &p));
  int rc = 0;
  if (p.method == M_NATURAL)
    rc = natural_rows(natural_offsets, K, m, "test", out);
  else if (p.method == M_IID && p.test_per_client == 0 && p.test_fraction == 0)
    test_iid_blocks(seed, train->offsets[K], m, K, out);
  else if (p.method == M_TWOCLASS && p.train_share > 0)
    rc = test_twoclass_share(&p, seed, test_labels, m, num_classes, K, out);
  else if (p.method == M_LIPS && m == 0)
    rc = FH_FAIL(FH_ERR_DATA, "partition.method = lips: the test pool is empty");
  else if (p.method == M_LIPS)
    split_lips(&p, seed, test_labels, m, num_classes, K, p.test_per_client, 2, out);
  else
    rc = test_follow(&p, seed, train, train_labels, test_labels, m, num_classes, out);
  if (rc == 0) rc = check_nonempty(out, method_names[p.method], m, "test");
  if (rc != 0) fh_client_rows_free(out);
  return rc;
}
