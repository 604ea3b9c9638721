#!/usr/bin/env bash
# The model-heterogeneous baselines (standalone, lg_fedavg, fml, fedkd,
# fedproto, fedgh, fd) with heterogeneous MLPs on Synthetic(0.5, 0.5): metrics and
# model.h5 are bitwise identical on 1, 2 and 3 ranks, and each reports its
# clients' own models (personal) and, where a shared model of the data travels
# (fml, fedkd), the global one too (fedkd.max_rank = 4: the student's update
# travels as factors); model.h5 holds what docs/outputs.md says,
# read against the checkpoint after the last round: lg_fedavg's and fedgh's
# global header (a Linear(16, C) on [16, 1, 1] inputs), fml's meme, fedkd's
# student (its server state: the payload is factors), fedproto's
# nearest-prototype classifier (W = 2 P, b = -|P|^2, -1e30 for a class without
# a prototype), fd's global mean logits (a Linear(C, C), bias the flags), standalone's unused initial model.arch; comm/bcast_bytes and
# comm/reduce_bytes are those payloads' (FedKD's: its messages of factors).
source "$(dirname "$0")/lib.sh"
common=(--set run.rounds=4 --set run.clients=12 --set run.client_fraction=0.5 --set run.eval_every=2
        --set hetero.models=mlp-32-16,mlp-24-16,mlp-20-16 --set hetero.epochs=2 --set model.hidden=16
        --set fedkd.max_rank=4 --set checkpoint.every=4 --set output.dir="$TMP")
# name|the modes that must hold a number|those that must not
algs=("standalone|personal/accuracy|test_accuracy" "lg_fedavg|personal/accuracy|test_accuracy"
      "fml|personal/accuracy test_accuracy|" "fedkd|personal/accuracy test_accuracy|"
      "fedproto|personal/accuracy|test_accuracy" "fedgh|personal/accuracy|test_accuracy"
      "fd|personal/accuracy|test_accuracy")
for spec in "${algs[@]}"; do
  IFS='|' read -r alg measured absent <<<"$spec"
  for np in 1 2 3; do
    fh_mpirun "$np" run "$SRC_DIR/input/quickstart.ini" "${common[@]}" --set run.algorithm="$alg" \
      --set output.name="${alg}_np$np" >"$TMP/${alg}_np$np.log" 2>&1 || { cat "$TMP/${alg}_np$np.log"; fail "$alg on $np ranks"; }
  done
  "$PY" "$(dirname "$0")/compare_runs.py" "$TMP" "${alg}_np1" "${alg}_np2" "${alg}_np3" >"$TMP/$alg.cmp" \
    || { cat "$TMP/$alg.cmp"; fail "$alg: runs differ"; }
  "$PY" - "$TMP/${alg}_np1/metrics.h5" "$measured" "$absent" <<'PY' || fail "$alg: evaluation modes"
import sys, h5py, numpy as np
f = h5py.File(sys.argv[1], "r")
for k in sys.argv[2].split():
    a = f[k][-1]
    assert np.isfinite(a) and 0 < a <= 1, (k, a)
for k in sys.argv[3].split():
    assert np.isnan(f[k][-1]), (k, f[k][-1])
PY
  "$PY" - "$alg" "$TMP/${alg}_np1" <<'PY' || fail "$alg: model.h5"
import sys, h5py, numpy as np
alg, run = sys.argv[1], sys.argv[2]
m = h5py.File(f"{run}/model.h5", "r")
ck = h5py.File(f"{run}/checkpoint.h5", "r")
g = ck["global"][()]
# state_dict order (these MLPs: fc1, fc2, ..., each weight before its bias)
names = sorted(m["params"].keys(), key=lambda k: (k.rsplit(".", 1)[0], k.endswith(".bias")))
flat = np.concatenate([m["params"][k][()].ravel() for k in names])
shape = list(m.attrs["input_shape"])
if alg in ("lg_fedavg", "fedgh", "fedproto"):
    assert len(names) == 2 and m["params"][names[0]].shape == (10, 16) and shape == [16, 1, 1], (names, shape)
