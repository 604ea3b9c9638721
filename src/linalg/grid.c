#include "linalg/grid.h"

#include <stdlib.h>

#include "core/error.h"
#include "linalg/scalapack.h"

void fh_grid_shape(int size, int *nprow, int *npcol) {
  int rows = 1;
  for (int r = 1; (long)r * r <= size; ++r)
    if (size % r == 0) rows = r;
  *nprow = rows;
  *npcol = size / rows;
}

int fh_grid_create(MPI_Comm comm, int block, fh_grid **out) {
  *out = NULL;
  fh_grid *g = fh_calloc(1, sizeof *g);
  g->comm = comm;
  MPI_Comm_rank(comm, &g->rank);
  MPI_Comm_size(comm, &g->size);
  g->block = block > 0 ? block : FH_GRID_DEFAULT_BLOCK;
  fh_grid_shape(g->size, &g->nprow, &g->npcol);

  /* The system handle only names comm to BLACS; each grid keeps communicators of
   * its own (made by Cblacs_gridinit), so the handle is released at once. */
  int handle = Csys2blacs_handle(comm);
  g->ctxt = handle;
  Cblacs_gridinit(&g->ctxt, "R", g->nprow, g->npcol);
  g->ctxt_root = handle;
  Cblacs_gridinit(&g->ctxt_root, "R", 1, 1);
  Cfree_blacs_system_handle(handle);

  int nprow = -1, npcol = -1;
  if (g->ctxt >= 0) Cblacs_gridinfo(g->ctxt, &nprow, &npcol, &g->myrow, &g->mycol);
  int ok = nprow == g->nprow && npcol == g->npcol && (g->rank == 0) == (g->ctxt_root >= 0);
  int all_ok = 0;
  MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, comm);
  if (!all_ok) {
    int nprow_want = g->nprow, npcol_want = g->npcol;
    fh_grid_destroy(g);
    return FH_FAIL(FH_ERR_RUNTIME,
                   "BLACS could not build a %d x %d process grid over %d ranks "
                   "(check that ScaLAPACK was built against the same MPI as fedhpc)",
                   nprow_want, npcol_want, nprow_want * npcol_want);
  }
  *out = g;
  return 0;
}

void fh_grid_destroy(fh_grid *g) {
  if (!g) return;
  if (g->ctxt_root >= 0) Cblacs_gridexit(g->ctxt_root);
  if (g->ctxt >= 0) Cblacs_gridexit(g->ctxt);
  free(g);
}

void fh_linalg_finalize(void) { Cblacs_exit(1); }
