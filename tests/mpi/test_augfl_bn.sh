#!/usr/bin/env bash
# AugFL's BatchNorm options on the digits deck with a BatchNorm meta-model
# (flatten linear(16) bn relu linear; no PM, so no pretraining):
# - augfl.bn_buffers = local (default, the authors': only parameters travel):
#   the global model's running statistics never move (mean 0, variance 1 in
#   model.h5), the sources keep theirs in the client store: bitwise the same
#   on 1 and 2 ranks, and a run checkpointed after round 2 on 2 ranks and
#   resumed on 1 equals the uninterrupted one;
# - augfl.bn_buffers = averaged: the global statistics move (the sources' mean)
#   and the run differs from the local one;
# - eval.target_bn = train (default, the authors') scores the targets with the
#   batch statistics of their test split: with local buffers this differs
#   from eval.target_bn = eval (running statistics 0 / 1), and on an MLP
#   without BatchNorm the two are bitwise the same.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/checkpoint_lib.sh"
deck="$SRC_DIR/input/augfl_digits.ini"
common=(--set output.dir="$TMP" --set data.path="$SRC_DIR/input/digits.h5" --set augfl.lambda=0
        --set model.arch=layers --set "model.layers=flatten linear(16) bn relu linear" --set run.rounds=4
        --set run.eval_every=2)
run() { # run NAME NP ARGS...
  local name=$1 np=$2
  shift 2
  fh_mpirun "$np" run "$deck" "${common[@]}" "$@" --set output.name="$name" >"$TMP/$name.log" 2>&1 \
    || { cat "$TMP/$name.log"; fail "$name on $np ranks"; }
}
run local1 1
run local2 2
"$PY" "$(dirname "$0")/compare_runs.py" "$TMP" local1 local2 || fail "local buffers: 1 and 2 ranks differ"
ok "bn_buffers = local: bitwise identical on 1 and 2 ranks"

run averaged1 1 --set augfl.bn_buffers=averaged
run eval1 1 --set eval.target_bn=eval
"$PY" - "$TMP" <<'PY' || fail "BatchNorm options"
import sys, h5py, numpy as np
t = sys.argv[1]
def buffers(run):
    with h5py.File(f"{t}/{run}/model.h5") as f:
        out = {}
        f["params"].visititems(lambda k, v: out.__setitem__(k, v[()]) if isinstance(v, h5py.Dataset) else None)
        return out
def holdout(run):
    with h5py.File(f"{t}/{run}/metrics.h5") as f:
        a = f["holdout/accuracy"][()]
        return a[np.isfinite(a)]
loc, avg = buffers("local1"), buffers("averaged1")
means = [k for k in loc if k.endswith("running_mean")]
vars_ = [k for k in loc if k.endswith("running_var")]
assert means and vars_, f"no BatchNorm buffers in {sorted(loc)}"
for k in means: assert np.all(loc[k] == 0), f"local: {k} moved"
for k in vars_: assert np.all(loc[k] == 1), f"local: {k} moved"
moved = max(np.abs(avg[k] - loc[k]).max() for k in means + vars_)
print(f"averaged: the global statistics moved by up to {moved:.3g}")
assert moved > 1e-3, "averaged: the global statistics did not move"
a, b, c = holdout("local1"), holdout("averaged1"), holdout("eval1")
print("targets' accuracy: local/train", a, "averaged/train", b, "local/eval", c)
assert len(a) == 2 and len(c) == 2, "the targets were not scored at rounds 2 and 4"
assert np.any(a != c), "eval.target_bn = train and eval score the targets alike"
PY
ok "bn_buffers = local keeps the global statistics at 0 / 1, averaged moves them; target_bn train != eval"

# checkpoint after round 2 on 2 ranks, resume to round 4 on 1 (the sources' statistics in the checkpoint)
run resumed 2 --set run.rounds=2 --set checkpoint.every=2
fh_mpirun 1 run "$deck" "${common[@]}" --set checkpoint.every=2 --resume "$TMP/resumed" >>"$TMP/resumed.log" 2>&1 \
  || { cat "$TMP/resumed.log"; fail "resumed part"; }
ck_compare local1 resumed
ok "bn_buffers = local: resumed 2 -> 1 ranks equals the uninterrupted run"

# without BatchNorm the scoring mode changes nothing
run mlp_train 1 --set model.arch=mlp
run mlp_eval 1 --set model.arch=mlp --set eval.target_bn=eval
"$PY" "$(dirname "$0")/compare_runs.py" "$TMP" mlp_train mlp_eval >/dev/null || fail "target_bn changes an MLP's run"
ok "eval.target_bn: an MLP without BatchNorm scores the same either way"
echo "$NCHECKS passed, 0 failed"
