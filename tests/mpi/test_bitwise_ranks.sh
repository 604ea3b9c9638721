#!/usr/bin/env bash
# The final model and every metric but the timings are bitwise identical for
# 1, 2, 3 and 4 ranks (and with a dedicated server rank) with the same deck,
# and FedProx with mu = 0 gives FedAvg's; the reduction to rank 0 and the
# broadcast (run.allreduce = false) give the allreduce's bits. The other algorithms:
# test_bitwise_ranks_algorithms.sh.
source "$(dirname "$0")/lib.sh"
common=(--set run.rounds=6 --set run.clients=23 --set run.client_fraction=0.4 --set run.eval_every=2
        --set train.momentum=0.9 --set output.dir="$TMP")
for np in 1 2 3 4; do
  fh_mpirun "$np" run "$SRC_DIR/input/quickstart.ini" "${common[@]}" --set output.name=np$np >"$TMP/np$np.log" 2>&1 \
    || { cat "$TMP/np$np.log"; fail "run on $np ranks"; }
done
# more ranks than clients: idle ranks join every collective and change nothing
few=(--set run.rounds=3 --set run.clients=3 --set run.client_fraction=1 --set output.dir="$TMP")
for np in 1 5; do
  fh_mpirun "$np" run "$SRC_DIR/input/quickstart.ini" "${few[@]}" --set output.name=few$np >"$TMP/few$np.log" 2>&1 \
    || { cat "$TMP/few$np.log"; fail "3 clients on $np ranks"; }
done
# FedProx with mu = 0 is FedAvg, bit for bit, whole run
fh_mpirun 2 run "$SRC_DIR/input/quickstart.ini" "${common[@]}" --set run.algorithm=fedprox --set fedprox.mu=0 \
  --set output.name=prox0 >"$TMP/prox0.log" 2>&1 || { cat "$TMP/prox0.log"; fail "fedprox mu = 0"; }
grep -q "2 of 5 ranks host no client" "$TMP/few5.log" || { cat "$TMP/few5.log"; fail "no warning about idle ranks"; }
fh_mpirun 5 run "$SRC_DIR/input/quickstart.ini" "${few[@]}" --set run.dedicated_server=true \
  --set output.name=few5ded >"$TMP/few5ded.log" 2>&1 || { cat "$TMP/few5ded.log"; fail "3 clients, 5 ranks, dedicated server"; }
fh_mpirun 3 run "$SRC_DIR/input/quickstart.ini" "${common[@]}" --set run.dedicated_server=true \
  --set output.name=ded3 >"$TMP/ded3.log" 2>&1 || { cat "$TMP/ded3.log"; fail "dedicated server run"; }
fh_mpirun 3 run "$SRC_DIR/input/quickstart.ini" "${common[@]}" --set run.allreduce=false \
  --set output.name=bcast3 >"$TMP/bcast3.log" 2>&1 || { cat "$TMP/bcast3.log"; fail "run.allreduce = false"; }

"$PY" - "$TMP" <<'PY'
import sys, h5py, numpy as np
tmp = sys.argv[1]
runs = ["np1", "np2", "np3", "np4", "ded3"]
def model(r):
    with h5py.File(f"{tmp}/{r}/model.h5", "r") as f:
        return {k: f["params"][k][()] for k in f["params"]}
def metrics(r):
    """every dataset of metrics.h5 but the timings"""
    out = {}
    with h5py.File(f"{tmp}/{r}/metrics.h5", "r") as f:
        assert f.attrs["status"] == b"complete" or f.attrs["status"] == "complete"
        f.visititems(lambda k, v: out.__setitem__(k, v[()]) if isinstance(v, h5py.Dataset) else None)
    for k in [k for k in out if k.startswith("time/") or k == "wall_time"]:
        del out[k]
    assert {"train_loss", "local_loss", "test_accuracy", "client_accuracy/p90", "personal/accuracy",
            "finetune/client_accuracy/mean", "holdout/loss", "global_test/accuracy"} <= out.keys(), out.keys()
    return out
def compare(ref, runs, skip=()):
  ref_m, ref_x = model(ref), metrics(ref)
  assert len(ref_m) >= 2, "model has no parameters"
  for r in runs:
      m, x = model(r), metrics(r)
      assert m.keys() == ref_m.keys()
      for k in m:
          if m[k].tobytes() != ref_m[k].tobytes():
              d = np.abs(m[k] - ref_m[k]).max()
              sys.exit(f"{r}: parameter {k} differs from 1 rank (max abs diff {d:g})")
      for k in x:
          if k in skip:
              continue
          if x[k].tobytes() != ref_x[k].tobytes():
              sys.exit(f"{r}: metric {k} differs from 1 rank: {x[k]} vs {ref_x[k]}")
      print(f"ok: {r} bitwise identical to 1 rank ({sum(v.size for v in m.values())} parameters, {len(x)} metrics)")
  return ref_x

ref_x = compare("np1", runs[1:] + ["prox0"])
compare("few1", ["few5", "few5ded"])
# reduce + broadcast: the same bits; its broadcast moves the payload every round, the allreduce's only the first
compare("np1", ["bcast3"], skip=("comm/bcast_bytes",))
b_all = ref_x["comm/bcast_bytes"]
with h5py.File(f"{tmp}/bcast3/metrics.h5", "r") as f:
    b_red = f["comm/bcast_bytes"][()]
assert b_all[0] > 0 and np.all(b_all[1:] == 0) and np.all(b_red == b_all[0]), (b_all, b_red)
# the run actually learned something (the comparison is not between untrained models)
acc = ref_x["test_accuracy"]
assert np.isfinite(acc[-1]) and acc[-1] > 0.2, acc
PY
echo "1 passed, 0 failed"
