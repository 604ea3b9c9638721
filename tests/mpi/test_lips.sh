#!/usr/bin/env bash
# LIPS (docs/lips.md) end to end:
# - FedAvg+LIPS on the digits deck, FedProx+LIPS and SCAFFOLD+LIPS: the model,
#   every metric and inertia.h5 are bitwise identical on 1, 2 and 3 ranks, and
#   each client's own model (its biases and BatchNorm) is evaluated, and
#   fine-tuned at the last round only (eval.finetune_from = own,
#   eval.finetune_final); the hdf5 state backend gives the memory backend's run;
# - lips.d0 = 1 with global biases and BatchNorm is FedAvg bit for bit (the
#   hooks change nothing else), with the inertia record on or off;
# - inertia.h5: NaN before the round-3 snapshot, cosine 1 and distance 0 at it,
#   finite gradient norms and diversities, the density schedule; a resumed run
#   rebuilds the same file; any algorithm with a global model can record it;
# - refusals: LIPS on another algorithm, and a resume that changes T.
source "$(dirname "$0")/lib.sh"
deck="$SRC_DIR/input/lips_digits.ini"
# resnet4 (two middle convs), 20 clients of 40 images in minibatches of 20
common=(--set data.path="$SRC_DIR/input/digits.h5" --set output.dir="$TMP" --set run.rounds=7 --set run.eval_every=7 --set lips.every=3 --set train.epochs=1
        --set model.arch=resnet4 --set partition.samples_per_client=40 --set partition.test_per_client=20
        --set train.batch_size=20 --set train.lr=0.05
        --set eval.finetune_epochs=1 --set eval.finetune_from=own --set eval.finetune_final=true)

# inertia_equal A B: every dataset of A/inertia.h5 equals B's bit for bit
inertia_equal() {
  "$PY" - "$TMP/$1/inertia.h5" "$TMP/$2/inertia.h5" <<'PY' || fail "$2/inertia.h5 differs from $1's"
import sys, h5py
a, b = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
assert sorted(a) == sorted(b), (sorted(a), sorted(b))
for k in a:
    assert a[k][()].tobytes() == b[k][()].tobytes(), k
PY
}

runs=("fedavg|"
      "fedprox|--set run.algorithm=fedprox --set fedprox.mu=0.1"
      "scaffold|--set run.algorithm=scaffold --set train.momentum=0 --set run.client_fraction=0.5")
for spec in "${runs[@]}"; do
  IFS='|' read -r name settings <<<"$spec"
  read -ra extra <<<"$settings"
  for np in 1 2 3; do
    [[ $name != fedavg && $np == 2 ]] && continue
    fh_mpirun "$np" run "$deck" "${common[@]}" "${extra[@]}" --set output.name="${name}_np$np" \
      >"$TMP/${name}_np$np.log" 2>&1 || { cat "$TMP/${name}_np$np.log"; fail "$name+lips on $np ranks"; }
  done
  others=("${name}_np3")
  [[ $name == fedavg ]] && others=("${name}_np2" "${name}_np3")
  "$PY" "$(dirname "$0")/compare_runs.py" "$TMP" "${name}_np1" "${others[@]}" || fail "$name+lips: runs differ"
  for o in "${others[@]}"; do inertia_equal "${name}_np1" "$o"; done
  "$PY" -c "import sys,h5py,numpy as np; a=h5py.File(sys.argv[1])['personal/client_accuracy/mean'][-1]; sys.exit(not (np.isfinite(a) and 0 < a <= 1))" \
    "$TMP/${name}_np1/metrics.h5" || fail "$name+lips: the clients' own models were not evaluated"
  "$PY" -c "import sys,h5py,numpy as np; a=h5py.File(sys.argv[1])['finetune/client_accuracy/mean'][()]; sys.exit(not (np.isfinite(a[-1]) and np.isnan(a[:-1]).all()))" \
    "$TMP/${name}_np1/metrics.h5" || fail "$name+lips: the final fine-tune is not in the last row alone"
  grep -q "lips: rank 0 masked [1-9][0-9]* client starts" "$TMP/${name}_np1.log" \
    || { cat "$TMP/${name}_np1.log"; fail "$name+lips: no client started sparse"; }
  ok "$name+lips: 1, 2, 3 ranks bitwise equal (model, metrics, inertia.h5)"
done

# The client store's hdf5 backend (half-precision gradients on disk) gives the memory backend's run.
fh_mpirun 2 run "$deck" "${common[@]}" --set state.backend=hdf5 --set output.name=fedavg_h5 >"$TMP/fedavg_h5.log" 2>&1 \
  || { cat "$TMP/fedavg_h5.log"; fail "hdf5 state backend"; }
"$PY" "$(dirname "$0")/compare_runs.py" "$TMP" fedavg_np1 fedavg_h5 || fail "hdf5 backend differs"
inertia_equal fedavg_np1 fedavg_h5
ok "fedavg+lips: the hdf5 state backend on 2 ranks equals the memory backend on 1"

# The record: rows, NaN before the snapshot, the schedule (every 3, T = 7, d0 = 0.5).
"$PY" - "$TMP/fedavg_np1/inertia.h5" <<'PY' || fail "inertia.h5 content"
import sys, h5py, numpy as np
f = h5py.File(sys.argv[1], "r")
L = [n.decode() for n in f["layers"][()]]
assert L[0] == "conv1.weight" and L[-1] == "fc.weight", L
assert list(f["middle"][()]) == [0, 1, 1, 0], f["middle"][()]
assert list(f["round"][()]) == list(range(1, 8))
cos, dist = f["cos_to_snapshot"][()], f["dist_to_snapshot"][()]
assert cos.shape == (7, 4)
assert np.isnan(cos[:2]).all() and np.isnan(dist[:2]).all()
assert (cos[2] == 1).all() and (dist[2] == 0).all()
assert np.isfinite(cos[3:]).all() and (cos[3:] <= 1 + 1e-12).all() and (dist[3:] > 0).all()
for k in ("update_norm", "grad_norm", "grad_diversity"):
    assert np.isfinite(f[k][()]).all() and (f[k][()] > 0).all(), k
