#!/usr/bin/env bash
# Gram matrices C = alpha A^T A + beta C on 1, 2, 3 and 4 ranks against cblas
# dsyrk and dgemm on rank 0 (A 257 x 150 in blocks of 32, and in 20 x 24),
# and H = J^T J + 0.1 I solved on the grid against LAPACK.
source "$(dirname "$0")/lib.sh"
for np in 1 2 3 4; do fh_run_prog "$np" mpi_linalg_gram 257 150 32; done
echo "$NCHECKS passed, 0 failed"
