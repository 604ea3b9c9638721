#include "fl/accumulate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

void fh_accum_create(fh_accum *a, size_t n, int bits, int max_contributions) {
  a->shm = NULL;
  a->n = n;
  a->bits = bits;
  a->scale = ldexp(1.0, bits);
  a->limit = ldexp(1.0, 62) / (max_contributions > 0 ? max_contributions : 1);
  a->sum = fh_calloc(n + 1, sizeof(int64_t));
}

/* ---- the node's shared-memory reduction ------------------------------------- */

/* Rank r of P owns block r of the sums, [r B, min((r + 1) B, n + 1)) with B =
 * ceil((n + 1) / P). A window segment per rank: its sums, n + 1. */
struct fh_accum_shm {
  MPI_Comm comm;   /* the caller's communicator (reductions over another one take the message path) */
  MPI_Win win;
  int rank, nranks;
  size_t block;
  int64_t **sums;    /* [P] every rank's sums, mapped here     */
};

void fh_accum_share(fh_accum *a, MPI_Comm comm) {
  int rank, nranks, nnode;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &nranks);
  MPI_Comm node;
  MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node);
  MPI_Comm_size(node, &nnode);
  int all_here = nnode == nranks; /* the same answer on every rank: a node holds all or each holds fewer */
  MPI_Allreduce(MPI_IN_PLACE, &all_here, 1, MPI_INT, MPI_MIN, comm);
  if (nranks < 2 || !all_here || a->shm) {
    MPI_Comm_free(&node);
    return;
  }
  struct fh_accum_shm *s = fh_calloc(1, sizeof *s);
  s->comm = comm;
  s->rank = rank, s->nranks = nranks;
  s->block = (a->n + 1 + (size_t)nranks - 1) / (size_t)nranks;
  int64_t *base = NULL;
  MPI_Win_allocate_shared((MPI_Aint)((a->n + 1) * sizeof(int64_t)), sizeof(int64_t), MPI_INFO_NULL, node,
                          &base, &s->win);
  MPI_Comm_free(&node); /* the window keeps its own reference to the group */
  s->sums = fh_malloc((size_t)nranks * sizeof *s->sums);
  for (int q = 0; q < nranks; q++) { /* node ranks are comm ranks in the same order (key = rank) */
    MPI_Aint bytes;
    int disp;
    void *p;
    MPI_Win_shared_query(s->win, q, &bytes, &disp, &p);
    s->sums[q] = p;
  }
  memcpy(base, a->sum, (a->n + 1) * sizeof(int64_t));
  free(a->sum);
  a->sum = base;
  a->shm = s;
  MPI_Win_lock_all(MPI_MODE_NOCHECK, s->win); /* one passive epoch for the loads and stores */
}

/* Every rank's stores so far are visible to every rank's loads after it. */
static void shm_fence(const struct fh_accum_shm *s) {
  MPI_Win_sync(s->win);
  MPI_Barrier(s->comm);
  MPI_Win_sync(s->win);
}

/* dst[0, len) = sum over ranks of their sums[off, off + len): rank base's
 * (copied unless dst is already there), then the others' added (unsigned:
 * integer addition is exact, so any order gives the same bits). dst is only
 * ever memory that no other rank reads in this phase: base's sums at the
 * block this rank owns. */
static void shm_sum_block(const struct fh_accum_shm *s, int64_t *dst, int base, size_t off, size_t len) {
  uint64_t *restrict d = (uint64_t *)dst;
  const int64_t *first = s->sums[base] + off;
  if (dst != first) memcpy(dst, first, len * sizeof(int64_t));
  for (int q = 0; q < s->nranks; q++) {
    if (q == base) continue;
    const uint64_t *restrict p = (const uint64_t *)s->sums[q] + off;
    for (size_t i = 0; i < len; i++) d[i] += p[i];
  }
}

static void block_range(const struct fh_accum_shm *s, size_t total, int q, size_t *off, size_t *len) {
  const size_t b = (size_t)q * s->block;
  *off = b < total ? b : total;
  *len = b + s->block < total ? s->block : total - *off;
}

/* The reduction in place: rank r owns block r and writes its total where the
 * result is kept, so nothing is copied after the sums. In a reduce, into the
 * root's sums (nobody else reads block r of the root's sums; the other ranks'
 * sums stay as they were, as MPI_Reduce leaves its send buffer). In an
 * allreduce, into its own sums, a cache-sized piece at a time, each piece then
 * stored into every other rank's sums at once (nobody else reads block r of
 * any rank's sums, and the piece's reads are done before its stores). Two
 * fences: sums complete; totals written and every read done before any rank
 * changes its sums again. */
