/* Block-cyclic layout, scatter/gather, fill, set and symmetrize on the grid of
 * all ranks, for shapes with ragged edges, non-square blocks, a matrix smaller
 * than one block and an empty one. Entries are exact in double (i * 1000 + j),
 * so every comparison is exact.
 *
 *   mpi_linalg_distmatrix */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "core/error.h"
#include "core/rng.h"
#include "linalg/distmatrix.h"
#include "linalg/grid.h"
#include "mpi_linalg_check.h"

static double index_entry(int i, int j, void *ctx) {
  (void)ctx;
  return i * 1000.0 + j;
}

static double lower_or_garbage(int i, int j, void *ctx) {
  (void)ctx;
  return i >= j ? index_entry(i, j, NULL) : -1.0;
}

static double symmetric_entry(int i, int j, void *ctx) {
  (void)ctx;
  return i >= j ? index_entry(i, j, NULL) : index_entry(j, i, NULL);
}

/* Gathers a to rank 0 (leading dimension m + 1) and compares with f exactly.
 * Returns 1 on ranks other than 0. */
static int gathered_equals(const fh_distmatrix *a, fh_entry_fn f, const char *what) {
  const int ld = a->m + 1;
  double *full = a->grid->rank == 0 ? fh_calloc((size_t)ld * (a->n ? a->n : 1), sizeof *full) : NULL;
  fh_distmatrix_gather(a, full, ld);
  int bad = 0;
  if (a->grid->rank == 0) {
    for (int j = 0; j < a->n; ++j)
      for (int i = 0; i < a->m; ++i)
        if (full[i + (size_t)j * ld] != f(i, j, NULL)) {
          if (!bad)
            printf("  %s: entry (%d, %d) is %g, expected %g\n", what, i, j,
                   full[i + (size_t)j * ld], f(i, j, NULL));
          bad++;
        }
  }
  free(full);
  return bad == 0;
}

/* Every local entry equals f at its global index. */
static int local_equals(const fh_distmatrix *a, fh_entry_fn f, const char *what) {
  for (int lj = 0; lj < a->local_cols; ++lj)
    for (int li = 0; li < a->local_rows; ++li) {
      int i = fh_distmatrix_global_row(a, li), j = fh_distmatrix_global_col(a, lj);
      if (a->local[li + (size_t)lj * a->lld] != f(i, j, NULL)) {
        fprintf(stderr, "rank %d: %s: local (%d, %d) = global (%d, %d) holds %g, expected %g\n",
                a->grid->rank, what, li, lj, i, j, a->local[li + (size_t)lj * a->lld],
                f(i, j, NULL));
        return 0;
      }
    }
  return 1;
}

static double diag_set(int i, int j, void *ctx) {
  (void)ctx;
  return i == j ? 5.0 : 2.0;
}

static int check_shape(const fh_grid *g, int m, int n, int mb, int nb) {
  fh_distmatrix *a = NULL;
  if (fh_distmatrix_create(g, m, n, mb, nb, &a) != 0) {
    fprintf(stderr, "rank %d: %s\n", g->rank, fh_error_msg());
    return 0;
  }
  int ok = 1;

  /* the ranks' shares partition the matrix */
  long long mine = (long long)a->local_rows * a->local_cols, total = 0;
  MPI_Allreduce(&mine, &total, 1, MPI_LONG_LONG, MPI_SUM, g->comm);
  if (total != (long long)m * n) {
    if (g->rank == 0) printf("  local shares hold %lld entries, expected %d\n", total, m * n);
    ok = 0;
  }

  /* fill locally -> gather */
  fh_distmatrix_fill(a, index_entry, NULL);
  ok = gathered_equals(a, index_entry, "fill + gather") && ok;

  /* scatter from rank 0 (padded leading dimension) -> local entries */
  fh_distmatrix_set(a, 0.0, 0.0);
  const int ld = m + 3;
  double *full = NULL;
  if (g->rank == 0) {
    full = fh_calloc((size_t)ld * (n ? n : 1), sizeof *full);
    for (int j = 0; j < n; ++j)
      for (int i = 0; i < m; ++i) full[i + (size_t)j * ld] = index_entry(i, j, NULL);
  }
  fh_distmatrix_scatter(a, full, ld);
  free(full);
  ok = local_equals(a, index_entry, "scatter") && ok;

  fh_distmatrix_set(a, 2.0, 5.0);
  ok = gathered_equals(a, diag_set, "set") && ok;

  if (m == n) {
    fh_distmatrix_fill(a, lower_or_garbage, NULL);
    if (fh_distmatrix_symmetrize_lower(a) != 0) ok = 0;
    ok = gathered_equals(a, symmetric_entry, "symmetrize") && ok;
  }

  int all = 0;
  MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, g->comm);
  if (g->rank == 0)
    printf("  %4d x %-4d in %2d x %-2d blocks: layout, fill, scatter, gather, set%s: %s\n", m, n,
           a->mb, a->nb, m == n ? ", symmetrize" : "", all ? "ok" : "FAILED");
  fh_distmatrix_destroy(a);
  return ok;
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  fh_grid *g = NULL;
  if (fh_grid_create(MPI_COMM_WORLD, 32, &g) != 0) {
    fprintf(stderr, "grid: %s\n", fh_error_msg());
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  if (g->rank == 0) printf("distributed matrices on a %d x %d grid\n", g->nprow, g->npcol);
  const int shapes[][4] = {{157, 91, 16, 24}, {300, 300, 32, 32}, {91, 157, 7, 5},
                           {5, 3, 64, 64},    {1, 1, 1, 1},       {130, 130, 0, 0},
                           {100, 100, 8, 12}, {0, 7, 4, 4},      {7, 0, 4, 4}};
  int ok = 1;
  for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; ++k)
    ok = check_shape(g, shapes[k][0], shapes[k][1], shapes[k][2], shapes[k][3]) && ok;

  /* a non-square matrix cannot be symmetrized */
  fh_distmatrix *a = NULL;
  if (fh_distmatrix_create(g, 4, 5, 0, 0, &a) != 0) MPI_Abort(MPI_COMM_WORLD, 1);
  int rc = fh_distmatrix_symmetrize_lower(a);
  if (rc != FH_ERR_RUNTIME || !strstr(fh_error_msg(), "4 x 5, not square")) {
    fprintf(stderr, "rank %d: symmetrize of 4 x 5 gave %d \"%s\"\n", g->rank, rc, fh_error_msg());
    ok = 0;
  }
  fh_error_clear();
  fh_distmatrix_destroy(a);

  int status = check_all_passed(g->comm, ok);
  fh_grid_destroy(g);
  fh_linalg_finalize();
  MPI_Finalize();
  return status;
}
