/* FedGC: the one-shot generation step before round 1 (see fedgc.h); the
 * membership-inference score is in membership.c. */
#include "fl/addons/fedgc.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/log.h"
#include "core/rng.h"
#include "data/generator.h"
#include "fl/payload.h"
#include "fl/blocks/server_shards.h"

const fh_key_spec fh_fedgc_keys[] = {
    {"fedgc.enabled", FH_T_BOOL, "false", 0, 0, NULL,
     "add one-shot generated data to every client's train split before round 1 (docs/fedgc.md)"},
    {"fedgc.total", FH_T_INT, "10000", 0, 1e9, NULL, "M: generated samples over all clients"},
    {"fedgc.budget", FH_T_ENUM, "inverse", 0, 0, "equal|inverse|waterfill",
     "M_k: M / K each; proportional to 1 / n_k; or max(0, b - n_k) with the largest b (water-filling)"},
    {"fedgc.class_mix", FH_T_ENUM, "pool", 0, 0, "pool|missing",
     "classes of a client's generated samples: the pool's shares, or favouring the classes it lacks"},
    {"fedgc.design", FH_T_ENUM, "diverse", 0, 0, "single|multi|diverse",
     "prompt design: the class's main mixture component; a component by weight; any component at a random "
     "temperature"},
    {"fedgc.guidance", FH_T_ENUM, "mixed", 0, 0, "prompt|real|mixed",
     "generation guidance: the class model alone; a variation of one of the client's samples; the client's sample "
     "moved toward the class model by fedgc.strength"},
    {"fedgc.strength", FH_T_REAL, "0.5", 0, 1, NULL,
     "mixed guidance: 0 = the client's sample (real), 1 = the class model (prompt)"},
    {"fedgc.noise", FH_T_REAL, "0.3", 0, 100, NULL,
     "real and mixed guidance: std of the noise added to the sample's PCA code, per unit of that direction's std"},
    {"fedgc.temp_min", FH_T_REAL, "0.5", 0, 100, NULL, "diverse design: lowest sampling temperature"},
    {"fedgc.temp_max", FH_T_REAL, "1.5", 0, 100, NULL, "diverse design: highest sampling temperature"},
    {"fedgc.pca_dims", FH_T_INT, "20", 1, 1e6, NULL, "generator: PCA dimensions q of the code space"},
    {"fedgc.components", FH_T_INT, "5", 1, 1000, NULL, "generator: Gaussian components per class"},
    {"fedgc.covariance", FH_T_ENUM, "full", 0, 0, "full|diag",
     "generator: full or diagonal covariance of each component in the PCA space"},
    {"fedgc.em_iters", FH_T_INT, "50", 0, 1e6, NULL, "generator: EM iterations per class"},
    {"fedgc.var_floor", FH_T_REAL, "1e-3", 0, 1, NULL,
     "generator: floor of a component's variances, relative to the class's variance"},
    {"fedgc.source", FH_T_ENUM, "generator", 0, 0, "generator|holdout",
     "where the M_k rows come from: the built-in generator fitted on the server's hold-out (or fedgc.pool), or the "
     "hold-out's real rows themselves, dealt like a pool by the same budgets and class mix (the generator's "
     "baseline; they are not scored as members by fedgc.membership)"},
    {"fedgc.pool", FH_T_STRING, "", 0, 0, NULL,
     "HDF5 file of generated samples /x and labels /y used instead of the built-in generator, optionally routed: "
     "/client (a client id per row) or /domain (a domain per row, clients' domains in data.path's "
     "/train/client_domain) (docs/dataset-format.md)"},
    {"fedgc.pool_layout", FH_T_ENUM, "nchw", 0, 0, "nchw|nhwc",
     "fedgc.pool: /x as [N, C, H, W] (or flat [N, D]), or channels last [N, H, W, C] (numpy image arrays), "
     "transposed on reading; a layout that does not match the data is refused"},
    {"fedgc.pool_draw", FH_T_ENUM, "disjoint", 0, 0, "disjoint|replace|cycle",
     "fedgc.pool or fedgc.source = holdout: each class's rows shuffled once and dealt to the clients without "
     "replacement (every row to one client at most, as the authors split their pool; a budget beyond a class's "
     "rows is refused); drawn with replacement per client; or dealt in the shuffled order and started over when "
     "they run out (every row once before any twice)"},
    {"fedgc.weights", FH_T_ENUM, "merged", 0, 0, "merged|real",
     "aggregation weight of client k: n_k + M_k, or n_k (algorithms with [sample weights] in "
     "`fedhpc help algorithms`)"},
    {"fedgc.membership", FH_T_BOOL, "false", 0, 0, NULL,
     "after the run, score a loss-threshold membership-inference attack on the global model "
     "(RUN/membership.h5; any run)"},
    FH_KEYS_END};

/* ---- budgets and class mix ------------------------------------------------------- */

typedef struct {
  double frac;
  int i;
} share_rem;

