/* A BLACS process grid over an MPI communicator: every rank of the communicator
 * takes one place in an nprow x npcol grid (row-major: rank r sits at row
 * r / npcol, column r % npcol), the most square factorisation of the size.
 * The grid also owns a 1 x 1 context that holds rank 0 alone, the source and
 * target of scatter and gather (distmatrix.h).
 *
 *   fh_grid *g;
 *   FH_TRY(fh_grid_create(comm, 0, &g));   (collective; block 0 = default 64)
 *   ... fh_distmatrix on g ...
 *   fh_grid_destroy(g);                    (collective)
 *
 * Fields are read-only after create. */
#ifndef FH_LINALG_GRID_H
#define FH_LINALG_GRID_H

#include <mpi.h>

#define FH_GRID_DEFAULT_BLOCK 64

typedef struct fh_grid {
  MPI_Comm comm;       /* the caller's communicator (not duplicated, not owned) */
  int rank, size;      /* in comm                                              */
  int nprow, npcol;    /* nprow * npcol == size, nprow <= npcol                */
  int myrow, mycol;    /* this rank's place                                    */
  int ctxt;            /* BLACS context of the whole grid                      */
  int ctxt_root;       /* BLACS context of the 1 x 1 grid {rank 0}; -1 elsewhere */
  int block;           /* square block size of matrices made on this grid      */
} fh_grid;

/* The most square nprow x npcol with nprow * npcol == size and nprow <= npcol:
 * 1 -> 1x1, 2 -> 1x2, 3 -> 1x3, 4 -> 2x2, 6 -> 2x3, 12 -> 3x4. */
void fh_grid_shape(int size, int *nprow, int *npcol);

/* Collective over comm. block <= 0 selects FH_GRID_DEFAULT_BLOCK.
 * Returns 0, or FH_ERR_RUNTIME when BLACS cannot build the grid. */
int fh_grid_create(MPI_Comm comm, int block, fh_grid **out);

/* Collective over the grid's comm; NULL is a no-op. */
void fh_grid_destroy(fh_grid *g);

/* Releases BLACS's internal buffers once no grid is left (MPI stays up). Call
 * once before MPI_Finalize when leak checkers should see a clean exit. */
void fh_linalg_finalize(void);

#endif
