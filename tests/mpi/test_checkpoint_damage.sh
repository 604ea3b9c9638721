#!/usr/bin/env bash
# A damaged checkpoint is refused by --resume (on 1 and 3 ranks) and by
# `fedhpc check`, with exit 4 and one line naming the file and the damaged
# object: a flipped byte in the global model or in a client-state field
# (checksums), a flipped byte in the profile history (checked on a resume
# with the writer's rank count, where it is continued), a NaN in the global model (its checksum made to match), a
# truncated file. An intact one passes `fedhpc check` with exit 0.
source "$(dirname "$0")/lib.sh"
DECK="$SRC_DIR/input/quickstart.ini"
common=(--set run.algorithm=scaffold --set train.momentum=0 --set run.clients=23 --set run.client_fraction=0.4
        --set train.epochs=1 --set checkpoint.every=2 --set output.dir="$TMP")
fh_mpirun 2 run "$DECK" "${common[@]}" --set run.rounds=2 --set output.name=good >"$TMP/good.log" 2>&1 \
  || { cat "$TMP/good.log"; fail "the run that writes the checkpoint"; }
fh_mpirun 1 check "$TMP/good" >"$TMP/check-good.log" 2>&1 || { cat "$TMP/check-good.log"; fail "check of an intact checkpoint"; }
grep -q "checkpoint.h5: intact: scaffold after round 2 of 2, 23 clients" "$TMP/check-good.log" \
  || { cat "$TMP/check-good.log"; fail "check: no 'intact' line"; }
ok "check: the intact checkpoint passes"

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
damage flip-profile 'flip("profile/time", 8 * 5 + 2)'
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
  fh_expect "flip-global-$np" 4 "checkpoint.h5.*/global is damaged" $np run "$TMP/good/config.ini" --set run.rounds=4 \
    --resume "$TMP/flip-global"
  fh_expect "flip-state-$np" 4 "checkpoint.h5.*/state/scaffold.c/values is damaged" $np run "$TMP/good/config.ini" \
    --set run.rounds=4 --resume "$TMP/flip-state"
  fh_expect "nan-global-$np" 4 "checkpoint.h5.*/global\[17\] = nan: .*not finite" $np run "$TMP/good/config.ini" \
    --set run.rounds=4 --resume "$TMP/nan-global"
  fh_expect "truncated-$np" 4 "checkpoint.h5.*cannot open the checkpoint" $np run "$TMP/good/config.ini" --set run.rounds=4 \
    --resume "$TMP/truncated"
done
# the profile history is continued only on the writer's rank count (2)
fh_expect flip-profile-2 4 "checkpoint.h5.*/profile/time is damaged" 2 run "$TMP/good/config.ini" --set run.rounds=4 \
  --resume "$TMP/flip-profile"
fh_expect check-flip-profile 4 "checkpoint.h5.*/profile/time is damaged" 1 check "$TMP/flip-profile"
fh_expect check-flip-global 4 "checkpoint.h5.*/global is damaged" 1 check "$TMP/flip-global"
fh_expect check-flip-state 4 "checkpoint.h5.*/state/scaffold.c/values is damaged" 1 check "$TMP/flip-state"
fh_expect check-nan-global 4 "checkpoint.h5.*/global\[17\] = nan: .*not finite" 1 check "$TMP/nan-global"
fh_expect check-truncated 4 "checkpoint.h5.*cannot open the checkpoint" 1 check "$TMP/truncated"
echo "$NCHECKS passed, 0 failed ($FAULT_CASES fault cases)"