static int cmp_remainder(const void *a, const void *b) {
  const share_rem *x = a, *y = b;
  if (x->frac != y->frac) return x->frac > y->frac ? -1 : 1;
  return (x->i > y->i) - (x->i < y->i);
}

void fh_fedgc_apportion(long long total, const double *w, int m, int *out) {
  double sum = 0;
  for (int i = 0; i < m; i++) sum += w[i] > 0 ? w[i] : 0;
  memset(out, 0, (size_t)m * sizeof(int));
  if (!(sum > 0) || total <= 0) return;
  share_rem *r = fh_malloc((size_t)m * sizeof *r);
  long long given = 0;
  for (int i = 0; i < m; i++) {
    const double q = w[i] > 0 ? (double)total * (w[i] / sum) : 0;
    out[i] = (int)floor(q);
    r[i] = (share_rem){w[i] > 0 ? q - out[i] : -1, i};
    given += out[i];
  }
  qsort(r, (size_t)m, sizeof *r, cmp_remainder);
  /* rounding of the quotas can leave |total - given| a little off m's bounds:
   * wrap around the order, never below zero */
  for (long long left = total - given, j = 0; left > 0; left--, j = (j + 1) % m) out[r[j].i]++;
  for (long long over = given - total, j = m - 1; over > 0; j = (j + m - 1) % m)
    if (out[r[j].i] > 0) {
      out[r[j].i]--;
      over--;
    }
  free(r);
}

typedef struct {
  int n, k;
} by_size;

static int cmp_size(const void *a, const void *b) {
  const by_size *x = a, *y = b;
  if (x->n != y->n) return (x->n > y->n) - (x->n < y->n);
  return (x->k > y->k) - (x->k < y->k);
}

static long long fill_sum(long long b, const int *n, int K) {
  long long s = 0;
  for (int k = 0; k < K; k++) s += b > n[k] ? b - n[k] : 0;
  return s;
}

void fh_fedgc_budgets(int method, long long M, const int *n, int K, int *out, long long *level) {
  if (level) *level = -1;
  memset(out, 0, (size_t)(K > 0 ? K : 0) * sizeof(int));
  if (K <= 0 || M < 0 || (M == 0 && method != FH_BUDGET_WATERFILL)) return;
  if (method == FH_BUDGET_EQUAL) {
    for (int k = 0; k < K; k++) out[k] = (int)(M / K + (k < M % K ? 1 : 0));
  } else if (method == FH_BUDGET_INVERSE) {
    double *w = fh_malloc((size_t)K * sizeof(double));
    for (int k = 0; k < K; k++) w[k] = 1.0 / (n[k] > 0 ? n[k] : 1);
    fh_fedgc_apportion(M, w, K, out);
    free(w);
  } else {
    /* the largest integer b with sum max(0, b - n_k) <= M: fill_sum grows with b */
    long long lo = 0, hi = 0;
    for (int k = 0; k < K; k++)
      if (n[k] > hi) hi = n[k];
    hi += M + 1; /* fill_sum(hi) >= hi - max n > M */
    while (hi - lo > 1) {
      const long long mid = lo + (hi - lo) / 2;
      if (fill_sum(mid, n, K) <= M) lo = mid;
      else hi = mid;
    }
    for (int k = 0; k < K; k++) out[k] = lo > n[k] ? (int)(lo - n[k]) : 0;
    long long left = M - fill_sum(lo, n, K);
    /* fewer than #{n_k <= b} are left (b + 1 would overflow M): one each to
     * the clients at the level, smallest n_k first, then lowest id */
    by_size *s = fh_malloc((size_t)K * sizeof *s);
    int m = 0;
    for (int k = 0; k < K; k++)
      if (n[k] <= lo) s[m++] = (by_size){n[k], k};
    qsort(s, (size_t)m, sizeof *s, cmp_size);
    for (int j = 0; j < m && left > 0; j++, left--) out[s[j].k]++;
    free(s);
    if (level) *level = lo;
  }
}

void fh_fedgc_class_counts(int mix, int Mk, int C, const double *freq, const int *have, int *out) {
  if (mix == FH_MIX_POOL) {
    fh_fedgc_apportion(Mk, freq, C, out);
    return;
  }
  long long n = 0;
  for (int c = 0; c < C; c++) n += have[c];
  double *w = fh_malloc((size_t)C * sizeof(double));
  for (int c = 0; c < C; c++) {
    const double deficit = freq[c] * (double)(n + Mk) - have[c];
    w[c] = freq[c] > 0 && deficit > 0 ? deficit : 0;
  }
  fh_fedgc_apportion(Mk, w, C, out);
  free(w);
}

/* ---- the generation step ----------------------------------------------------------- */

