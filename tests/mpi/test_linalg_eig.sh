#!/usr/bin/env bash
# Symmetric eigendecomposition on 1, 2 and 4 ranks (dsyevd on one rank,
# ScaLAPACK pdsyevd on a 1 x 2 and a 2 x 2 grid) against LAPACK dsyevd on rank
# 0: a 200 x 200 matrix in blocks of 32, a 75 x 75 one in blocks of 16 (blocks
# that do not divide the size), and 64 x 64 and 100 x 100 ones in blocks of 64
# (one block, and a partial second one: the shapes whose workspace query comes
# out short). ScaLAPACK's complaints on stderr fail the test too.
# Tolerances in mpi_linalg_eig.c.
source "$(dirname "$0")/lib.sh"
for np in 1 2 4; do
  for shape in "200 32" "75 16" "64 64" "100 64"; do
    read -r n nb <<<"$shape"
    fh_run_prog "$np" mpi_linalg_eig "$n" "$nb" 2>"$TMP/err" || { cat "$TMP/err"; fail "$np ranks, $n x $n"; }
    ! grep -q "illegal value" "$TMP/err" || { cat "$TMP/err"; fail "$np ranks, $n x $n: ScaLAPACK refused an argument"; }
  done
done
echo "$NCHECKS passed, 0 failed"
