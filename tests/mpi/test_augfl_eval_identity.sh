#!/usr/bin/env bash
# The evaluation identity of AugFL's targets, computed independently: a
# target's accuracy is that of theta (the run's model.h5) after one full-batch
# SGD step of rate alpha on its D^tr, scored on its D^te. Here numpy redoes it
# from the raw Fashion-MNIST files, the normalisation (x / 255 - 0.2860) /
# 0.3530, the clients' row lists and target ids that `fedhpc partition` writes
# into partition.h5, and the MLP's forward and cross-entropy gradient written
# out by hand (the deck with an MLP 784-256-10 as meta-model); the pooled count of correct target rows must equal the run's
# holdout/accuracy times the targets' test rows, and a step of another size
# must not score the same logits. Also: partition.h5's row lists give the
# counts it stores, and its targets are 10 of the 50 clients.
# Skips (77) when the data set is not installed (scripts/install-deps.sh).
source "$(dirname "$0")/lib.sh"
FMNIST=/usr/share/datasets/fashion-mnist
[[ -f $FMNIST/train-images-idx3-ubyte.gz ]] || { echo "skip: $FMNIST missing"; exit 77; }
deck="$SRC_DIR/input/augfl_fmnist.ini"
common=(--set output.dir="$TMP" --set augfl.lambda=0 --set model.arch=mlp --set model.hidden=256 --set run.rounds=3 --set run.eval_every=3
        --set eval.global_test=false --set output.name=r)
fh_mpirun 1 partition "$deck" "${common[@]}" >"$TMP/p.log" 2>&1 || { cat "$TMP/p.log"; fail "partition"; }
fh_mpirun 2 run "$deck" "${common[@]}" >"$TMP/r.log" 2>&1 || { cat "$TMP/r.log"; fail "run"; }
"$PY" - "$TMP/r" "$FMNIST" <<'PY' || fail "the targets' accuracy is not one SGD step of alpha on D^tr scored on D^te"
import gzip, sys
import h5py, numpy as np
run, data = sys.argv[1], sys.argv[2]
def idx(name):
    with gzip.open(f"{data}/{name}") as f:
        b = f.read()
    dims = b[3]
    shape = [int.from_bytes(b[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(b, np.uint8, offset=4 + 4 * dims).reshape(shape)
def norm(x):
    x = x.reshape(len(x), -1).astype(np.float32)
    return (x / np.float32(255) - np.float32(0.2860)) / np.float32(0.3530)
xtr, ytr = norm(idx("train-images-idx3-ubyte.gz")), idx("train-labels-idx1-ubyte.gz").astype(np.int64)
xte, yte = norm(idx("t10k-images-idx3-ubyte.gz")), idx("t10k-labels-idx1-ubyte.gz").astype(np.int64)
with h5py.File(f"{run}/partition.h5") as f:
    P = {k: f[k][()] for k in f}
K, C = P["train_counts"].shape
for s, y in (("train", ytr), ("test", yte)):
    off, rows = P[s + "_offsets"], P[s + "_rows"]
    for k in range(K):
        counts = np.bincount(y[rows[off[k]:off[k + 1]]], minlength=C)
        assert np.array_equal(counts, P[s + "_counts"][k]), (s, k, counts, P[s + "_counts"][k])
targets = P["holdout_clients"]
assert len(targets) == 10 and len(set(targets)) == 10 and targets.max() < K, targets
with h5py.File(f"{run}/model.h5") as f:
    W1, b1 = f["params/fc1.weight"][()], f["params/fc1.bias"][()]
    W2, b2 = f["params/fc2.weight"][()], f["params/fc2.bias"][()]
with h5py.File(f"{run}/metrics.h5") as f:
    acc = f["holdout/accuracy"][()][-1]
alpha = 0.05
def forward(p, x):
    h = np.maximum(x @ p[0].T + p[1], 0)
    return h, h @ p[2].T + p[3]
def adapted(x, y, lr):  # one full-batch step of mean cross-entropy
    p = [a.astype(np.float64) for a in (W1, b1, W2, b2)]
    h, z = forward(p, x.astype(np.float64))
    q = np.exp(z - z.max(1, keepdims=True)); q /= q.sum(1, keepdims=True)
    dz = q.copy(); dz[np.arange(len(y)), y] -= 1; dz /= len(y)
    dh = (dz @ p[2]) * (h > 0)
    g = [dh.T @ x, dh.sum(0), dz.T @ h, dz.sum(0)]
    return [a - lr * b for a, b in zip(p, g)]
correct = total = 0
moved = False
for k in targets:
    tr = P["train_rows"][P["train_offsets"][k]:P["train_offsets"][k + 1]]
    te = P["test_rows"][P["test_offsets"][k]:P["test_offsets"][k + 1]]
    p = adapted(xtr[tr], ytr[tr], alpha)
    z = forward(p, xte[te].astype(np.float64))[1]
    correct += int((z.argmax(1) == yte[te]).sum())
    total += len(te)
    moved |= not np.allclose(z, forward(adapted(xtr[tr], ytr[tr], 2 * alpha), xte[te].astype(np.float64))[1])
print(f"targets: {correct} of {total} test rows correct here ({correct / total:.6f}), the run's holdout/accuracy {acc:.6f}")
assert round(acc * total) == correct and abs(acc - correct / total) < 1e-9
assert moved
PY
ok "a target's accuracy is one SGD step of alpha on its D^tr from theta, scored on its D^te (numpy, from the raw files)"
echo "$NCHECKS passed, 0 failed"
