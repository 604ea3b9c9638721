#!/bin/bash
# analysis/augfl_table.py: --print-commands gives the pretraining and the six
# methods per seed (seven with --whole-model); on real short runs (digits, two seeds, FedAvg and AugFL)
# the table has one row per method with both seeds, the target clients'
# accuracy as mean ± spread, and AugFL's server time; a folder without a
# metrics.h5 is exit 2 with one line.
# Env (from ctest): FEDHPC, SRC_DIR, and the OMPI root variables.
set -euo pipefail
: "${FEDHPC:?FEDHPC must point to the fedhpc binary}"
: "${SRC_DIR:?SRC_DIR must point to the source tree}"
MPIRUN=${MPIEXEC:-mpirun}
TABLE="$SRC_DIR/analysis/augfl_table.py"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/fh_augfl_table.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
pass() { echo "ok:   $*"; }

cmds=$(/usr/bin/python3 "$TABLE" --print-commands input/augfl_digits.ini --seeds 1,2,3 --out-dir "$TMP/r")
[[ $(grep -c " pretrain " <<<"$cmds") -eq 3 && $(grep -c " run " <<<"$cmds") -eq 18 ]] || { echo "$cmds"; fail "commands"; }
grep -q "augfl.step=second_order --set output.name=augfl_digits_augfl_so_s2" <<<"$cmds" || fail "second-order command"
grep -q "perfedavg.variant=fo .*--set output.name=augfl_digits_fomaml_s1" <<<"$cmds" || fail "first-order MAML command"
pass "--print-commands: 3 pretrainings and 18 runs"
cmds=$(/usr/bin/python3 "$TABLE" --print-commands input/augfl_digits.ini --seeds 1,2,3 --out-dir "$TMP/r" --whole-model)
[[ $(grep -c " run " <<<"$cmds") -eq 21 ]] || { echo "$cmds"; fail "--whole-model commands"; }
grep -q "augfl.second_order_block=all --set output.name=augfl_digits_augfl_som_s3" <<<"$cmds" || fail "whole-model command"
pass "--print-commands --whole-model: 21 runs"

run() { timeout 120 "$MPIRUN" --allow-run-as-root --oversubscribe -np 2 -x OPENBLAS_NUM_THREADS=1 "$FEDHPC" "$@"; }
deck="$SRC_DIR/input/augfl_digits.ini"
for seed in 1 2; do
  common=(--set run.seed=$seed --set pm.path="$TMP/pm$seed.h5" --set output.dir="$TMP" --set run.rounds=4
          --set run.eval_every=2 --set data.path="$SRC_DIR/input/digits.h5" --set pm.hidden=32
          --set augfl.crd_k=256)
  run pretrain "$deck" "${common[@]}" --set pretrain.epochs=2 >"$TMP/log" 2>&1 || { cat "$TMP/log"; fail "pretrain"; }
  run run "$deck" "${common[@]}" --set output.name=augfl_s$seed >"$TMP/log" 2>&1 || { cat "$TMP/log"; fail "augfl"; }
  run run "$deck" "${common[@]}" --set run.algorithm=fedavg --set output.name=fedavg_s$seed >"$TMP/log" 2>&1 \
    || { cat "$TMP/log"; fail "fedavg"; }
done
/usr/bin/python3 "$TABLE" "$TMP"/augfl_s1 "$TMP"/augfl_s2 "$TMP"/fedavg_s1 "$TMP"/fedavg_s2 --target 0.5 \
  -o "$TMP/table.md" >"$TMP/out" || { cat "$TMP/out"; fail "table"; }
cat "$TMP/table.md"
/usr/bin/python3 - "$TMP/table.md" <<'PY' || fail "table content"
import re, sys
rows = [l for l in open(sys.argv[1]) if l.startswith("| digits")]
assert len(rows) == 2, rows
fedavg, augfl = rows  # FedAvg comes first
assert "FedAvg (+1 step)" in fedavg and "| AugFL |" in augfl, rows
for r in rows:
    cells = [c.strip() for c in r.strip().strip("|").split("|")]
    assert cells[2] == "1,2", cells
    assert re.fullmatch(r"\d+\.\d\d ± \d+\.\d\d", cells[3]), cells
    assert 0 < float(cells[3].split()[0]) <= 100, cells
assert float(augfl.strip().strip("|").split("|")[6]) > 0, "AugFL spends no server time"
PY
pass "table: one row per method, both seeds, mean ± spread"

rc=0
/usr/bin/python3 "$TABLE" "$TMP" >"$TMP/err" 2>&1 || rc=$?
[[ $rc -eq 2 && $(wc -l <"$TMP/err") -eq 1 ]] || { cat "$TMP/err"; fail "a folder without metrics.h5: exit $rc"; }
pass "a folder without metrics.h5: exit 2, one line"
