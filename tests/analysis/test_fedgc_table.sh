#!/bin/bash
# scripts/fedgc_sweep.sh and analysis/fedgc_table.py on real runs (the digits
# deck, 3 rounds): the design-space part for one seed and the headline part for
# two -> three design tables with a row per candidate (the default marked),
# accuracies in [0, 100], MI AUCs in [0, 1], and the headline table with a row
# per algorithm over 2 seeds each way; a sweep run again skips what is
# complete; the budgets part, two runs at a time (--jobs 2): a row per
# algorithm with its run without FedGC and one per budget, MI AUCs in [0, 1]
# and seconds per round > 0; the holdout part (--budgets "equal waterfill")
# added to that folder: the runs without FedGC skipped, and the budgets table
# gains a hold-out column per budget that ran; an empty folder -> exit 1.
# Env (from ctest): FEDHPC, SRC_DIR, and the OMPI root variables.
set -euo pipefail
: "${FEDHPC:?FEDHPC must point to the fedhpc binary}"
: "${SRC_DIR:?SRC_DIR must point to the source tree}"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/fh_fedgc_table.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
cd "$SRC_DIR" # the deck names input/digits.h5

sets=(--set run.rounds=3 --set run.eval_every=1)
scripts/fedgc_sweep.sh input/fedgc_digits.ini "$TMP/sweep" --np 1 --seeds "1" --part design "${sets[@]}" \
  >"$TMP/sweep.log" 2>&1 || { cat "$TMP/sweep.log"; fail "design sweep"; }
scripts/fedgc_sweep.sh input/fedgc_digits.ini "$TMP/sweep" --np 1 --seeds "1 2" --part headline "${sets[@]}" \
  >>"$TMP/sweep.log" 2>&1 || { cat "$TMP/sweep.log"; fail "headline sweep"; }
! grep -q FAILED "$TMP/sweep.log" || { cat "$TMP/sweep.log"; fail "a run of the sweep failed"; }
grep -q "^skip fedavg-gc-inverse-diverse-mixed_s1 (complete)" "$TMP/sweep.log" || fail "the shared default run was not skipped"
echo "ok:   sweep: 7 design settings x 1 seed, 3 algorithms x 2 x 2 seeds; complete runs skipped"

/usr/bin/python3 analysis/fedgc_table.py "$TMP/sweep" >"$TMP/table.txt" || fail "table"
cat "$TMP/table.txt"
/usr/bin/python3 - "$TMP/table.txt" <<'PY' || fail "table content"
import re, sys
text = open(sys.argv[1]).read()
for axis, cands, default in (("budget", ["equal", "inverse", "waterfill"], "inverse"),
                             ("design", ["single", "multi", "diverse"], "diverse"),
                             ("guidance", ["prompt", "real", "mixed"], "mixed")):
    part = text.split(f"Design space, {axis}")[1].split("\n\n")[0]
    for c in cands:
        seeds = 2 if c == default else 1  # the default setting also ran for seed 2 in the headline part
        row = re.search(rf"^{c}( \(default\))?\s+{seeds}\s+([\d.]+) \+- [\d.]+\s+[\d.]+ \+- [\d.]+\s+([\d.]+) \+-", part, re.M)
        assert row, (axis, c)
        assert (row.group(1) is not None) == (c == default), (axis, c)
        assert 0 < float(row.group(2)) <= 100 and 0 <= float(row.group(3)) <= 1, (axis, c)
head = text.split("Headline")[1]
for alg in ("fedavg", "fedprox", "scaffold"):
    row = re.search(rf"^{alg}\s+2/2\s+([\d.]+) \+- [\d.]+\s+([\d.]+) \+- [\d.]+\s+[+-][\d.]+\s+([\d.]+) \+- [\d.]+\s+([\d.]+) \+-", head, re.M)
    assert row, alg
    assert all(0 < float(row.group(i)) <= 100 for i in (1, 2)) and all(0 <= float(row.group(i)) <= 1 for i in (3, 4)), alg