/* The generator from the server's rows, over all ranks. */
static int fit_server(fh_run *run, fh_generator *g) {
  const fh_config *cfg = run->cfg;
  int rc = 0;
  if (fh_cfg_real(cfg, "data.server_fraction") <= 0)
    rc = FH_FAIL(FH_ERR_CONFIG, "fedgc: the built-in generator learns from the server's rows, and "
                                "data.server_fraction = 0 holds none out; set data.server_fraction (e.g. 0.2) "
                                "or give a pool of generated samples in fedgc.pool");
  FH_TRY(fh_error_agree(run->comm, rc));
  fh_server_shards sh;
  rc = fh_server_shards_load(&sh, cfg, run->rank, run->nranks);
  rc = fh_error_agree(run->comm, rc);
  if (rc) {
    fh_server_shards_free(&sh);
    return rc;
  }
  const int nparts = sh.s1 - sh.s0;
  int *part_end = fh_malloc((size_t)(nparts > 0 ? nparts : 1) * sizeof(int));
  for (int j = 0; j < nparts; j++) {
    int b, e;
    fh_server_shard_rows(&sh, sh.s0 + j, &b, &e);
    part_end[j] = e;
  }
  fh_generator_params p = {.q = (int)fh_cfg_int(cfg, "fedgc.pca_dims"),
                           .K = (int)fh_cfg_int(cfg, "fedgc.components"),
                           .em_iters = (int)fh_cfg_int(cfg, "fedgc.em_iters"),
                           .var_floor = fh_cfg_real(cfg, "fedgc.var_floor"),
                           .full = fh_cfg_enum(cfg, "fedgc.covariance") == 0,
                           .seed = run->seed};
  rc = fh_generator_fit(g, run->comm, run->data->dim, run->data->num_classes, sh.rows.x, sh.rows.y, sh.rows.n,
                        part_end, nparts, &p);
  if (rc == 0)
    fh_info("fedgc: generator from %lld server rows: PCA %d -> %d dimensions (keeps %.1f%% of the variance; "
            "eigendecomposition %.3f s on a %d x %d grid), up to %d Gaussian components per class (%s covariances)",
            (long long)sh.total, g->d, g->q, 100 * g->explained, g->eig_seconds, g->nprow, g->npcol, g->K,
            fh_cfg_str(cfg, "fedgc.covariance"));
  free(part_end);
  fh_server_shards_free(&sh);
  return rc;
}

typedef struct {
  const fh_generator *g; /* built-in generator, or                 */
  const float *px;       /* the external pool [pn, dim] ..          */
  const int32_t *py;
  const int64_t *pstart; /* [R C + 1] its rows by route and class (CSR: group r C + c) */
  const int64_t *prow;
  const int32_t *route;  /* [K] client k's route r (its id or its domain); NULL: one route, 0 */
  int routes;            /* R, the number of routes (1 without routing)  */
  const char *route_by;  /* "client" or "domain" (routed pools)           */
  const char *name;      /* the rows' origin in messages: "the pool X", "the server's hold-out" */
  fh_gen_options opt;
  int mix;
  const double *freq;    /* [R, C] the class shares of each route's pool rows (the generator: [C]) */
  const int64_t *first;  /* disjoint or cyclic pool draws: [K, C] client k's first position in class c's shuffled
                            rows; NULL: with replacement */
  int cycle;             /* first + t wraps around the class's rows (fedgc.pool_draw = cycle) */
} source;

/* Client k's route: its group of pool rows (0 without routing). */
static int route_of(const source *s, int k) { return s->route ? s->route[k] : 0; }

/* Client k's Mk generated samples per class, cnt [C], from its train split's
 * class counts have [C] (filled here) and the source's class mix over its
 * route's rows: the one rule generate_client draws by and pool_disjoint
 * reserves pool rows by. */
static void client_class_counts(const source *s, int k, const fh_split *tr, int Mk, int C, int *have, int *cnt) {
  memset(have, 0, (size_t)C * sizeof(int));
  for (int i = 0; i < tr->n; i++) have[tr->y[i]]++;
  fh_fedgc_class_counts(s->mix, Mk, C, s->freq + (size_t)route_of(s, k) * C, have, cnt);
}

/* Client k's Mk samples into *x [Mk, dim] and *y [Mk], from the stream
 * (seed, FH_RNG_GENERATE, k, none): class by class, as the mix counts. */
