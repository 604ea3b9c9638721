#!/bin/bash
# scripts/pfedafm_sweep.sh and analysis/pfedafm_table.py on real runs: three
# methods x two seeds of a short run -> both tables with a row per method over
# 2 seeds, accuracies in [0, 100], pFedAFM's bytes those of its G (Linear(60,
# 16): 3904 B each way), nothing for Standalone, FedKD's messages of SVD
# factors (fedkd.max_rank 4: 3 + 4 (1 + 16 + 60) + 4 (1 + 10 + 16) + 26 =
# 445 floats, 1780 B each way, against 4584 B dense);
# a sweep run again skips what is complete; an empty folder -> exit 1.
# Env (from ctest): FEDHPC, SRC_DIR, and the OMPI root variables.
set -euo pipefail
: "${FEDHPC:?FEDHPC must point to the fedhpc binary}"
: "${SRC_DIR:?SRC_DIR must point to the source tree}"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/fh_pfedafm_table.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

sets=(--set run.rounds=3 --set run.clients=8 --set run.client_fraction=0.5 --set model.hidden=16
      --set hetero.models=mlp-32-16,mlp-24-16 --set pfedafm.shared=mlp-16 --set hetero.epochs=1
      --set fedkd.max_rank=4)
"$SRC_DIR/scripts/pfedafm_sweep.sh" "$SRC_DIR/input/quickstart.ini" "$TMP/sweep" --np 1 --seeds "1 2" \
  --algs "pfedafm standalone fedkd" "${sets[@]}" >"$TMP/sweep.log" 2>&1 || { cat "$TMP/sweep.log"; fail "sweep"; }
grep -q FAILED "$TMP/sweep.log" && { cat "$TMP/sweep.log"; fail "a run of the sweep failed"; }
"$SRC_DIR/scripts/pfedafm_sweep.sh" "$SRC_DIR/input/quickstart.ini" "$TMP/sweep" --np 1 --seeds "1 2" \
  --algs "pfedafm" "${sets[@]}" >"$TMP/again.log" 2>&1
[[ $(grep -c "^skip pfedafm_s[12] (complete)" "$TMP/again.log") == 2 ]] || { cat "$TMP/again.log"; fail "no skip"; }
echo "ok:   sweep of 3 methods x 2 seeds; complete runs skipped"

/usr/bin/python3 "$SRC_DIR/analysis/pfedafm_table.py" "$TMP/sweep" >"$TMP/table.txt" || fail "table"
cat "$TMP/table.txt"
/usr/bin/python3 - "$TMP/table.txt" <<'PY' || fail "table content"
import re, sys
text = open(sys.argv[1]).read()
acc, comm = text.split("Communication and computation per round")
for m in ("pfedafm", "standalone", "fedkd"):
    row = re.search(rf"^{m}\s+2\s+([\d.]+) \+- ([\d.]+)", acc, re.M)
    assert row and 0 < float(row.group(1)) <= 100, m
assert re.search(r"^fedkd\s.*\d+\.\d+ \+- \d+\.\d+\s*$", acc, re.M), "fedkd's global column"
assert re.search(r"^pfedafm\s+3\.90 kB\s+3\.90 kB\s+31\.23 kB\s+\d", comm, re.M), "pfedafm bytes (4 clients a round)"
assert re.search(r"^standalone\s+0 B\s+0 B\s+0 B", comm, re.M), "standalone bytes"
assert re.search(r"^fedkd\s+1\.78 kB\s+1\.78 kB\s+14\.24 kB\s+\d", comm, re.M), "fedkd's messages of factors"
PY
echo "ok:   both tables"
/usr/bin/python3 "$SRC_DIR/analysis/pfedafm_table.py" "$TMP/sweep" --markdown >"$TMP/table.md" || fail "markdown"
grep -q "^| pfedafm | 2 |" "$TMP/table.md" || fail "markdown rows"
mkdir -p "$TMP/empty"
rc=0
/usr/bin/python3 "$SRC_DIR/analysis/pfedafm_table.py" "$TMP/empty" 2>"$TMP/err" || rc=$?
[[ $rc -ne 0 ]] && grep -q "no complete runs" "$TMP/err" || fail "empty folder: exit $rc"
echo "ok:   markdown; an empty folder is refused"
