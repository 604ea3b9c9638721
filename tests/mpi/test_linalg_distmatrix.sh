#!/usr/bin/env bash
# Block-cyclic matrices on 1, 2, 3 and 4 ranks: layout, local fill, scatter and
# gather through rank 0, set and symmetrize, compared exactly, for ragged
# shapes, non-square blocks, a matrix smaller than one block and empty ones.
source "$(dirname "$0")/lib.sh"
for np in 1 2 3 4; do fh_run_prog "$np" mpi_linalg_distmatrix; done
echo "$NCHECKS passed, 0 failed"