static void generate_client(const fh_run *run, const source *s, int k, const fh_split *tr, int Mk, float **x,
                            int32_t **y) {
  const fh_dataset *ds = run->data;
  const int C = ds->num_classes, d = ds->dim;
  int *have = fh_calloc((size_t)C + 1, sizeof(int)), *cnt = fh_calloc((size_t)C, sizeof(int));
  client_class_counts(s, k, tr, Mk, C, have, cnt);
  /* the client's rows by class (CSR) */
  int *start = fh_calloc((size_t)C + 1, sizeof(int)), *rows = fh_malloc((size_t)(tr->n ? tr->n : 1) * sizeof(int));
  for (int c = 0; c < C; c++) start[c + 1] = start[c] + have[c];
  int *fill = fh_malloc((size_t)C * sizeof(int));
  memcpy(fill, start, (size_t)C * sizeof(int));
  for (int i = 0; i < tr->n; i++) rows[fill[tr->y[i]]++] = i;
  *x = fh_malloc((size_t)(Mk ? Mk : 1) * d * sizeof(float));
  *y = fh_malloc((size_t)(Mk ? Mk : 1) * sizeof(int32_t));
  double *zbuf = s->g ? fh_malloc((size_t)(3 * s->g->q + d) * sizeof(double)) : NULL;
  fh_rng r;
  fh_rng_init(&r, run->seed, FH_RNG_GENERATE, (uint32_t)k, FH_RNG_NONE);
  const size_t g0 = (size_t)route_of(s, k) * C; /* the client's route's first group */
  for (int c = 0, j = 0; c < C; c++)
    for (int t = 0; t < cnt[c]; t++, j++) {
      float *xj = *x + (size_t)j * d;
      if (!s->g) { /* a pool row of class c in the client's route: its next one in the shuffle, or any */
        const int64_t nc = s->pstart[g0 + c + 1] - s->pstart[g0 + c];
        const int64_t at = s->first ? s->first[(size_t)k * C + c] + t : 0;
        const int64_t pick = s->first                 ? (s->cycle ? at % nc : at)
                             : nc <= 0xffffffffLL ? (int64_t)fh_rng_below(&r, (uint32_t)nc)
                                                  : (int64_t)(fh_rng_u64(&r) % (uint64_t)nc);
        const int64_t row = s->prow[s->pstart[g0 + c] + pick];
        memcpy(xj, s->px + (size_t)row * d, (size_t)d * sizeof(float));
        (*y)[j] = c;
        continue;
      }
      /* the anchor: one of the client's rows of class c, else any of its rows */
      const float *anchor = NULL;
      int32_t ay = c;
      if (have[c] > 0) {
        const int i = rows[start[c] + (int)fh_rng_below(&r, (uint32_t)have[c])];
        anchor = tr->x + (size_t)i * d, ay = tr->y[i];
      } else if (tr->n > 0) {
        const int i = (int)fh_rng_below(&r, (uint32_t)tr->n);
        anchor = tr->x + (size_t)i * d, ay = tr->y[i];
      } else {
        (void)fh_rng_u32(&r);
      }
      fh_generator_sample(s->g, &s->opt, c, anchor, ay, &r, zbuf, xj, *y + j);
    }
  free(zbuf);
  free(have);
  free(cnt);
  free(start);
  free(rows);
  free(fill);
}

static int fedgc_enabled(const fh_config *cfg) { return fh_cfg_bool(cfg, "fedgc.enabled"); }

/* What a pool source owns (pool_source fills it; pool_free frees it). */
typedef struct {
  float *x;
  int32_t *y;
  int64_t *start, *row, *first;
  int32_t *route;
  double *freq;
} pool_arrays;

static void pool_free(pool_arrays *a) {
  free(a->x), free(a->y), free(a->start), free(a->row), free(a->first), free(a->route), free(a->freq);
}

/* The pool's routes against the run: rt's /client ids must be clients of the
 * run, rt's /domain values domains of some client (data.path's
 * /train/client_domain). *route [K] gets each client's route (its id, its
 * domain, or 0 without routing), *R the number of routes, and rt->id is left
 * as each row's route. */
static int check_routes(const fh_run *run, const char *pool, int64_t pn, const fh_pool_routes *rt, int32_t **route,
                        int *R) {
  const int K = run->map.num_clients;
  *route = fh_calloc((size_t)K, sizeof(int32_t)), *R = 1;
  if (rt->kind == FH_POOL_ROUTE_NONE) return 0;
  if (rt->kind == FH_POOL_ROUTE_CLIENT) {
    for (int k = 0; k < K; k++) (*route)[k] = k;
    *R = K;
    for (int64_t i = 0; i < pn; i++)
      if (rt->id[i] >= K)
        return FH_FAIL(FH_ERR_DATA, "fedgc.pool = %s: /client[%lld] = %d is not a client of this run (0..%d, "
                                    "run.clients = %d); route the row to one of them or drop it",
                       pool, (long long)i, rt->id[i], K - 1, K);
    return 0;
  }
  const char *data = fh_cfg_str(run->cfg, "data.path");
  free(*route);
  FH_TRY(fh_pool_client_domains(data, K, route));
  for (int k = 0; k < K; k++) {
    if ((*route)[k] >= 1 << 20) /* domains index arrays of R x C pool groups */
      return FH_FAIL(FH_ERR_DATA, "data.path = %s: /train/client_domain[%d] = %d; number domains 0, 1, ... (below "
                                  "2^20)", data, k, (*route)[k]);
    *R = (*route)[k] + 1 > *R ? (*route)[k] + 1 : *R;
  }
  char *held = fh_calloc((size_t)*R, 1);
  for (int k = 0; k < K; k++) held[(*route)[k]] = 1;
  int rc = 0;
  for (int64_t i = 0; i < pn && rc == 0; i++)
    if (rt->id[i] >= *R || !held[rt->id[i]])
      rc = FH_FAIL(FH_ERR_DATA, "fedgc.pool = %s: /domain[%lld] = %d is the domain of no client (data.path = %s, "
                                "/train/client_domain); route the row to a client's domain or drop it",
                   pool, (long long)i, rt->id[i], data);
  free(held);
  return rc;
}

