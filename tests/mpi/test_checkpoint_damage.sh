#!/usr/bin/env bash
# A damaged checkpoint is refused by --resume (on 1 and 3 ranks) and by
# `fedhpc check`, with exit 4 and one line naming the file and the damaged
# object: a flipped byte in the global model or in a client-state field
# (checksums), a NaN in the global model (its checksum made to match), a
# truncated file. An intact one passes `fedhpc check` with exit 0.
source "$(dirname "$0")/lib.sh"
DECK="$SRC_DIR/input/quickstart.ini"
common=(--set run.algorithm=scaffold --set train.momentum=0 --set run.clients=23 --set run.client_fraction=0.4
        --set train.epochs=1 --set checkpoint.every=2 --set output.dir="$TMP")
NCASES=0
fh_mpirun 2 run "$DECK" "${common[@]}" --set run.rounds=2 --set output.name=good >"$TMP/good.log" 2>&1 \
  || { cat "$TMP/good.log"; fail "the run that writes the checkpoint"; }
fh_mpirun 1 check "$TMP/good" >"$TMP/check-good.log" 2>&1 || { cat "$TMP/check-good.log"; fail "check of an intact checkpoint"; }
grep -q "checkpoint.h5: intact: scaffold after round 2 of 2, 23 clients" "$TMP/check-good.log" \
  || { cat "$TMP/check-good.log"; fail "check: no 'intact' line"; }
ok "check: the intact checkpoint passes"

# expect_refused NAME PATTERN ARGS...: exit 4 within 60 s, one error line matching PATTERN
expect_refused() {
  local name=$1 np=$2 pat=$3 rc=0 t0=$SECONDS
  shift 3
  timeout 60 "$MPIEXEC" --allow-run-as-root --oversubscribe -np "$np" -x OPENBLAS_NUM_THREADS=1 "$FEDHPC" "$@" \
    >"$TMP/$name.log" 2>&1 || rc=$?
  [[ $rc -ne 124 ]] || fail "$name: still running after 60 s"
  [[ $rc -eq 4 ]] || { cat "$TMP/$name.log"; fail "$name: exit $rc, expected 4"; }
  [[ $(grep -c "^fedhpc: error:" "$TMP/$name.log") -eq 1 ]] || { cat "$TMP/$name.log"; fail "$name: not one error line"; }
  grep -q "^fedhpc: error: .*checkpoint.h5.*$pat" "$TMP/$name.log" \
    || { cat "$TMP/$name.log"; fail "$name: the error line does not match '$pat'"; }
  NCASES=$((NCASES + 1))
  ok "$name: exit 4 in $((SECONDS - t0)) s: $(grep '^fedhpc: error:' "$TMP/$name.log" | cut -c1-150)"
}

# damage NAME PYTHON: a copy of the good run with the checkpoint changed by PYTHON (f: the path)
damage() {
  rm -rf "${TMP:?}/$1"
  cp -r "$TMP/good" "$TMP/$1"
  "$PY" - "$TMP/$1/checkpoint.h5" <<PYEOF
import sys, h5py, numpy as np
f = sys.argv[1]
def flip(name, at):
    with h5py.File(f, "r") as h:
        off = h[name].id.get_offset()
    with open(f, "r+b") as fp:
        fp.seek(off + at); b = fp.read(1); fp.seek(off + at); fp.write(bytes([b[0] ^ 0x10]))
$2
PYEOF
}

damage flip-global 'flip("global", 4 * 1000 + 1)'
damage flip-state 'flip("state/scaffold.c/values", 4 * 54410 * 7 + 123)'
rm -rf "$TMP/nan-global"
cp -r "$TMP/good" "$TMP/nan-global"
"$PY" - "$TMP/nan-global/checkpoint.h5" <<'PYEOF'
import sys, h5py, numpy as np
# a NaN in the global model, with the checksum recomputed as fedhpc does, so
# that only the finiteness check can catch it
def row_hash(b, index):
    h = (14695981039346656037 ^ ((index * 0x9E3779B97F4A7C15) & (2**64 - 1))) & (2**64 - 1)
    for x in b:
        h = ((h ^ x) * 1099511628211) & (2**64 - 1)
    return h
with h5py.File(sys.argv[1], "r+") as h:
    g = h["global"][...]
    g[17] = np.nan
    h["global"][...] = g
    s = row_hash(g.astype("<f4").tobytes(), 0)
    h["global"].attrs["checksum"] = np.int64(s - 2**64 if s >= 2**63 else s)
PYEOF
rm -rf "$TMP/truncated"
cp -r "$TMP/good" "$TMP/truncated"
truncate -s 30000 "$TMP/truncated/checkpoint.h5"

for np in 1 3; do
  expect_refused "flip-global-$np" $np "/global is damaged" run "$TMP/good/config.ini" --set run.rounds=4 \
    --resume "$TMP/flip-global"
  expect_refused "flip-state-$np" $np "/state/scaffold.c/values is damaged" run "$TMP/good/config.ini" \
    --set run.rounds=4 --resume "$TMP/flip-state"
  expect_refused "nan-global-$np" $np "/global\[17\] = nan: .*not finite" run "$TMP/good/config.ini" \
    --set run.rounds=4 --resume "$TMP/nan-global"
  expect_refused "truncated-$np" $np "cannot open the checkpoint" run "$TMP/good/config.ini" --set run.rounds=4 \
    --resume "$TMP/truncated"
done
expect_refused check-flip-global 1 "/global is damaged" check "$TMP/flip-global"
expect_refused check-flip-state 1 "/state/scaffold.c/values is damaged" check "$TMP/flip-state"
expect_refused check-nan-global 1 "/global\[17\] = nan: .*not finite" check "$TMP/nan-global"
expect_refused check-truncated 1 "cannot open the checkpoint" check "$TMP/truncated"
echo "$NCHECKS passed, 0 failed ($NCASES fault cases)"
