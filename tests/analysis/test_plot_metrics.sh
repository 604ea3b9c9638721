#!/bin/bash
# analysis/plot_metrics.py and plot_profile.py on real runs: two short runs with
# different seeds -> PNGs that are valid, non-trivial and of the requested
# pixel size; missing or wrong inputs -> exit 2 with one line on stderr.
# Env (from ctest): FEDHPC, SRC_DIR, and the OMPI root variables.
set -euo pipefail

: "${FEDHPC:?FEDHPC must point to the fedhpc binary}"
: "${SRC_DIR:?SRC_DIR must point to the source tree}"
MPIRUN=${MPIEXEC:-mpirun}
PLOT_METRICS="$SRC_DIR/analysis/plot_metrics.py"
PLOT_PROFILE="$SRC_DIR/analysis/plot_profile.py"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/fh_analysis.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

failures=0
pass() { echo "ok:   $*"; }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# check_png FILE WIDTH HEIGHT: signature, size > 10 kB, IHDR dimensions.
check_png() {
  local file=$1 width=$2 height=$3
  if [[ ! -f $file ]]; then fail "$file was not written"; return; fi
  local info
  info=$(/usr/bin/python3 - "$file" <<'PY'
import struct, sys
data = open(sys.argv[1], "rb").read(32)
sig = data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
w, h = struct.unpack(">II", data[16:24]) if sig else (0, 0)
print(int(sig), w, h)
PY
)
  local sig w h bytes
  read -r sig w h <<<"$info"
  bytes=$(stat -c %s "$file")
  local name
  name=$(basename "$file")
  if [[ $sig == 1 ]]; then pass "$name starts with the PNG signature and IHDR"
  else fail "$name is not a PNG"; fi
  if ((bytes > 10240)); then pass "$name is $bytes bytes (> 10 kB)"
  else fail "$name is only $bytes bytes"; fi
  if [[ $w == "$width" && $h == "$height" ]]; then pass "$name is ${w}x${h} as requested"
  else fail "$name is ${w}x${h}, requested ${width}x${height}"; fi
}

# expect_usage_error DESCRIPTION CMD...: exit 2 and exactly one line on stderr.
expect_usage_error() {
  local what=$1; shift
  local rc=0
  "$@" >"$TMP/out" 2>"$TMP/err" || rc=$?
  local lines
  lines=$(wc -l <"$TMP/err")
  if [[ $rc == 2 && $lines == 1 ]]; then
    pass "$what: exit 2, stderr: $(cat "$TMP/err")"
  else
    fail "$what: exit $rc with $lines stderr lines (want exit 2, 1 line):"
    sed 's/^/      /' "$TMP/err"
  fi
}

for seed in 1 2; do
  "$MPIRUN" -np 2 --oversubscribe -x OPENBLAS_NUM_THREADS=1 "$FEDHPC" run \
    "$SRC_DIR/input/quickstart.ini" --set run.rounds=8 --set run.seed=$seed \
    --set output.dir="$TMP/runs" --set output.name=seed$seed >"$TMP/run$seed.log" 2>&1 \
    || { cat "$TMP/run$seed.log"; echo "FAIL: fedhpc run with seed $seed"; exit 1; }
  [[ -f $TMP/runs/seed$seed/metrics.h5 && -f $TMP/runs/seed$seed/profile.h5 ]] \
    || { echo "FAIL: run seed$seed left no metrics.h5/profile.h5"; ls -l "$TMP/runs/seed$seed"; exit 1; }
done
pass "two 8-round runs (seeds 1 and 2) wrote metrics.h5 and profile.h5"

# Learning curves of both runs, one given as a folder and one as a file.
rc=0
"$PLOT_METRICS" "$TMP/runs/seed1" "$TMP/runs/seed2/metrics.h5" -o "$TMP/curves.png" \
  --title "seed 1 vs seed 2" --size 1200x500 >"$TMP/out" 2>"$TMP/err" || rc=$?
if [[ $rc == 0 ]]; then pass "plot_metrics.py exit 0"; else fail "plot_metrics.py exit $rc"; cat "$TMP/err"; fi
if grep -qxF "$TMP/curves.png" "$TMP/out"; then pass "plot_metrics.py printed the output path"
else fail "plot_metrics.py did not print the output path"; fi
check_png "$TMP/curves.png" 1200 500

# Time per phase per rank.
rc=0
"$PLOT_PROFILE" "$TMP/runs/seed1" -o "$TMP/profile.png" --size 900x600 >"$TMP/out" 2>"$TMP/err" || rc=$?
if [[ $rc == 0 ]]; then pass "plot_profile.py exit 0"; else fail "plot_profile.py exit $rc"; cat "$TMP/err"; fi
for phase in broadcast local reduce server eval io total; do
  grep -qE "^ +$phase +[0-9.]+ +[0-9.]+ +[0-9.]+" "$TMP/out" \
    || fail "plot_profile.py table has no min/mean/max row for '$phase'"
done
pass "plot_profile.py table has min/mean/max rows for every phase"
check_png "$TMP/profile.png" 900 600

# A run folder holding only metrics.h5.partial is read, said on stderr and marked.
mkdir -p "$TMP/runs/live"
cp "$TMP/runs/seed2/metrics.h5" "$TMP/runs/live/metrics.h5.partial"
rc=0
"$PLOT_METRICS" "$TMP/runs/live" -o "$TMP/partial.png" >"$TMP/out" 2>"$TMP/err" || rc=$?
if [[ $rc == 0 ]] && grep -q "metrics.h5.partial" "$TMP/err"; then
  pass "metrics.h5.partial is used and reported on stderr"
else
  fail "metrics.h5.partial: exit $rc, stderr: $(cat "$TMP/err")"
fi

expect_usage_error "missing run folder" "$PLOT_METRICS" "$TMP/no_such_run" -o "$TMP/x.png"
expect_usage_error "folder without metrics.h5" "$PLOT_METRICS" "$TMP/runs" -o "$TMP/x.png"
expect_usage_error "file without test_accuracy" "$PLOT_METRICS" "$TMP/runs/seed1/profile.h5" -o "$TMP/x.png"
expect_usage_error "plot_profile.py on a missing run folder" "$PLOT_PROFILE" "$TMP/no_such_run" -o "$TMP/x.png"
expect_usage_error "plot_profile.py on a metrics file" "$PLOT_PROFILE" "$TMP/runs/seed1/metrics.h5" -o "$TMP/x.png"
if [[ ! -e $TMP/x.png ]]; then pass "no PNG written on error"
else fail "a PNG was written despite an error"; fi

if ((failures > 0)); then
  echo "$failures check(s) failed"
  exit 1
fi
echo "all checks passed"
