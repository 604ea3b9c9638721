#!/usr/bin/env bash
# fedhpc pretrain (the server's pretrained model, data-parallel over ranks):
# - the model file is bitwise identical on 1, 2 and 3 ranks, with the shards'
#   minibatches computed in groups of 2 shards (pretrain.chunk = 16 rows of
#   batch 8: the ranks hold 2, 1+1 and 0+1+1 groups) and one by one
#   (pretrain.chunk = 1: 4, 2+2 and 1+1+2 shards), and the training loss falls;
# - a run checkpointed after epoch 3 and resumed (--resume, on another rank
#   count) to epoch 6 equals the uninterrupted 6-epoch run bit for bit;
# - the file loads as the run's pretrained model (shapes checked by AugFL);
# - a deck that holds no server rows is refused (exit 3, naming the key).
source "$(dirname "$0")/lib.sh"
deck="$SRC_DIR/input/augfl_digits.ini"
common=(--set output.dir="$TMP" --set data.path="$SRC_DIR/input/digits.h5" --set data.server_shards=4 --set pretrain.epochs=6 --set pm.hidden=64
        --set pretrain.schedule=constant --set pretrain.chunk=16)

same_model() { # same_model A B: /params and /buffers of two model files, bit for bit
  "$PY" - "$1" "$2" <<'PY' || fail "$2 differs from $1"
import sys, h5py
def load(p):
    out = {}
    with h5py.File(p, "r") as f:
        f.visititems(lambda k, v: out.__setitem__(k, v[()]) if isinstance(v, h5py.Dataset) else None)
    return out
a, b = load(sys.argv[1]), load(sys.argv[2])
assert a.keys() == b.keys() and len(a) > 0, (sorted(a), sorted(b))
for k in a:
    assert a[k].tobytes() == b[k].tobytes(), k
PY
}

for np in 1 2 3; do
  fh_mpirun "$np" pretrain "$deck" "${common[@]}" --set pm.path="$TMP/pm_np$np.h5" >"$TMP/pt_np$np.log" 2>&1 \
    || { cat "$TMP/pt_np$np.log"; fail "pretrain on $np ranks"; }
done
same_model "$TMP/pm_np1.h5" "$TMP/pm_np2.h5"
same_model "$TMP/pm_np1.h5" "$TMP/pm_np3.h5"
grep -q "4 shards over 3 ranks, in groups of 2 (products of 16 rows" "$TMP/pt_np3.log" \
  || { cat "$TMP/pt_np3.log"; fail "no shard line"; }
for np in 1 3; do
  fh_mpirun "$np" pretrain "$deck" "${common[@]}" --set pretrain.chunk=1 --set pm.path="$TMP/pm1_np$np.h5" \
    >"$TMP/pt1_np$np.log" 2>&1 || { cat "$TMP/pt1_np$np.log"; fail "pretrain.chunk=1 on $np ranks"; }
done
same_model "$TMP/pm1_np1.h5" "$TMP/pm1_np3.h5"
grep -q "in groups of 1 (products of 8 rows" "$TMP/pt1_np3.log" || { cat "$TMP/pt1_np3.log"; fail "chunk 1: no shard line"; }
ok "pretrained model bitwise identical on 1, 2 and 3 ranks (groups of 2 shards; and shard by shard on 1 and 3)"
"$PY" - "$TMP/pt_np1.log" <<'PY' || fail "the pretraining loss does not fall"
import re, sys
loss = [float(m.group(1)) for m in re.finditer(r"pretrain epoch +\d+/\d+ +loss ([0-9.]+)", open(sys.argv[1]).read())]
print("loss per epoch:", loss)
assert len(loss) == 6 and loss[-1] < 0.5 * loss[0], loss
PY
ok "the pretraining loss falls"

# checkpoint after epoch 3 (2 ranks), resume to epoch 6 (3 ranks)
fh_mpirun 2 pretrain "$deck" "${common[@]}" --set pretrain.epochs=3 --set pretrain.checkpoint_every=3 \
  --set pm.path="$TMP/pm_ck.h5" >"$TMP/pt_ck.log" 2>&1 || { cat "$TMP/pt_ck.log"; fail "first part"; }
[[ -f $TMP/pm_ck.h5.ckpt.h5 ]] || fail "no checkpoint after epoch 3"
fh_mpirun 3 pretrain "$deck" "${common[@]}" --set pm.path="$TMP/pm_ck.h5" --resume >>"$TMP/pt_ck.log" 2>&1 \
  || { cat "$TMP/pt_ck.log"; fail "resumed part"; }
grep -q "resumed from $TMP/pm_ck.h5.ckpt.h5 after epoch 3 of 6" "$TMP/pt_ck.log" || { cat "$TMP/pt_ck.log"; fail "no resumed line"; }
same_model "$TMP/pm_np1.h5" "$TMP/pm_ck.h5"
ok "pretraining resumed after epoch 3 equals the uninterrupted run"

rc=0
fh_mpirun 1 pretrain "$deck" "${common[@]}" --set pm.path="$TMP/pm_ck.h5" --set pretrain.epochs=2 --resume \
  --set pm.hidden=32 >"$TMP/bad.log" 2>&1 || rc=$?
[[ $rc -eq 4 ]] && grep -q "resume with the deck that wrote it" "$TMP/bad.log" || { cat "$TMP/bad.log"; fail "resume with another PM: exit $rc"; }
ok "resuming with another PM architecture is refused"

# the file is what the run reads
fh_mpirun 2 run "$deck" --set output.dir="$TMP" --set data.path="$SRC_DIR/input/digits.h5" --set pm.hidden=64 --set pm.path="$TMP/pm_np3.h5" \
  --set data.server_shards=4 --set run.rounds=2 --set output.name=uses >"$TMP/uses.log" 2>&1 \
  || { cat "$TMP/uses.log"; fail "AugFL with the pretrained model"; }
grep -q "augfl: pretrained model $TMP/pm_np3.h5" "$TMP/uses.log" || { cat "$TMP/uses.log"; fail "PM not reported"; }
ok "AugFL loads the pretrained model"

rc=0
fh_mpirun 1 pretrain "$deck" "${common[@]}" --set data.server_fraction=0 >"$TMP/none.log" 2>&1 || rc=$?
[[ $rc -eq 3 ]] && grep -q "data.server_fraction = 0 holds no row" "$TMP/none.log" \
  || { cat "$TMP/none.log"; fail "no server rows: exit $rc"; }
ok "no server rows: exit 3 naming data.server_fraction"
echo "$NCHECKS passed, 0 failed"