#define FH_ACCUM_PIECE ((size_t)4096) /* 32 KB of sums: stays in L1/L2 between its sum and its stores */
static void reduce_shared(fh_accum *a, int root, int all) {
  const struct fh_accum_shm *s = a->shm;
  const size_t total = a->n + 1;
  const int r = s->rank;
  size_t off, len;
  shm_fence(s);
  block_range(s, total, r, &off, &len);
  if (!all) {
    shm_sum_block(s, s->sums[root] + off, root, off, len);
  } else {
    for (size_t p = off; p < off + len; p += FH_ACCUM_PIECE) {
      const size_t m = off + len - p < FH_ACCUM_PIECE ? off + len - p : FH_ACCUM_PIECE;
      shm_sum_block(s, a->sum + p, r, p, m);
      for (int q = 0; q < s->nranks; q++)
        if (q != r) memcpy(s->sums[q] + p, a->sum + p, m * sizeof(int64_t));
    }
  }
  shm_fence(s);
}

void fh_accum_destroy(fh_accum *a) {
  if (a->shm) {
    MPI_Win_unlock_all(a->shm->win);
    MPI_Win_free(&a->shm->win); /* collective: frees the sums too */
    free(a->shm->sums);
    free(a->shm);
    a->shm = NULL;
  } else {
    free(a->sum);
  }
  a->sum = NULL;
}

void fh_accum_zero(fh_accum *a) { memset(a->sum, 0, (a->n + 1) * sizeof(int64_t)); }

int fh_accum_add(fh_accum *a, const float *x, double weight) { return fh_accum_add_range(a, x, 0, a->n, weight); }

int fh_accum_add_range(fh_accum *a, const float *x, size_t off, size_t count, double weight) {
  if (off > a->n || count > a->n - off)
    return FH_FAIL(FH_ERR_RUNTIME, "fixed-point sum: range [%zu, %zu) outside the %zu sums", off, off + count, a->n);
  const double limit = a->limit;
  const double ws = weight * a->scale;
  if (!(fabs(ws) < limit))
    return FH_FAIL(FH_ERR_DIVERGED, "aggregation weight %g is too large for run.accum_bits = %d",
                   weight, a->bits);
  /* Range check first, so the conversion loop has no branch and compiles to
   * packed multiplies and conversions. The check is an integer max over the
   * bit patterns of |x[i]| (sign cleared): for non-negative IEEE floats the
   * patterns order as the values do, and Inf and NaN lie above FLT_MAX's, so
   * one unsigned max (which the compiler packs; a float max with NaN rules it
   * does not) gives both the largest magnitude and whether all are finite. */
  uint32_t maxbits = 0;
  for (size_t i = 0; i < count; i++) {
    uint32_t u;
    memcpy(&u, &x[i], sizeof u);
    u &= 0x7fffffffu;
    maxbits = u > maxbits ? u : maxbits;
  }
  float maxabs;
  memcpy(&maxabs, &maxbits, sizeof maxabs);
  const int finite = maxbits <= 0x7f7fffffu; /* FLT_MAX's pattern */
  if (!finite || !(fabs(ws) * maxabs < limit)) {
    size_t i = 0;
    while (i + 1 < count && isfinite(x[i]) && fabs(ws * (double)x[i]) < limit) i++;
    return FH_FAIL(FH_ERR_DIVERGED,
                   "the model diverged: contribution element %zu = %g (weight %g) does not fit the "
                   "fixed-point sum (run.accum_bits = %d allows |weight * value| < %g with this many "
                   "clients per round); lower train.lr, or run.accum_bits if such values are expected",
                   off + i, (double)x[i], weight, a->bits, limit / a->scale);
  }
  int64_t *restrict sum = a->sum + off;
  for (size_t i = 0; i < count; i++) sum[i] += (int64_t)nearbyint(ws * (double)x[i]);
  a->sum[a->n] += (int64_t)nearbyint(ws);
  return 0;
}

/* MPI counts are int: reduce in chunks so payloads over 2^31 elements work. */
static void reduce_chunks(fh_accum *a, int root, MPI_Comm comm, int all) {
  int rank;
  MPI_Comm_rank(comm, &rank);
  const size_t chunk = (size_t)1 << 28;
  size_t total = a->n + 1;
  for (size_t off = 0; off < total; off += chunk) {
    int cnt = (int)(total - off < chunk ? total - off : chunk);
    if (all)
      MPI_Allreduce(MPI_IN_PLACE, a->sum + off, cnt, MPI_INT64_T, MPI_SUM, comm);
    else if (rank == root)
      MPI_Reduce(MPI_IN_PLACE, a->sum + off, cnt, MPI_INT64_T, MPI_SUM, root, comm);
    else
      MPI_Reduce(a->sum + off, NULL, cnt, MPI_INT64_T, MPI_SUM, root, comm);
  }
}