/* Rows x [pn, dim] (normalised as the data set's) and y [pn], each in route
 * rt (rt->id NULL: one route) with client k's route route [K] and R routes,
 * as a source: grouped by route and class (CSR over groups r C + c), each
 * route's class shares freq [R, C]. a takes x, y and route (pool_free frees
 * them); rt->id stays the caller's. A client with a budget (Mk [K]) whose
 * route holds no row is refused, naming the dataset that routes. */
static int group_rows(const fh_run *run, const int *Mk, int64_t pn, const fh_pool_routes *rt, int R, source *s,
                      pool_arrays *a) {
  const int C = run->data->num_classes, K = run->map.num_clients;
  const size_t G = (size_t)R * C;
  a->start = fh_calloc(G + 1, sizeof(int64_t));
  a->row = fh_malloc((size_t)(pn > 0 ? pn : 1) * sizeof(int64_t));
  a->freq = fh_calloc(G, sizeof(double));
  int64_t *start = a->start;
  for (int64_t i = 0; i < pn; i++) start[(size_t)(rt->id ? rt->id[i] : 0) * C + a->y[i] + 1]++;
  for (size_t g = 0; g < G; g++) start[g + 1] += start[g];
  int64_t *fill = fh_malloc(G * sizeof(int64_t));
  memcpy(fill, start, G * sizeof(int64_t));
  for (int64_t i = 0; i < pn; i++) a->row[fill[(size_t)(rt->id ? rt->id[i] : 0) * C + a->y[i]]++] = i;
  free(fill);
  for (int r = 0; r < R; r++) {
    const int64_t nr = start[(size_t)(r + 1) * C] - start[(size_t)r * C];
    for (int c = 0; c < C && nr > 0; c++)
      a->freq[(size_t)r * C + c] = (double)(start[(size_t)r * C + c + 1] - start[(size_t)r * C + c]) / (double)nr;
  }
  static const char *const by[] = {"", "/client", "/domain"};
  int rc = 0;
  for (int k = 0; k < K && rc == 0; k++) {
    const int r = a->route[k];
    if (Mk[k] > 0 && start[(size_t)(r + 1) * C] == start[(size_t)r * C])
      rc = FH_FAIL(FH_ERR_DATA, "%s: client %d has a budget of %d generated rows but %s routes no row to %s %d; "
                                "give it rows or change fedgc.budget",
                   s->name, k, Mk[k], by[rt->kind], rt->kind == FH_POOL_ROUTE_CLIENT ? "client" : "domain", r);
  }
  s->px = a->x, s->py = a->y, s->pstart = a->start, s->prow = a->row, s->freq = a->freq;
  s->route = rt->kind == FH_POOL_ROUTE_NONE ? NULL : a->route;
  s->routes = R;
  s->route_by = rt->kind == FH_POOL_ROUTE_CLIENT ? "client" : "domain";
  return rc;
}

/* The external pool (fedgc.pool) as a source (group_rows), its rows routed by
 * the pool's /client or /domain. */
static int pool_source(fh_run *run, const char *pool, const int *Mk, source *s, pool_arrays *a) {
  int64_t pn = 0;
  const int nhwc = fh_cfg_enum(run->cfg, "fedgc.pool_layout") == 1; /* nchw|nhwc */
  FH_TRY(fh_error_agree(run->comm, fh_generator_pool_load(pool, run->data, nhwc, &a->x, &a->y, &pn)));
  fh_pool_routes rt;
  int R = 1;
  int rc = fh_generator_pool_routes(pool, pn, &rt);
  if (rc == 0) rc = check_routes(run, pool, pn, &rt, &a->route, &R);
  rc = fh_error_agree(run->comm, rc);
  if (rc == 0) rc = group_rows(run, Mk, pn, &rt, R, s, a);
  free(rt.id);
  static const char *const by[] = {"", "/client", "/domain"};
  if (rc == 0)
    fh_info("fedgc: %lld generated samples from the pool %s%s%s", (long long)pn, pool,
            rt.kind == FH_POOL_ROUTE_NONE ? "" : ", routed by ", by[rt.kind]);
  return rc;
}

/* fedgc.source = holdout: the server's real hold-out rows (data.server_fraction,
 * the rows the built-in generator is fitted on) as an unrouted pool
 * (group_rows). Every rank reads all of them, in the hold-out's own order
 * (fh_dataset_load_server as one part), so the deal is the same on any rank
 * count. */
