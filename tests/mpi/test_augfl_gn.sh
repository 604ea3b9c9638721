#!/usr/bin/env bash
# AugFL's second-order server step: the classifier's Gauss-Newton system
# formed from Jacobian rows spread over the ranks (pdsyrk) and solved by
# ScaLAPACK's Cholesky equals LAPACK's solve of the same system built densely
# on rank 0, on 1 (LAPACK), 2 (1x2 grid) and 4 (2x2 grid) ranks, with the
# samples in blocks and all on one rank; several Jacobian chunks, the last
# padded; then a wider classifier in larger blocks. The same over a whole
# model (an MLP 7-12-4, 148 unknowns over three grid blocks): Jacobian rows
# from per-sample backward passes against the model's own backward and
# LAPACK on rank 0.
source "$(dirname "$0")/lib.sh"
for np in 1 2 4; do fh_run_prog "$np" mpi_gn_head 157 13 5 16; done
for np in 2 4; do fh_run_prog "$np" mpi_gn_head 300 40 10 64; done
for np in 1 2 4; do fh_run_prog "$np" mpi_gn_model 61 7 12 4 8; done
echo "$NCHECKS passed, 0 failed"
