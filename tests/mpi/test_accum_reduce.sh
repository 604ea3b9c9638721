#!/usr/bin/env bash
# The fixed-point accumulator's reduction (a pairwise exchange on two ranks,
# MPI_Reduce otherwise; in place in the node's shared window after
# fh_accum_share) gives the same bits as MPI_Reduce / MPI_Allreduce on 1 to 4
# ranks, and leaves the non-root ranks' sums untouched.
source "$(dirname "$0")/lib.sh"
for np in 1 2 3 4; do
  fh_run_prog "$np" mpi_accum_reduce
  ok "$np ranks: reductions equal to MPI's"
done
echo "$NCHECKS passed, 0 failed"