static int holdout_source(fh_run *run, const int *Mk, source *s, pool_arrays *a) {
  int rc = 0;
  if (fh_cfg_real(run->cfg, "data.server_fraction") <= 0)
    rc = FH_FAIL(FH_ERR_CONFIG, "fedgc.source = holdout deals the server's hold-out rows, and "
                                "data.server_fraction = 0 holds none out; set data.server_fraction (e.g. 0.1)");
  FH_TRY(fh_error_agree(run->comm, rc));
  fh_split held;
  int64_t total = 0;
  FH_TRY(fh_error_agree(run->comm, fh_dataset_load_server(run->cfg, 1, 0, 1, &held, &total)));
  a->x = held.x, a->y = held.y;
  a->route = fh_calloc((size_t)run->map.num_clients, sizeof(int32_t));
  const fh_pool_routes none = {FH_POOL_ROUTE_NONE, NULL};
  rc = fh_error_agree(run->comm, group_rows(run, Mk, total, &none, 1, s, a));
  if (rc == 0)
    fh_info("fedgc: %lld real rows from the server's hold-out (data.server_fraction = %g) in place of generated "
            "ones", (long long)total, fh_cfg_real(run->cfg, "data.server_fraction"));
  return rc;
}

/* Every hosted client's Mk [K] samples, merged into its train split. */
static void generate_all(fh_run *run, const source *s, const int *Mk) {
  fh_dataset *ds = run->data;
  const int nl = run->nlocal > 0 ? run->nlocal : 1;
  float **gx = fh_calloc((size_t)nl, sizeof(float *));
  int32_t **gy = fh_calloc((size_t)nl, sizeof(int32_t *));
  int *gn = fh_calloc((size_t)nl, sizeof(int));
  for (int i = 0; i < run->nlocal; i++) {
    const int k = run->first_client + i;
    gn[i] = Mk[k];
    generate_client(run, s, k, &ds->clients[i].train, Mk[k], &gx[i], &gy[i]);
  }
  fh_dataset_append_train(ds, gn, gx, gy, fh_cfg_enum(run->cfg, "fedgc.weights") == 1);
  for (int i = 0; i < run->nlocal; i++) free(gx[i]), free(gy[i]);
  free(gx), free(gy), free(gn);
}

/* Rank 0's lines on what was generated (t_gen: the slowest rank's); from:
 * 0 the generator, 1 fedgc.pool, 2 the hold-out. */
static void report(const fh_run *run, const source *s, const int *Mk, long long level, int from, double t_fit,
                   double t_gen) {
  static const char *const rows[] = {"generated samples", "generated samples", "real hold-out rows"};
  static const char *const how[] = {"generator fitted", "pool read", "hold-out read"};
  const fh_config *cfg = run->cfg;
  const int K = run->map.num_clients;
  int lo = Mk[0], hi = Mk[0];
  for (int k = 1; k < K; k++) lo = Mk[k] < lo ? Mk[k] : lo, hi = Mk[k] > hi ? Mk[k] : hi;
  char lev[64] = "";
  if (level >= 0) snprintf(lev, sizeof lev, ", level b = %lld", level);
  fh_info("fedgc: %lld %s over %d clients (budget %s: %d..%d per client%s; class mix %s%s%s); %s in %.3f s, "
          "generation %.3f s; aggregation weights %s",
          fh_cfg_int(cfg, "fedgc.total"), rows[from], K, fh_cfg_str(cfg, "fedgc.budget"), lo, hi, lev,
          fh_cfg_str(cfg, "fedgc.class_mix"), from ? ", draw " : "", from ? fh_cfg_str(cfg, "fedgc.pool_draw") : "",
          how[from], t_fit, t_gen,
          fh_cfg_enum(cfg, "fedgc.weights") == 1 ? "n_k" : "n_k + M_k");
  if (fh_cfg_enum(cfg, "fedgc.weights") == 1 && !(run->alg->flags & FH_ALG_SAMPLE_WEIGHTS)) {
    char names[256];
    fh_algorithm_names_with(FH_ALG_SAMPLE_WEIGHTS, "and", names, sizeof names);
    fh_warn("fedgc.weights = real is honoured by %s only; %s weights clients its own way", names, run->alg->name);
  }
  if (!from)
    fh_info("fedgc: prompt design %s, guidance %s (strength %g, noise %g)", fh_cfg_str(cfg, "fedgc.design"),
            fh_cfg_str(cfg, "fedgc.guidance"), s->opt.strength, s->opt.noise);
}

/* fedgc.pool_draw = disjoint or cycle: the pool rows of each route's class
 * shuffled once (stream (seed, FH_RNG_GENERATE, none, r C + c), the same on
 * every rank; r = 0 without routing) and dealt to the route's clients in id
 * order: *first [K, C] gets where client k's rows of class c start in its
 * route's segment (cycle: positions taken modulo the class's rows, so each
 * row is dealt once before any is dealt twice). The class counts are each
 * hosted client's (as generate_client draws them), summed over ranks.
 * disjoint: a route's class asked for more rows than the source holds is
 * refused, naming the keys that would allow it. */
