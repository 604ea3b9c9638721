/* Grid shapes and the block-cyclic index map, checked against ScaLAPACK's own
 * numroc / indxl2g. Pure arithmetic: no MPI, no BLACS. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "linalg/distmatrix.h"
#include "linalg/grid.h"
#include "linalg/scalapack.h"

static void grid_shapes_are_the_most_square(void **state) {
  (void)state;
  const int want[][3] = {{1, 1, 1}, {2, 1, 2}, {3, 1, 3}, {4, 2, 2},  {6, 2, 3},
                         {7, 1, 7}, {8, 2, 4}, {9, 3, 3}, {12, 3, 4}, {64, 8, 8}};
  for (size_t k = 0; k < sizeof want / sizeof want[0]; ++k) {
    int nprow = 0, npcol = 0;
    fh_grid_shape(want[k][0], &nprow, &npcol);
    assert_int_equal(nprow, want[k][1]);
    assert_int_equal(npcol, want[k][2]);
  }
  for (int size = 1; size <= 200; ++size) {
    int nprow = 0, npcol = 0;
    fh_grid_shape(size, &nprow, &npcol);
    assert_int_equal(nprow * npcol, size);
    assert_true(nprow <= npcol);
    /* no divisor of size lies strictly between nprow and sqrt(size) */
    for (int r = nprow + 1; r * r <= size; ++r) assert_int_not_equal(size % r, 0);
  }
}

/* For every process row of an nprow grid, local index -> global index agrees
 * with indxl2g, the local counts with numroc, and together the process rows
 * cover 0..m-1 exactly once. Columns use the same map (checked via mycol). */
static void index_map_matches_scalapack(void **state) {
  (void)state;
  const int ms[] = {0, 1, 5, 31, 32, 33, 300, 1001};
  const int blocks[] = {1, 3, 32, 64};
  const int zero = 0;
  for (int nprocs = 1; nprocs <= 5; ++nprocs)
    for (size_t bi = 0; bi < sizeof blocks / sizeof blocks[0]; ++bi)
      for (size_t mi = 0; mi < sizeof ms / sizeof ms[0]; ++mi) {
        const int m = ms[mi], nb = blocks[bi];
        int *seen = calloc(m ? m : 1, sizeof *seen);
        for (int p = 0; p < nprocs; ++p) {
          fh_grid g = {.nprow = nprocs, .npcol = nprocs, .myrow = p, .mycol = p};
          fh_distmatrix a = {.grid = &g, .m = m, .n = m, .mb = nb, .nb = nb};
          const int count = numroc_(&m, &nb, &p, &zero, &nprocs);
          for (int li = 0; li < count; ++li) {
            const int l1 = li + 1;
            const int want = indxl2g_(&l1, &nb, &p, &zero, &nprocs) - 1;
            assert_int_equal(fh_distmatrix_global_row(&a, li), want);
            assert_int_equal(fh_distmatrix_global_col(&a, li), want);
            assert_in_range(want, 0, m - 1);
            seen[want]++;
          }
        }
        for (int i = 0; i < m; ++i) assert_int_equal(seen[i], 1);
        free(seen);
      }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(grid_shapes_are_the_most_square),
      cmocka_unit_test(index_map_matches_scalapack),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
