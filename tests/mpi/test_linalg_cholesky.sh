#!/usr/bin/env bash
# SPD solves on 1 (LAPACK), 2 (1x2), 3 (1x3) and 4 (2x2) ranks against LAPACK on
# rank 0, n = 300 in blocks of 32 (ragged last block); then a matrix that is not
# positive definite must fail with pdpotrf's message on every rank, without a
# hang, and leave the grid usable.
set -euo pipefail
: "${BUILD_DIR:?BUILD_DIR must point at the build directory}"
: "${MPIEXEC:=mpirun}"

# The test programs are built in the tests/ subdirectory of the build tree.
program() {
  local p
  for p in "$BUILD_DIR/tests/$1" "$BUILD_DIR/$1"; do
    [[ -x $p ]] && { echo "$p"; return; }
  done
  echo "FAIL: $1 is not built in $BUILD_DIR/tests or $BUILD_DIR" >&2
  exit 1
}

run() { # run NP PROGRAM ARGS...: fails the test on a non-zero exit or a hang
  local np=$1 prog=$2 exe
  exe=$(program "$prog")
  shift 2
  echo "== $prog on $np rank(s) $*"
  local rc=0
  timeout 300 "$MPIEXEC" --oversubscribe -x OPENBLAS_NUM_THREADS=1 -np "$np" "$exe" "$@" || rc=$?
  if [[ $rc -eq 124 ]]; then
    echo "FAIL: $prog on $np rank(s) did not finish within 300 s (a rank is stuck)" >&2
    exit 1
  elif [[ $rc -ne 0 ]]; then
    echo "FAIL: $prog on $np rank(s) exited with $rc" >&2
    exit 1
  fi
}

for np in 1 2 3 4; do run "$np" mpi_linalg_cholesky 300 32 3; done
for np in 1 2 3 4; do run "$np" mpi_linalg_not_spd 200 32; done
echo "test_linalg_cholesky: all passed"
