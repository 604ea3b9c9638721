#include "fl/accumulate.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

void fh_accum_create(fh_accum *a, size_t n, int bits, int max_contributions) {
  a->n = n;
  a->bits = bits;
  a->scale = ldexp(1.0, bits);
  a->limit = ldexp(1.0, 62) / (max_contributions > 0 ? max_contributions : 1);
  a->sum = fh_calloc(n + 1, sizeof(int64_t));
}

void fh_accum_destroy(fh_accum *a) {
  free(a->sum);
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
  /* Range check first (a vectorised max), so the conversion loop has no branch
   * and compiles to packed multiplies and conversions. NaN fails the check. */
  float maxabs = 0.f;
  int finite = 1;
  for (size_t i = 0; i < count; i++) {
    float v = fabsf(x[i]);
    maxabs = v > maxabs ? v : maxabs;
    finite &= v <= FLT_MAX;
  }
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

void fh_accum_reduce(fh_accum *a, int root, MPI_Comm comm) { reduce_chunks(a, root, comm, 0); }
void fh_accum_allreduce(fh_accum *a, MPI_Comm comm) { reduce_chunks(a, 0, comm, 1); }

double fh_accum_weight(const fh_accum *a) { return (double)a->sum[a->n] / a->scale; }

double fh_accum_mean(const fh_accum *a, float *out) {
  double wsum = (double)a->sum[a->n];
  if (wsum == 0.0) return 0.0;
  for (size_t i = 0; i < a->n; i++) out[i] = (float)((double)a->sum[i] / wsum);
  return wsum / a->scale;
}