# ||g_k - mean|| <= ||g_k|| + ||mean|| <= ||g_k|| + mean_j ||g_j||: diversity <= 2 norm
assert (f["grad_diversity"][()] <= 2 * f["grad_norm"][()] * (1 + 1e-6)).all()
d = f["density"][()]  # rounds 2 and 5 (1-based) start from the aggregates of s = 0, 3
expect = [1, 0.5, 1, 1, 0.5 + 0.5 * 3 / 7, 1, 1]
assert np.allclose(d, expect), d
PY
ok "inertia.h5: snapshot at round 3, finite record, density schedule"

# d0 = 1, global biases and BatchNorm: FedAvg bit for bit (record on and off).
fh_mpirun 2 run "$deck" "${common[@]}" --set lips.enable=false --set output.name=plain >"$TMP/plain.log" 2>&1 \
  || { cat "$TMP/plain.log"; fail "plain fedavg"; }
fh_mpirun 2 run "$deck" "${common[@]}" --set lips.d0=1 --set lips.local_bias_bn=false --set lips.record_inertia=false \
  --set output.name=dense >"$TMP/dense.log" 2>&1 || { cat "$TMP/dense.log"; fail "lips with d0 = 1"; }
"$PY" "$(dirname "$0")/compare_runs.py" "$TMP" plain dense || fail "lips.d0 = 1 is not FedAvg"
ok "lips.d0 = 1 with global biases and BatchNorm equals FedAvg bit for bit"

# Resume: checkpoint after round 4, resumed on another rank count to round 7.
fh_mpirun 2 run "$deck" "${common[@]}" --set checkpoint.every=4 --set lips.rounds=7 --set output.name=resumed \
  --set run.rounds=4 >"$TMP/resumed.log" 2>&1 || { cat "$TMP/resumed.log"; fail "first part"; }
fh_mpirun 3 run "$deck" "${common[@]}" --set checkpoint.every=4 --set lips.rounds=7 --set output.name=resumed \
  --resume "$TMP/resumed" >>"$TMP/resumed.log" 2>&1 || { cat "$TMP/resumed.log"; fail "resumed part"; }
"$PY" "$(dirname "$0")/compare_runs.py" "$TMP" fedavg_np1 resumed || fail "resumed run differs"
inertia_equal fedavg_np1 resumed
ok "a run resumed after round 4 on 3 ranks equals the uninterrupted one, inertia.h5 included"

# Refused: T would change; LIPS on another algorithm; a model without middle layers.
fh_mpirun 1 run "$deck" "${common[@]}" --set run.rounds=4 --set checkpoint.every=4 --set output.name=tchange \
  >"$TMP/tchange.log" 2>&1 || { cat "$TMP/tchange.log"; fail "4-round run"; }
rc=0
"$FEDHPC" run "$deck" "${common[@]}" --set run.rounds=8 --set output.name=tchange --resume "$TMP/tchange" \
  >>"$TMP/tchange.log" 2>&1 || rc=$?
[[ $rc -eq 3 ]] && grep -q "run.rounds = 8 in the deck but 4 in the checkpoint, and LIPS's density schedule" "$TMP/tchange.log" \
  || { cat "$TMP/tchange.log"; fail "changing T on resume: exit $rc"; }
ok "a resume that would change the schedule's T is refused (exit 3)"
rc=0
"$FEDHPC" run "$deck" "${common[@]}" --set run.algorithm=perfedavg --set output.name=bad >"$TMP/bad.log" 2>&1 || rc=$?
[[ $rc -eq 3 ]] && grep -q "lips.enable = true works on run.algorithm = fedavg, fedprox or scaffold, not perfedavg" \
  "$TMP/bad.log" || { cat "$TMP/bad.log"; fail "lips with perfedavg: exit $rc"; }
ok "lips.enable with perfedavg is refused (exit 3)"

# The record alone, with an MLP and with an algorithm outside LIPS's hooks.
for alg in fedavg perfedavg; do
  fh_mpirun 2 run "$SRC_DIR/input/quickstart.ini" --set run.rounds=4 --set run.clients=12 --set output.dir="$TMP" \
    --set run.algorithm=$alg --set lips.record_inertia=true --set output.name=rec_$alg >"$TMP/rec_$alg.log" 2>&1 \
    || { cat "$TMP/rec_$alg.log"; fail "inertia record with $alg"; }
  "$PY" - "$TMP/rec_$alg/inertia.h5" $alg <<'PY' || fail "inertia record with $alg"
import sys, h5py, numpy as np
f = h5py.File(sys.argv[1], "r")
assert [n.decode() for n in f["layers"][()]] == ["fc1.weight", "fc2.weight", "fc3.weight"]
assert np.isfinite(f["cos_to_snapshot"][3]).all() and np.isfinite(f["update_norm"][()]).all()
g = f["grad_norm"][()]  # LIPS's gradient hook is in fedavg, fedprox and scaffold only
assert np.isfinite(g).all() if sys.argv[2] == "fedavg" else np.isnan(g).all()
PY
  ok "lips.record_inertia with $alg and an MLP"
done
echo "$NCHECKS passed, 0 failed"
