#!/bin/bash
# scripts/lips_sweep.sh, analysis/lips_table.py and analysis/plot_inertia.py on
# real runs: FedAvg and FedAvg+LIPS x two seeds of a short synthimg run -> a
# table row per method over 2 seeds with accuracies in [0, 100], LIPS's own
# models measured and FedAvg's not, the masking cost only for LIPS; a sweep
# run again skips what is complete; the inertia heatmaps of one and of two
# runs are valid PNGs; bad inputs -> exit 2 with one line. Skips (exit 77)
# where python3 has no matplotlib.
# Env (from ctest): FEDHPC, SRC_DIR, and the OMPI root variables.
set -euo pipefail
: "${FEDHPC:?FEDHPC must point to the fedhpc binary}"
: "${SRC_DIR:?SRC_DIR must point to the source tree}"
/usr/bin/python3 -c "import matplotlib" 2>/dev/null || { echo "skip: python3 has no matplotlib"; exit 77; }
TMP=$(mktemp -d "${TMPDIR:-/tmp}/fh_lips_analysis.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

sets=(--set run.rounds=6 --set run.eval_every=3 --set lips.every=2 --set train.epochs=2)
"$SRC_DIR/scripts/lips_sweep.sh" "$SRC_DIR/input/lips_synthimg.ini" "$TMP/sweep" --np 1 --seeds "1 2" \
  --methods "fedavg lips" "${sets[@]}" >"$TMP/sweep.log" 2>&1 || { cat "$TMP/sweep.log"; fail "sweep"; }
grep -q FAILED "$TMP/sweep.log" && { cat "$TMP/sweep.log"; fail "a run of the sweep failed"; }
"$SRC_DIR/scripts/lips_sweep.sh" "$SRC_DIR/input/lips_synthimg.ini" "$TMP/sweep" --np 1 --seeds "1 2" \
  --methods "lips" "${sets[@]}" >"$TMP/again.log" 2>&1
[[ $(grep -c "^skip lips_s[12] (complete)" "$TMP/again.log") == 2 ]] || { cat "$TMP/again.log"; fail "no skip"; }
echo "ok:   sweep of 2 methods x 2 seeds; complete runs skipped"

/usr/bin/python3 "$SRC_DIR/analysis/lips_table.py" "$TMP/sweep" >"$TMP/table.txt" || fail "table"
cat "$TMP/table.txt"
/usr/bin/python3 - "$TMP/table.txt" <<'PY' || fail "table content"
import re, sys
text = open(sys.argv[1]).read()
num = r"(\d+\.\d+) \+- \d+\.\d+"
fa = re.search(rf"^fedavg\s+2\s+-\s+-\s+{num}\s+{num}\s+{num}\s+0\.0 \+- 0\.0\s", text, re.M)
assert fa, "fedavg row: no own models, global accuracies, no masking"
li = re.search(rf"^lips\s+2\s+{num}\s+{num}\s+{num}\s+{num}\s+{num}\s+{num}\s+{num}\s+{num}", text, re.M)
assert li, "lips row: own and global accuracies, masking cost"
for v in fa.groups() + li.groups()[:5]:
    assert 0 < float(v) <= 100, v
PY
echo "ok:   table"
/usr/bin/python3 "$SRC_DIR/analysis/lips_table.py" "$TMP/sweep" --markdown | grep -q "^| lips | 2 |" || fail "markdown"
mkdir -p "$TMP/empty"
rc=0
/usr/bin/python3 "$SRC_DIR/analysis/lips_table.py" "$TMP/empty" 2>"$TMP/err" || rc=$?
[[ $rc -ne 0 ]] && grep -q "no complete runs" "$TMP/err" || fail "empty folder: exit $rc"
echo "ok:   markdown; an empty folder is refused"

# check_png FILE: PNG signature, at least 10 kB
check_png() {
  /usr/bin/python3 -c 'import sys; d=open(sys.argv[1],"rb").read(); sys.exit(not (d[:8]==b"\x89PNG\r\n\x1a\n" and len(d)>10000))' "$1" \
    || fail "$1 is not a non-trivial PNG"
}
/usr/bin/python3 "$SRC_DIR/analysis/plot_inertia.py" "$TMP/sweep/fedavg_s1" "$TMP/sweep/lips_s1" -o "$TMP/two.png" \
  >/dev/null || fail "two runs"
check_png "$TMP/two.png"
/usr/bin/python3 "$SRC_DIR/analysis/plot_inertia.py" "$TMP/sweep/lips_s2/inertia.h5" --what cos,gdiv -o "$TMP/one.png" \
  >/dev/null || fail "one run"
check_png "$TMP/one.png"
echo "ok:   heatmaps of two runs and of one"
for bad in "$TMP/sweep/nothing" "$TMP/sweep/lips_s1 --what speed" "$TMP/sweep/lips_s1/metrics.h5"; do
  rc=0
  # shellcheck disable=SC2086
  /usr/bin/python3 "$SRC_DIR/analysis/plot_inertia.py" $bad -o "$TMP/bad.png" 2>"$TMP/err" || rc=$?
  [[ $rc -eq 2 && $(wc -l <"$TMP/err") -eq 1 ]] || { cat "$TMP/err"; fail "'$bad': exit $rc"; }
done
echo "ok:   bad inputs -> exit 2 with one line"
