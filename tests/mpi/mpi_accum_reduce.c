/* The fixed-point accumulator's reduction against MPI_Reduce / MPI_Allreduce
 * of the same int64 sums, on any rank count:
 *
 *   mpi_accum_reduce
 *
 * For payloads of several lengths (a single sum, odd lengths, lengths across
 * the segments of the two-rank exchange), every rank adds rank-dependent
 * contributions of both signs and magnitudes near the accumulator's limit;
 * then fh_accum_reduce must give the root the same bits as MPI_Reduce and
 * leave every other rank's sums as they were, and fh_accum_allreduce must
 * give every rank the same bits as MPI_Allreduce. Root 0 and root 1 (when
 * there are two ranks or more) are both checked, each with the sums in
 * private memory (the message paths) and in the node's shared window
 * (fh_accum_share, before the contributions or after them: the values it
 * holds are kept). Exits non-zero on the first difference. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "core/rng.h"
#include "fl/accumulate.h"

static int check(size_t n, int root, MPI_Comm comm, int shared) {
  int rank, nranks;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &nranks);
  fh_rng r;
  fh_rng_init(&r, 77, FH_RNG_TEST, (uint32_t)rank, (uint32_t)n);
  float *x = malloc((n + 1) * sizeof(float));
  fh_accum a;
  fh_accum_create(&a, n, 32, 4 * nranks);
  if (shared == 1) fh_accum_share(&a, comm);
  for (int c = 0; c < 3; c++) { /* three contributions per rank */
    for (size_t i = 0; i < n; i++) {
      const double u = fh_rng_uniform(&r);
      x[i] = (float)((u - 0.5) * (i % 7 == 0 ? 1e5 : 3.0));
    }
    if (fh_accum_add(&a, x, 1.0 + rank + 0.25 * c)) {
      fprintf(stderr, "add failed\n");
      return 1;
    }
  }
  if (shared == 2) fh_accum_share(&a, comm);
  if (shared && nranks > 1 && !a.shm) {
    fprintf(stderr, "rank %d: the sums were not moved to a shared window\n", rank);
    return 1;
  }
  const size_t bytes = (n + 1) * sizeof(int64_t);
  int64_t *mine = malloc(bytes), *want = malloc(bytes);
  memcpy(mine, a.sum, bytes);
  MPI_Reduce(mine, want, (int)(n + 1), MPI_INT64_T, MPI_SUM, root, comm);
  fh_accum_reduce(&a, root, comm);
  int bad = rank == root ? memcmp(a.sum, want, bytes) != 0 : memcmp(a.sum, mine, bytes) != 0;
  if (bad) fprintf(stderr, "rank %d: reduce to root %d differs, n = %zu, shared %d\n", rank, root, n, shared);
  memcpy(a.sum, mine, bytes);
  MPI_Allreduce(mine, want, (int)(n + 1), MPI_INT64_T, MPI_SUM, comm);
  fh_accum_allreduce(&a, comm);
  if (memcmp(a.sum, want, bytes) != 0) {
    fprintf(stderr, "rank %d: allreduce differs, n = %zu, shared %d\n", rank, n, shared);
    bad = 1;
  }
  fh_accum_destroy(&a);
  free(x), free(mine), free(want);
  MPI_Allreduce(MPI_IN_PLACE, &bad, 1, MPI_INT, MPI_MAX, comm);
  return bad;
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank, nranks;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &nranks);
  const size_t lengths[] = {0, 1, 2, 7, 65535, 65536, 65537, 131071, 200003, 300007, 600011};
  int bad = 0, checks = 0;
  for (int shared = 0; shared <= 2; shared++)
    for (size_t k = 0; k < sizeof lengths / sizeof lengths[0] && !bad; k++)
      for (int root = 0; root < (nranks > 1 ? 2 : 1) && !bad; root++, checks++)
        bad = check(lengths[k], root, MPI_COMM_WORLD, shared);
  if (rank == 0 && !bad) printf("%d reductions equal to MPI's on %d ranks\n", checks, nranks);
  MPI_Finalize();
  return bad;
}
