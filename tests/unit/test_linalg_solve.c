/* The one-rank path of the linalg module (a 1 x 1 grid: LAPACK does the work)
 * and the argument checks that keep bad shapes away from ScaLAPACK, which would
 * abort the whole run on them. Runs as a single MPI process. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <mpi.h>

#include "core/error.h"
#include "linalg/distmatrix.h"
#include "linalg/gram.h"
#include "linalg/grid.h"
#include "linalg/solve.h"

static int setup_grid(void **state) {
  fh_grid *g = NULL;
  if (fh_grid_create(MPI_COMM_WORLD, 2, &g) != 0) return -1;
  *state = g;
  return 0;
}

static int teardown_grid(void **state) {
  fh_grid_destroy(*state);
  fh_error_clear();
  return 0;
}

static void grid_of_one_rank(void **state) {
  const fh_grid *g = *state;
  assert_int_equal(g->nprow, 1);
  assert_int_equal(g->npcol, 1);
  assert_int_equal(g->myrow, 0);
  assert_int_equal(g->mycol, 0);
  assert_true(g->ctxt >= 0);
  assert_true(g->ctxt_root >= 0);
  assert_int_equal(g->block, 2);
}

/* A = [[4, 2, 0], [2, 5, 3], [0, 3, 6]] (lower triangle only is read, the upper
 * holds garbage), x = [1, -1, 2]: b = A x = [2, 3, 9]. */
static void solves_a_small_system_exactly(void **state) {
  const fh_grid *g = *state;
  double a[9] = {4, 2, 0, /**/ 99, 5, 3, /**/ 99, 99, 6};
  double b[3] = {2, 3, 9};
  assert_int_equal(fh_spd_solve_rank0(g, 3, 1, a, 3, b, 3), 0);
  assert_true(fabs(b[0] - 1.0) < 1e-14);
  assert_true(fabs(b[1] + 1.0) < 1e-14);
  assert_true(fabs(b[2] - 2.0) < 1e-14);
  assert_true(a[3] == 99.0 && a[0] == 4.0); /* A is read-only */
}

static void reports_the_failing_minor(void **state) {
  const fh_grid *g = *state;
  double a[4] = {1, 2, 2, 1}; /* eigenvalues 3 and -1 */
  double b[2] = {1, 1};
  fh_error_clear();
  assert_int_equal(fh_spd_solve_rank0(g, 2, 1, a, 2, b, 2), FH_ERR_RUNTIME);
  assert_non_null(strstr(fh_error_msg(), "dpotrf: matrix is not positive definite (leading minor 2 of 2)"));
  fh_error_clear();
}

static void refuses_a_short_leading_dimension(void **state) {
  const fh_grid *g = *state;
  double a[9] = {0}, b[3] = {0};
  fh_error_clear();
  assert_int_equal(fh_spd_solve_rank0(g, 3, 1, a, 2, b, 3), FH_ERR_RUNTIME);
  assert_non_null(strstr(fh_error_msg(), "leading dimensions >= n = 3 (got lda = 2, ldb = 3)"));
  fh_error_clear();
}

static void refuses_mismatched_shapes(void **state) {
  const fh_grid *g = *state;
  fh_distmatrix *a = NULL, *b = NULL, *rect = NULL, *odd = NULL;
  assert_int_equal(fh_distmatrix_create(g, 4, 4, 0, 0, &a), 0);
  assert_int_equal(fh_distmatrix_create(g, 5, 1, 0, 0, &b), 0);
  assert_int_equal(fh_distmatrix_create(g, 4, 3, 0, 0, &rect), 0);
  assert_int_equal(fh_distmatrix_create(g, 4, 4, 2, 3, &odd), 0);

  fh_error_clear();
  assert_int_equal(fh_spd_solve(a, b), FH_ERR_RUNTIME);
  assert_non_null(strstr(fh_error_msg(), "A is 4 x 4 but B has 5 rows"));
  fh_error_clear();
  assert_int_equal(fh_spd_solve(rect, b), FH_ERR_RUNTIME);
  assert_non_null(strstr(fh_error_msg(), "A is 4 x 3, not square"));
  fh_error_clear();
  assert_int_equal(fh_spd_solve(odd, rect), FH_ERR_RUNTIME);
  assert_non_null(strstr(fh_error_msg(), "A needs square blocks, has 2 x 3"));
  fh_error_clear();
  assert_int_equal(fh_dist_gram(1.0, rect, 0.0, a), FH_ERR_RUNTIME);
  assert_non_null(strstr(fh_error_msg(), "A is 4 x 3, so C must be 3 x 3, not 4 x 4"));
  fh_error_clear();
  fh_distmatrix *neg = NULL;
  assert_int_equal(fh_distmatrix_create(g, -1, 2, 0, 0, &neg), FH_ERR_RUNTIME);
  assert_null(neg);
  fh_error_clear();

  fh_distmatrix_destroy(odd);
  fh_distmatrix_destroy(rect);
  fh_distmatrix_destroy(b);
  fh_distmatrix_destroy(a);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(grid_of_one_rank),
      cmocka_unit_test(solves_a_small_system_exactly),
      cmocka_unit_test(reports_the_failing_minor),
      cmocka_unit_test(refuses_a_short_leading_dimension),
      cmocka_unit_test(refuses_mismatched_shapes),
  };
  int failed = cmocka_run_group_tests(tests, setup_grid, teardown_grid);
  fh_linalg_finalize();
  MPI_Finalize();
  return failed;
}