static int pool_disjoint(fh_run *run, const source *s, const int *Mk, int64_t *prow, int64_t **first) {
  const int holdout = fh_cfg_enum(run->cfg, "fedgc.source") == 1; /* generator|holdout */
  const fh_dataset *ds = run->data;
  const int K = run->map.num_clients, C = ds->num_classes, R = s->routes;
  int *need = fh_calloc((size_t)K * C, sizeof(int)), *have = fh_calloc((size_t)C + 1, sizeof(int));
  for (int i = 0; i < run->nlocal; i++) {
    const int k = run->first_client + i;
    client_class_counts(s, k, &ds->clients[i].train, Mk[k], C, have, need + (size_t)k * C);
  }
  MPI_Allreduce(MPI_IN_PLACE, need, K * C, MPI_INT, MPI_SUM, run->comm);
  *first = fh_malloc((size_t)K * C * sizeof(int64_t));
  int rc = 0;
  for (int r = 0; r < R && rc == 0; r++)
    for (int c = 0; c < C && rc == 0; c++) {
      const size_t g = (size_t)r * C + c;
      const int64_t nc = s->pstart[g + 1] - s->pstart[g];
      int64_t at = 0;
      for (int k = 0; k < K; k++)
        if (route_of(s, k) == r) (*first)[(size_t)k * C + c] = at, at += need[(size_t)k * C + c];
      if (at > nc && (!s->cycle || nc == 0)) { /* cycle: a class with no row cannot be dealt either */
        char in[64] = "";
        if (s->route) snprintf(in, sizeof in, " routed to %s %d", s->route_by, r);
        rc = FH_FAIL(FH_ERR_CONFIG, "fedgc.pool_draw = %s: the clients need %lld rows of class %d%s but %s "
                                    "holds %lld; lower fedgc.total, %s, or set fedgc.pool_draw = cycle (every row "
                                    "once before any twice) or replace",
                     fh_cfg_str(run->cfg, "fedgc.pool_draw"), (long long)at, c, in, s->name, (long long)nc,
                     holdout ? "raise data.server_fraction" : "bring a larger pool");
        break;
      }
      fh_rng rng;
      fh_rng_init(&rng, run->seed, FH_RNG_GENERATE, FH_RNG_NONE, (uint32_t)g);
      int64_t *seg = prow + s->pstart[g];
      for (int64_t i = nc - 1; i > 0; i--) { /* Fisher-Yates */
        const int64_t j = i < 0xffffffffLL ? (int64_t)fh_rng_below(&rng, (uint32_t)(i + 1))
                                           : (int64_t)(fh_rng_u64(&rng) % (uint64_t)(i + 1));
        const int64_t tmp = seg[i];
        seg[i] = seg[j], seg[j] = tmp;
      }
    }
  free(need);
  free(have);
  return rc;
}

/* Keys a pool or the hold-out makes meaningless: the built-in generator's
 * (and, for the hold-out, the pool file's layout). Warned about once, by rank
 * 0, when the deck or --set gave them. */
static void warn_pool_ignores(const fh_run *run, int holdout) {
  static const char *const gen_keys[] = {"fedgc.design",     "fedgc.guidance", "fedgc.strength", "fedgc.noise",
                                         "fedgc.temp_min",   "fedgc.temp_max", "fedgc.pca_dims", "fedgc.components",
                                         "fedgc.covariance", "fedgc.em_iters", "fedgc.var_floor", "fedgc.pool_layout"};
  const size_t nkeys = sizeof gen_keys / sizeof gen_keys[0] - (holdout ? 0 : 1);
  char set[512] = "";
  size_t at = 0;
  for (size_t i = 0; i < nkeys; i++)
    if (strcmp(fh_cfg_origin(run->cfg, gen_keys[i]), "default") != 0 && at < sizeof set)
      at += (size_t)snprintf(set + at, sizeof set - at, "%s%s", at ? ", " : "", gen_keys[i]);
  if (at)
    fh_warn("%s, so the built-in generator's keys do nothing: %s",
            holdout ? "fedgc.source = holdout deals real rows" : "fedgc.pool is set", set);
}