PY
echo "ok:   design and headline tables"
/usr/bin/python3 analysis/fedgc_table.py "$TMP/sweep" --markdown >"$TMP/table.md" || fail "markdown"
grep -q "^| fedavg | 2/2 |" "$TMP/table.md" || fail "markdown rows"
scripts/fedgc_sweep.sh input/fedgc_digits.ini "$TMP/budgets" --np 1 --jobs 2 --seeds "1" --part budgets "${sets[@]}" \
  >"$TMP/budgets.log" 2>&1 || { cat "$TMP/budgets.log"; fail "budgets sweep"; }
! grep -q FAILED "$TMP/budgets.log" || { cat "$TMP/budgets.log"; fail "a run of the budgets sweep failed"; }
/usr/bin/python3 analysis/fedgc_table.py "$TMP/budgets" >"$TMP/budgets.txt" || fail "budgets table"
/usr/bin/python3 - "$TMP/budgets.txt" <<'PY' || { cat "$TMP/budgets.txt"; fail "budgets table content"; }
import re, sys
part = open(sys.argv[1]).read().split("Budgets:")[1]
num = r"([\d.]+) \+- [\d.]+\s+"
for alg in ("fedavg", "fedprox", "scaffold"):
    row = re.search(rf"^{alg}\s+1/1/1/1\s+" + num * 8 + r"([\d.]+)\s*$", part, re.M)
    assert row, alg
    v = [float(row.group(i)) for i in range(1, 10)]
    assert all(0 < x <= 100 for x in v[:4]) and all(0 <= x <= 1 for x in v[4:8]) and v[8] > 0, (alg, v)
PY
echo "ok:   budgets table: 3 algorithms x (without, equal, inverse, waterfill), 2 runs at a time"
scripts/fedgc_sweep.sh input/fedgc_digits.ini "$TMP/budgets" --np 1 --seeds "1" --part holdout --budgets "equal waterfill" \
  "${sets[@]}" >"$TMP/holdout.log" 2>&1 || { cat "$TMP/holdout.log"; fail "holdout sweep"; }
! grep -q FAILED "$TMP/holdout.log" || { cat "$TMP/holdout.log"; fail "a run of the holdout sweep failed"; }
grep -q "^skip scaffold-plain_s1 (complete)" "$TMP/holdout.log" || fail "the runs without FedGC were not skipped"
grep -q "1000 real hold-out rows" "$TMP/budgets/fedavg-holdout-waterfill_s1.log" || fail "no hold-out rows dealt"
/usr/bin/python3 analysis/fedgc_table.py "$TMP/budgets" >"$TMP/holdout.txt" || fail "holdout table"
/usr/bin/python3 - "$TMP/holdout.txt" <<'PY' || { cat "$TMP/holdout.txt"; fail "holdout table content"; }
import re, sys
part = open(sys.argv[1]).read().split("Budgets:")[1]
assert re.search(r"FedGC waterfill\s+hold-out equal\s+hold-out waterfill\s+AUC without", part), "hold-out columns"
num = r"([\d.]+) \+- [\d.]+\s+"
for alg in ("fedavg", "fedprox", "scaffold"):
    row = re.search(rf"^{alg}\s+1/1/1/1/1/1\s+" + num * 12 + r"([\d.]+)\s*$", part, re.M)
    assert row, alg
    v = [float(row.group(i)) for i in range(1, 14)]
    assert all(0 < x <= 100 for x in v[:6]) and all(0 <= x <= 1 for x in v[6:12]) and v[12] > 0, (alg, v)
PY
echo "ok:   holdout part: hold-out equal and waterfill columns beside the budgets"
mkdir -p "$TMP/empty"
rc=0
/usr/bin/python3 analysis/fedgc_table.py "$TMP/empty" 2>"$TMP/err" || rc=$?
[[ $rc -ne 0 ]] && grep -q "no complete runs" "$TMP/err" || fail "empty folder: exit $rc"
echo "ok:   markdown; an empty folder is refused"
