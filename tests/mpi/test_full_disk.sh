#!/usr/bin/env bash
# A full disk at a write (checkpoint, metrics, model, profile, client-state
# scratch, pretrain's checkpoint, encode's feature file, partition.h5) ends the run within 60 s with
# exit 5 and one error
# line naming the file and "no space left on device" (no hang, no signal), on 1
# and 3 ranks; the previous checkpoint and every finished metrics row stay
# readable, and the run resumes once there is space. Two ways to fill a disk:
# a 1 MiB tmpfs mounted here (root; skipped where mount is refused), and the
# LD_PRELOAD shim tests/fault/enospc.c, which fails the writes to one file
# after N bytes (FEDHPC_ENOSPC_MATCH, FEDHPC_ENOSPC_AFTER).
source "$(dirname "$0")/lib.sh"
SHIM=${FH_ENOSPC_SHIM:-$BUILD_DIR/tests/libfh_enospc.so}
DECK="$SRC_DIR/input/quickstart.ini"
# SCAFFOLD: client state in the checkpoint (23 clients x 54410 floats, 5 MiB)
common=(--set run.algorithm=scaffold --set train.momentum=0 --set run.clients=23 --set run.client_fraction=0.4
        --set train.epochs=1 --set run.eval_every=1)

# csv_rows DIR: the rounds in DIR/metrics.rows.csv, checked to be 1, 2, ..., n
csv_rows() {
  "$PY" - "$1/metrics.rows.csv" <<'PYEOF'
import csv, sys
rows = [r for r in csv.DictReader(open(sys.argv[1]))]
rounds = [int(r["round"]) for r in rows]
assert rounds == list(range(1, len(rounds) + 1)), rounds
print(len(rounds))
PYEOF
}

# h5_rows FILE: rows of /round in an HDF5 metrics file, and its status
h5_rows() {
  "$PY" -c "import h5py,sys; f=h5py.File(sys.argv[1],'r'); print(len(f['round']), f.attrs['status'].decode()[:6])" "$1"
}

# ---- a tmpfs too small for the checkpoint: refused before anything is written
mnt=$TMP/fs
mkdir -p "$mnt"
if mount -t tmpfs -o size=1m tmpfs "$mnt" 2>/dev/null; then
  trap 'umount "$mnt" 2>/dev/null || true; rm -rf "$TMP"' EXIT
  for np in 1 3; do
    fh_expect "tmpfs-checkpoint-$np" 5 "checkpoint.h5.tmp.*no space left on device" $np -- run "$DECK" "${common[@]}" --set run.rounds=4 \
      --set checkpoint.every=2 --set output.dir="$mnt" --set output.name=t$np
    [[ $(csv_rows "$mnt/t$np") == 2 ]] || fail "tmpfs-checkpoint-$np: metrics.rows.csv does not hold rounds 1-2"
    [[ $(h5_rows "$mnt/t$np/metrics.h5.partial") == "2 failed" ]] || fail "tmpfs-checkpoint-$np: metrics.h5.partial"
    [[ ! -e $mnt/t$np/checkpoint.h5.tmp && ! -e $mnt/t$np/fedhpc.lock ]] || fail "tmpfs-checkpoint-$np: files left"
    ok "tmpfs-checkpoint-$np: rounds 1-2 readable in metrics.h5.partial and metrics.rows.csv"
    rm -rf "${mnt:?}/t$np"
  done
  umount "$mnt"
else
  echo "skip: mount -t tmpfs refused here (not root, or no CAP_SYS_ADMIN): the tmpfs cases are not run"
fi

# ---- the shim: a disk that fills during a write
if [[ ! -f $SHIM ]]; then
  echo "skip: $SHIM is not built: the shim cases are not run"
  echo "$NCHECKS passed, 0 failed ($FAULT_CASES fault cases)"
  exit 0
