#!/usr/bin/env bash
# SPD solves on 1 (LAPACK), 2 (1x2), 3 (1x3) and 4 (2x2) ranks against LAPACK on
# rank 0, n = 300 in blocks of 32 (ragged last block); then a matrix that is not
# positive definite must fail with pdpotrf's message on every rank, without a
# hang, and leave the grid usable.
source "$(dirname "$0")/lib.sh"
for np in 1 2 3 4; do fh_run_prog "$np" mpi_linalg_cholesky 300 32 3; done
for np in 1 2 3 4; do fh_run_prog "$np" mpi_linalg_not_spd 200 32; done
echo "$NCHECKS passed, 0 failed"