int fh_fedgc_prepare(fh_run *run) {
  const fh_config *cfg = run->cfg;
  if (!fedgc_enabled(cfg)) return 0;
  fh_dataset *ds = run->data;
  const int K = run->map.num_clients, C = ds->num_classes;
  const long long M = fh_cfg_int(cfg, "fedgc.total");
  const int method = fh_cfg_enum(cfg, "fedgc.budget");
  source s = {.mix = fh_cfg_enum(cfg, "fedgc.class_mix")};
  s.opt = (fh_gen_options){.design = fh_cfg_enum(cfg, "fedgc.design"),
                           .guidance = fh_cfg_enum(cfg, "fedgc.guidance"),
                           .tmin = fh_cfg_real(cfg, "fedgc.temp_min"),
                           .tmax = fh_cfg_real(cfg, "fedgc.temp_max"),
                           .strength = fh_cfg_real(cfg, "fedgc.strength"),
                           .noise = fh_cfg_real(cfg, "fedgc.noise")};
  if (s.opt.tmax < s.opt.tmin)
    return FH_FAIL(FH_ERR_CONFIG, "fedgc.temp_max = %g is below fedgc.temp_min = %g", s.opt.tmax, s.opt.tmin);
  const double t0 = MPI_Wtime();

  /* every client's real train size, then the budgets (the same on every rank) */
  int *n = fh_calloc((size_t)K, sizeof(int)), *Mk = fh_calloc((size_t)K, sizeof(int));
  for (int i = 0; i < run->nlocal; i++) n[run->first_client + i] = ds->clients[i].train.n;
  MPI_Allreduce(MPI_IN_PLACE, n, K, MPI_INT, MPI_SUM, run->comm);
  long long level = -1;
  fh_fedgc_budgets(method, M, n, K, Mk, &level);

  fh_generator g;
  memset(&g, 0, sizeof g);
  pool_arrays pa;
  memset(&pa, 0, sizeof pa);
  double *freq = NULL;
  const char *pool = fh_cfg_str(cfg, "fedgc.pool");
  const int holdout = fh_cfg_enum(cfg, "fedgc.source") == 1; /* generator|holdout */
  const int from = holdout ? 2 : pool[0] ? 1 : 0;                  /* for report */
  char name[1100];
  int rc = 0;
  if (holdout && pool[0])
    rc = FH_FAIL(FH_ERR_CONFIG, "fedgc.source = holdout deals the server's real rows, and fedgc.pool = %s names a "
                                "second source; leave fedgc.pool empty or set fedgc.source = generator", pool);
  else if (from) {
    snprintf(name, sizeof name, holdout ? "the server's hold-out" : "the pool %s", pool);
    s.name = name;
    rc = fh_error_agree(run->comm, holdout ? holdout_source(run, Mk, &s, &pa) : pool_source(run, pool, Mk, &s, &pa));
    const int draw = fh_cfg_enum(cfg, "fedgc.pool_draw"); /* disjoint|replace|cycle */
    s.cycle = draw == 2;
    if (rc == 0 && draw != 1) {
      rc = fh_error_agree(run->comm, pool_disjoint(run, &s, Mk, pa.row, &pa.first));
      s.first = pa.first;
    }
    if (rc == 0) warn_pool_ignores(run, holdout);
  } else {
    rc = fit_server(run, &g);
    freq = fh_calloc((size_t)C, sizeof(double));
    if (rc == 0) memcpy(freq, g.class_freq, (size_t)C * sizeof(double));
    s.g = &g, s.freq = freq, s.routes = 1;
  }
  const double t_fit = MPI_Wtime() - t0;

  if (rc == 0) {
    generate_all(run, &s, Mk);
    double t_gen = MPI_Wtime() - t0 - t_fit;
    MPI_Allreduce(MPI_IN_PLACE, &t_gen, 1, MPI_DOUBLE, MPI_MAX, run->comm);
    report(run, &s, Mk, level, from, t_fit, t_gen);
  }
  fh_generator_free(&g);
  pool_free(&pa);
  free(freq), free(n), free(Mk);
  return rc;
}

static int fedgc_data_ready(fh_run *run, void **state) {
  (void)state;
  return fh_fedgc_prepare(run);
}

/* Tests: FedAvg with FedGC's generated data on the digits, whose server rows
 * train the generator: the data are regenerated on resume, on any rank
 * count; the membership score is written at the end. */
static const fh_test_case fedgc_tests[] = {
    {"fedavg+fedgc", FH_TEST_RESUME, "data.source=hdf5 data.path=@SRC_DIR@/input/digits.h5 data.server_fraction=0.2 data.server_shards=6 partition.method=dirichlet partition.alpha=0.3 partition.min_size=2 fedgc.enabled=true fedgc.total=2000 fedgc.membership=true train.epochs=2", "", "fedavg"},
    {"fedavg+fedgc-holdout", FH_TEST_RESUME_SHORT, "data.source=hdf5 data.path=@SRC_DIR@/input/digits.h5 data.server_fraction=0.2 data.server_shards=6 partition.method=dirichlet partition.alpha=0.3 partition.min_size=2 fedgc.enabled=true fedgc.source=holdout fedgc.total=500 fedgc.budget=waterfill fedgc.pool_draw=cycle fedgc.membership=true train.epochs=2", "", "fedavg"},
    {NULL, 0, NULL, NULL, NULL}};

const fh_addon fh_addon_fedgc = {
    .name = "fedgc",
    .summary = "FedGC: one-shot generated samples join every client's train split before round 1 "
               "(fedgc.enabled)",
    .keys = fh_fedgc_keys,
    .enabled = fedgc_enabled,
    .data_ready = fedgc_data_ready,
    .tests = fedgc_tests,
};