/* Two ranks: each sums one half of every segment (in parallel), then the
 * halves are joined on the root (or exchanged, for an allreduce). Each rank
 * moves and adds half the data where MPI_Reduce has the root add all of it.
 * Segments of at least FH_ACCUM_SEGMENT sums keep the exchanged halves in
 * cache; a payload is cut into at most FH_ACCUM_SEGMENTS of them, as every
 * segment is two rendezvous with the other rank (costly where ranks share
 * cores and wait to be scheduled). The
 * integer sums are exact, so the result is the same bits as MPI_Reduce's.
 * Without `all`, the non-root's sums are left as they were (as MPI_Reduce
 * leaves its send buffer). */
#define FH_ACCUM_SEGMENT ((size_t)1 << 16)
#define FH_ACCUM_SEGMENTS 4
/* Payloads up to this many sums take the exchange. Larger ones (measured with
 * ranks sharing oversubscribed cores, 1.2M sums) were slower in the median
 * than MPI_Reduce, whose large-message protocol waits less on the other rank
 * being scheduled; they keep MPI_Reduce. */
#define FH_ACCUM_PAIR_MAX ((size_t)1 << 19)
#define FH_ACCUM_TAG 4242 /* point-to-point tag on the caller's communicator */

/* dst = x + y (dst may be x); unsigned, where wrap-around is defined (no sum of
 * valid contributions wraps). */
static void add_into(int64_t *dst, const int64_t *x, const int64_t *restrict y, size_t n) {
  for (size_t i = 0; i < n; i++) dst[i] = (int64_t)((uint64_t)x[i] + (uint64_t)y[i]);
}

static void reduce_pair(fh_accum *a, int root, MPI_Comm comm, int all) {
  int rank;
  MPI_Comm_rank(comm, &rank);
  const int other = 1 - rank, lead = rank == root; /* the root keeps the lower halves */
  const size_t total = a->n + 1;
  size_t segment = (total + FH_ACCUM_SEGMENTS - 1) / FH_ACCUM_SEGMENTS;
  if (segment < FH_ACCUM_SEGMENT) segment = FH_ACCUM_SEGMENT;
  int64_t *tmp = fh_malloc(2 * segment * sizeof(int64_t)), *mine_sum = tmp + segment;
  for (size_t off = 0; off < total; off += segment) {
    const size_t len = total - off < segment ? total - off : segment;
    const size_t h = len / 2;
    int64_t *seg = a->sum + off;
    int64_t *keep = lead ? seg : seg + h, *give = lead ? seg + h : seg;
    const size_t nkeep = lead ? h : len - h, ngive = len - nkeep;
    MPI_Sendrecv(give, (int)ngive, MPI_INT64_T, other, FH_ACCUM_TAG, tmp, (int)nkeep, MPI_INT64_T,
                 other, FH_ACCUM_TAG, comm, MPI_STATUS_IGNORE);
    if (all || lead) {
      add_into(keep, keep, tmp, nkeep);
      if (all)
        MPI_Sendrecv(keep, (int)nkeep, MPI_INT64_T, other, FH_ACCUM_TAG, give, (int)ngive,
                     MPI_INT64_T, other, FH_ACCUM_TAG, comm, MPI_STATUS_IGNORE);
      else
        MPI_Recv(give, (int)ngive, MPI_INT64_T, other, FH_ACCUM_TAG, comm, MPI_STATUS_IGNORE);
    } else { /* the non-root sums into scratch, leaving its own sums intact */
      add_into(mine_sum, keep, tmp, nkeep);
      MPI_Send(mine_sum, (int)nkeep, MPI_INT64_T, other, FH_ACCUM_TAG, comm);
    }
  }
  free(tmp);
}

static void reduce_any(fh_accum *a, int root, MPI_Comm comm, int all) {
  int nranks, same = MPI_UNEQUAL;
  MPI_Comm_size(comm, &nranks);
  if (a->shm) MPI_Comm_compare(comm, a->shm->comm, &same);
  if (same == MPI_IDENT)
    reduce_shared(a, root, all);
  else if (nranks == 2 && a->n + 1 <= FH_ACCUM_PAIR_MAX)
    reduce_pair(a, root, comm, all);
  else /* one rank too: MPI's call moves nothing, and tools that count reductions see it */
    reduce_chunks(a, root, comm, all);
}

void fh_accum_reduce(fh_accum *a, int root, MPI_Comm comm) { reduce_any(a, root, comm, 0); }
void fh_accum_allreduce(fh_accum *a, MPI_Comm comm) { reduce_any(a, 0, comm, 1); }

double fh_accum_weight(const fh_accum *a) { return (double)a->sum[a->n] / a->scale; }

double fh_accum_mean(const fh_accum *a, float *out) {
  double wsum = (double)a->sum[a->n];
  if (wsum == 0.0) return 0.0;
  for (size_t i = 0; i < a->n; i++) out[i] = (float)((double)a->sum[i] / wsum);
  return wsum / a->scale;
}