fi
for np in 1 3; do
  # the checkpoint of round 4 fails; the one of round 2 stays, and the run
  # resumes from it once there is space
  d=$TMP/ck$np
  fh_mpirun $np run "$DECK" "${common[@]}" --set run.rounds=2 --set checkpoint.every=2 --set output.dir="$TMP" \
    --set output.name=ck$np >"$TMP/ck$np-first.log" 2>&1 || { cat "$TMP/ck$np-first.log"; fail "ck$np: first run"; }
  sum=$(md5sum <"$d/checkpoint.h5")
  for after in 0 100000; do
    fh_expect "checkpoint-$np-after-$after" 5 "checkpoint.h5.tmp.*no space left on device" $np LD_PRELOAD="$SHIM" \
      FEDHPC_ENOSPC_MATCH=checkpoint.h5.tmp FEDHPC_ENOSPC_AFTER=$after -- \
      run "$d/config.ini" --set run.rounds=4 --resume "$d"
    [[ $(md5sum <"$d/checkpoint.h5") == "$sum" ]] || fail "checkpoint-$np-after-$after: the previous checkpoint changed"
    [[ $(csv_rows "$d") == 4 ]] || fail "checkpoint-$np-after-$after: metrics.rows.csv does not hold rounds 1-4"
  done
  fh_mpirun $np run "$d/config.ini" --set run.rounds=4 --resume "$d" >"$TMP/ck$np-resume.log" 2>&1 \
    || { cat "$TMP/ck$np-resume.log"; fail "ck$np: the resume after the full disk"; }
  [[ $(h5_rows "$d/metrics.h5") == "4 comple" ]] || fail "ck$np: the resumed run's metrics.h5"
  ok "checkpoint-$np: the previous checkpoint kept; the run resumes from it to a complete metrics.h5"

  # metrics.h5.partial fills after a few rounds: the finished rows stay in the CSV
  fh_expect "metrics-$np" 5 "metrics.h5.partial.*no space left on device" $np LD_PRELOAD="$SHIM" FEDHPC_ENOSPC_MATCH=metrics.h5.partial \
    FEDHPC_ENOSPC_AFTER=400000 -- run "$DECK" "${common[@]}" --set run.rounds=30 --set output.dir="$TMP" \
    --set output.name=m$np
  failed=$(sed -n 's/.*cannot write round \([0-9]*\).*/\1/p' "$TMP/metrics-$np.log")
  n=$(csv_rows "$TMP/m$np")
  [[ -n $failed && $n -ge $((failed - 1)) && $failed -gt 1 ]] || fail "metrics-$np: $n rows in the CSV, round $failed failed"
  ok "metrics-$np: round $failed failed; rounds 1-$n readable in metrics.rows.csv"

  for file in model.h5.partial.tmp profile.h5.tmp; do
    fh_expect "${file%%.*}-$np" 5 "$file.*no space left on device" $np LD_PRELOAD="$SHIM" FEDHPC_ENOSPC_MATCH=$file -- \
      run "$DECK" "${common[@]}" --set run.rounds=2 --set output.dir="$TMP" --set output.name=${file%%.*}$np
    [[ ! -e $TMP/${file%%.*}$np/metrics.h5 && ! -e $TMP/${file%%.*}$np/model.h5 ]] \
      || fail "${file%%.*}-$np: a complete-looking output"
  done
  fh_expect "state-scratch-$np" 5 "state.rank.*no space left on device" $np LD_PRELOAD="$SHIM" 'FEDHPC_ENOSPC_MATCH=state.rank*' \
    FEDHPC_ENOSPC_AFTER=20000 -- run "$DECK" "${common[@]}" --set run.rounds=2 --set state.backend=hdf5 \
    --set output.dir="$TMP" --set output.name=s$np
  fh_expect "pretrain-ckpt-$np" 5 "pm.h5.ckpt.h5.tmp.*no space left on device" $np LD_PRELOAD="$SHIM" \
    FEDHPC_ENOSPC_MATCH=pm.h5.ckpt.h5.tmp -- pretrain "$SRC_DIR/input/augfl_digits.ini" \
    --set data.path="$SRC_DIR/input/digits.h5" --set pretrain.epochs=2 --set pretrain.checkpoint_every=1 \
    --set pm.hidden=32 --set output.dir="$TMP" --set pm.path="$TMP/pt$np/pm.h5"
  [[ ! -e $TMP/pt$np/pm.h5 ]] || fail "pretrain-ckpt-$np: a complete-looking model"
done
# encode's feature file (an mlp encoder trained 1 round on the digits): at
# its creation and while rows are written, on 1 and 3 ranks; no file is left
cat >"$TMP/enc.ini" <<EOF
[run]
rounds = 1
clients = 4
client_fraction = 1
[data]
source = hdf5
path = $SRC_DIR/input/digits.h5
[model]
arch = mlp
hidden = 32
[encode]
model = $TMP/encoder/model.h5
skip_train = 700
EOF
fh_mpirun 1 run "$TMP/enc.ini" --set output.dir="$TMP" --set output.name=encoder >"$TMP/encoder.log" 2>&1 \
  || { cat "$TMP/encoder.log"; fail "training the encoder"; }
for np in 1 3; do
  for after in 0 10000; do
    fh_expect "encode-$np-after-$after" 5 "features.h5.partial.*no space left on device" $np LD_PRELOAD="$SHIM" \
      FEDHPC_ENOSPC_MATCH=features.h5.partial FEDHPC_ENOSPC_AFTER=$after -- encode "$TMP/enc.ini" \
      --set encode.out="$TMP/features.h5"
    [[ ! -e $TMP/features.h5 && ! -e $TMP/features.h5.partial ]] || fail "encode-$np-after-$after: a feature file was left"
  done
done
fh_expect "partition" 5 "partition.h5.*no space left on device" 1 LD_PRELOAD="$SHIM" FEDHPC_ENOSPC_MATCH=partition.h5 -- \
  partition "$SRC_DIR/input/digits_fedavg.ini" --set data.path="$SRC_DIR/input/digits.h5" --set output.dir="$TMP" \
  --set output.name=part
[[ ! -e $TMP/part/partition.h5 ]] || fail "partition: a partition.h5 was left"
echo "$NCHECKS passed, 0 failed ($FAULT_CASES fault cases)"
