# Shared by the MPI test scripts: launcher, temp dir, assertions.
# ctest sets FEDHPC (the binary), SRC_DIR, BUILD_DIR, MPIEXEC and the Open MPI
# variables for running as root with oversubscription.
set -euo pipefail
: "${FEDHPC:?set FEDHPC to the fedhpc binary}"
: "${SRC_DIR:?set SRC_DIR to the source tree}"
MPIEXEC=${MPIEXEC:-mpirun}
PY=/usr/bin/python3
TMP=$(mktemp -d /tmp/fedhpc-test.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
NCHECKS=0

# fh_mpirun NP ARGS...: the binary on NP ranks (120 s limit: a hang fails the test)
fh_mpirun() {
  local np=$1
  shift
  timeout 120 "$MPIEXEC" --allow-run-as-root --oversubscribe -np "$np" -x OPENBLAS_NUM_THREADS=1 "$FEDHPC" "$@"
}

fail() {
  echo "FAIL: $*" >&2
  exit 1
}
ok() {
  NCHECKS=$((NCHECKS + 1))
  echo "ok: $*"
}

# fh_run_prog NP PROGRAM ARGS...: a test program of tests/mpi (built in the tests/
# subdirectory of the build tree) on NP ranks; fails on a non-zero exit or a hang.
fh_run_prog() {
  local np=$1 prog=$2 exe="${BUILD_DIR:?set BUILD_DIR to the build directory}/tests/$2"
  shift 2
  [[ -x $exe ]] || fail "$prog is not built in $BUILD_DIR/tests"
  echo "== $prog on $np rank(s) $*"
  local rc=0
  timeout 300 "$MPIEXEC" --allow-run-as-root --oversubscribe -x OPENBLAS_NUM_THREADS=1 -np "$np" "$exe" "$@" || rc=$?
  [[ $rc -ne 124 ]] || fail "$prog on $np rank(s) did not finish within 300 s (a rank is stuck)"
  [[ $rc -eq 0 ]] || fail "$prog on $np rank(s) exited with $rc"
  NCHECKS=$((NCHECKS + 1))
}

# fh_cases CHECK: the cases of the registry-driven tests that take part in
# CHECK (ranks, resume, resume-short, deck; all: every case), one line each:
# "name|algorithm|--set k=v ...|measured datasets". They come from the binary
# (`fedhpc help algorithms --tests`: each algorithm's table in src/fl/alg/,
# each add-on's in src/fl/addons/), so a registered algorithm is tested without
# an edit here. FH_TEST_ONLY (a regular expression) keeps the cases whose name
# matches it.
fh_cases() {
  local check=$1 listing name alg checks settings measured sets kv
  listing=$(timeout 60 "$FEDHPC" help algorithms --tests) || fail "fedhpc help algorithms --tests"
  while IFS='|' read -r name alg checks settings measured; do
    [[ $check == all || ",$checks," == *",$check,"* ]] || continue
    [[ -z ${FH_TEST_ONLY:-} || $name =~ $FH_TEST_ONLY ]] || continue
    sets=""
    for kv in ${settings//@SRC_DIR@/$SRC_DIR}; do sets+=" --set $kv"; done
    echo "$name|$alg|${sets# }|$measured"
  done <<<"$listing"
}

# fh_expect NAME CODE PATTERN NP [VAR=VALUE ...] -- ARGS...: the binary on NP
# ranks (with those environment variables) ends within 60 s with exit CODE, no
# rank killed by a signal, and exactly one error line, matching PATTERN (grep
# -E); counts the case in FAULT_CASES. The output is in $TMP/NAME.log.
FAULT_CASES=0
fh_expect() {
  local name=$1 code=$2 pat=$3 np=$4 envs=() rc=0 t0=$SECONDS
  shift 4
  while [[ $# -gt 0 && $1 =~ ^[A-Z_][A-Z0-9_]*= ]]; do envs+=(-x "$1"); shift; done
  [[ ${1:-} != -- ]] || shift
  timeout 60 "$MPIEXEC" --allow-run-as-root --oversubscribe -np "$np" -x OPENBLAS_NUM_THREADS=1 "${envs[@]}" \
    "$FEDHPC" "$@" >"$TMP/$name.log" 2>&1 || rc=$?
  [[ $rc -ne 124 ]] || { tail -20 "$TMP/$name.log"; fail "$name: still running after 60 s (a hang)"; }
  [[ $rc -eq $code ]] || { tail -30 "$TMP/$name.log"; fail "$name: exit $rc, expected $code"; }
  ! grep -qiE "exited on signal|segmentation fault" "$TMP/$name.log" \
    || { cat "$TMP/$name.log"; fail "$name: a rank died of a signal"; }
  local nerr
  nerr=$(grep -c "^fedhpc: error:" "$TMP/$name.log" || true)
  [[ $nerr -eq 1 ]] || { cat "$TMP/$name.log"; fail "$name: $nerr error lines, expected 1"; }
  grep "^fedhpc: error:" "$TMP/$name.log" | grep -qE -- "$pat" \
    || { grep "^fedhpc: error:" "$TMP/$name.log"; fail "$name: the error line does not match /$pat/"; }
  FAULT_CASES=$((FAULT_CASES + 1))
  ok "$name: exit $rc in $((SECONDS - t0)) s: $(grep '^fedhpc: error:' "$TMP/$name.log" | cut -c1-170)"
}