bc = h5py.File(f"{run}/metrics.h5", "r")["comm/bcast_bytes"][()]
assert np.all(bc == {"standalone": 0, "lg_fedavg": 680, "fedgh": 680, "fedproto": 680, "fml": 4584, "fd": 440}.get(alg, bc)), bc
if alg in ("lg_fedavg", "fedgh", "fml"):
    assert np.array_equal(flat, g[:flat.size]), alg
elif alg == "fedkd":
    assert np.array_equal(flat, ck["server/fedkd.student"][()]), "fedkd"
    # what moved: a message of 3 + 4 (1 + 16 + 60) + 4 (1 + 10 + 16) + 26 = 445
    # floats down, 6 such slots (and the weight sum, int64) up; dense: 1146
    mt = h5py.File(f"{run}/metrics.h5", "r")
    assert np.all(mt["comm/bcast_bytes"][()] == 445 * 4), mt["comm/bcast_bytes"][()]
    assert np.all(mt["comm/reduce_bytes"][()] == (6 * 445 + 1) * 8), mt["comm/reduce_bytes"][()]
elif alg == "fedproto":
    P, present = g[:160].reshape(10, 16), g[160:170]
    W, b = m["params"][names[0]][()], m["params"][names[1]][()]
    on = present != 0
    assert on.sum() > 0 and np.array_equal(W[on], 2 * P[on]) and np.allclose(b[on], -(P[on].astype(np.float64) ** 2).sum(1), rtol=1e-6)
    assert np.all(b[~on] == np.float32(-1e30)) and np.all(W[~on] == 0)
elif alg == "fd":  # the global mean logits as a Linear(10, 10): rows L_c, bias the presence flags
    W, b = m["params"][names[0]][()], m["params"][names[1]][()]
    assert shape == [10, 1, 1] and np.array_equal(W.ravel(), g[:100]) and np.array_equal(b, g[100:110])
    assert set(np.unique(b)) <= {0.0, 1.0} and b.sum() > 0 and np.all(W[b == 0] == 0), b
else:
    assert shape == [60, 1, 1] and flat.size == 60 * 16 + 16 + 16 * 10 + 10, (shape, flat.size)
PY
  ok "$alg: bitwise identical on 1, 2, 3 ranks; model.h5 as documented; $(tail -1 "$TMP/$alg.cmp" | sed 's/^ *//')"
done

# FedKD's payload is a message of factors, not a model: the membership score
# must use its student (one sampled client: the message is shorter than the
# model), and the inertia record, which reads weights from the broadcast, is
# refused.
fh_mpirun 2 run "$SRC_DIR/input/quickstart.ini" "${common[@]}" --set run.algorithm=fedkd --set run.client_fraction=0.08 \
  --set fedgc.membership=true --set output.name=fedkd_mi >"$TMP/fedkd_mi.log" 2>&1 \
  || { cat "$TMP/fedkd_mi.log"; fail "fedkd with fedgc.membership"; }
"$PY" - "$TMP/fedkd_mi" <<'PY' || fail "fedkd: membership.h5 does not score the student"
import sys, h5py, numpy as np
a = h5py.File(sys.argv[1] + "/membership.h5", "r").attrs
acc = h5py.File(sys.argv[1] + "/metrics.h5", "r")["test_accuracy"][()]
acc = acc[np.isfinite(acc)][-1]
# the student's accuracy on the clients' test rows is the global test accuracy's
# neighbour, far from a chance model's 10 % and its loss ln 10
assert a["nonmember_accuracy"] > 0.3 and abs(a["nonmember_loss"] - np.log(10)) > 0.05, dict(a)
assert acc > 0.3, acc
PY
ok "fedkd + fedgc.membership scores the student (the message is shorter than the model)"
rc=0
fh_mpirun 1 run "$SRC_DIR/input/quickstart.ini" "${common[@]}" --set run.algorithm=fedkd --set lips.record_inertia=true \
  --set output.name=fedkd_inertia >"$TMP/fedkd_inertia.log" 2>&1 || rc=$?
[[ $rc -eq 3 ]] && grep -q "lips.record_inertia = true reads the global weights" "$TMP/fedkd_inertia.log" \
  || { cat "$TMP/fedkd_inertia.log"; fail "fedkd with lips.record_inertia: exit $rc"; }
ok "fedkd with lips.record_inertia is refused (exit 3)"
echo "$NCHECKS passed, 0 failed"
