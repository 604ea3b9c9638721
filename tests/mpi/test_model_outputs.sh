#!/usr/bin/env bash
# model.outputs: networks with more logits than the data set's classes (the
# AugFL authors' have 100 for every data set), on the digits deck (10 classes):
# - AugFL with a PM pretrained with 100 outputs (the default R, CE + CRD) has
#   a 100-row classifier, is bitwise identical on 1, 2 and 3 ranks, and a run
#   checkpointed after round 4 on 2 ranks and resumed on 3 equals it;
# - FedAvg with 100 outputs is bitwise identical on 1 and 3 ranks and differs
#   from the 10-output run; model.outputs = 10 (the classes) is bitwise the
#   run of the default (0);
# - refused (exit 3, one line): fewer outputs than classes; an algorithm that
#   sizes its own heads by the classes; a PM of other logits (pm.outputs)
#   with R's KL term, or below the classes; a PM file of another width (exit 4);
# - the authors' pairing, a PM of the 10 classes beside the 100-output
#   meta-model (pm.outputs = 10, R without KL), bitwise on 1 and 2 ranks.
# (The softmax, loss, gradients and argmax over all outputs against PyTorch:
# tests/unit/test_nn_outputs.c.)
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/checkpoint_lib.sh"
deck="$SRC_DIR/input/augfl_digits.ini"
common=(--set output.dir="$TMP" --set data.path="$SRC_DIR/input/digits.h5" --set data.server_shards=6
        --set pm.hidden=64 --set pm.path="$TMP/pm100.h5" --set run.rounds=6 --set run.eval_every=2
        --set augfl.crd_k=64 --set augfl.crd_dim=32 --set model.outputs=100)
fh_mpirun 2 pretrain "$deck" "${common[@]}" --set pretrain.epochs=3 >"$TMP/pretrain.log" 2>&1 \
  || { cat "$TMP/pretrain.log"; fail "pretrain"; }

runs=()
for np in 1 2 3; do
  fh_mpirun "$np" run "$deck" "${common[@]}" --set output.name="augfl_np$np" >"$TMP/augfl_np$np.log" 2>&1 \
    || { cat "$TMP/augfl_np$np.log"; fail "augfl, 100 outputs, on $np ranks"; }
  runs+=("augfl_np$np")
done
"$PY" "$(dirname "$0")/compare_runs.py" "$TMP" "${runs[@]}" || fail "augfl with 100 outputs: runs differ"
"$PY" - "$TMP" <<'PY' || fail "the classifier or the PM is not 100 wide"
import sys, h5py
for path, what in ((f"{sys.argv[1]}/augfl_np1/model.h5", "meta-model"), (f"{sys.argv[1]}/pm100.h5", "PM")):
    with h5py.File(path) as f:
        shape = f["params"]["fc2.weight"].shape
    assert shape[0] == 100, (what, shape)
PY
grep -q "CRD a_crd = 0.8" "$TMP/augfl_np1.log" || fail "no CRD in the 100-output run"
ok "augfl, 100 outputs (PM too): bitwise identical on 1, 2, 3 ranks"

fh_mpirun 2 run "$deck" "${common[@]}" --set run.rounds=4 --set checkpoint.every=2 --set output.name=resumed \
  >"$TMP/resumed.log" 2>&1 || { cat "$TMP/resumed.log"; fail "first part"; }
fh_mpirun 3 run "$deck" "${common[@]}" --set checkpoint.every=2 --resume "$TMP/resumed" >>"$TMP/resumed.log" 2>&1 \
  || { cat "$TMP/resumed.log"; fail "resumed part"; }
ck_compare augfl_np1 resumed

fedavg=(--set run.algorithm=fedavg --set train.epochs=1 --set train.lr=0.05)
for spec in "o100_np1|1|100" "o100_np3|3|100" "o10|2|10" "o0|2|0"; do
  IFS='|' read -r name np o <<<"$spec"
  fh_mpirun "$np" run "$deck" "${common[@]}" "${fedavg[@]}" --set model.outputs="$o" --set output.name="$name" \
    >"$TMP/$name.log" 2>&1 || { cat "$TMP/$name.log"; fail "fedavg $name"; }
done
"$PY" "$(dirname "$0")/compare_runs.py" "$TMP" o100_np1 o100_np3 || fail "fedavg with 100 outputs: runs differ"
ok "fedavg, 100 outputs: bitwise identical on 1 and 3 ranks"
"$PY" "$(dirname "$0")/compare_runs.py" "$TMP" o0 o10 || fail "model.outputs = 10 differs from the default"
ok "model.outputs = the classes: bitwise the default run"
"$PY" "$(dirname "$0")/compare_runs.py" "$TMP" o10 o100_np1 >/dev/null 2>&1 && fail "100 outputs give the 10-output run"

expect_fail() { # expect_fail CODE TEXT ARGS...
  local code=$1 text=$2 rc=0
  shift 2
  fh_mpirun 2 run "$deck" "${common[@]}" "$@" --set output.name=bad >"$TMP/bad.log" 2>&1 || rc=$?
  [[ $rc -eq $code ]] && grep -qF "$text" "$TMP/bad.log" || { cat "$TMP/bad.log"; fail "$*: exit $rc, expected $code"; }
  [[ $(grep -c "error:" "$TMP/bad.log") -eq 1 ]] || { cat "$TMP/bad.log"; fail "$*: not one line"; }
  ok "refused ($code): $*"
}
expect_fail 3 "model.outputs = 5 is fewer than the data set's 10 classes" --set model.outputs=5
expect_fail 3 "model.outputs = 100 (the data set has 10 classes) is not supported by run.algorithm = fedproto" \
  --set run.algorithm=fedproto
fh_mpirun 1 pretrain "$deck" "${common[@]}" --set model.outputs=0 --set pm.path="$TMP/pm10.h5" \
  --set pretrain.epochs=1 >"$TMP/pretrain10.log" 2>&1 || { cat "$TMP/pretrain10.log"; fail "pretrain, 10 outputs"; }
expect_fail 4 "pm.path: " --set pm.path="$TMP/pm10.h5"
# the authors' pairing: a PM of the data set's 10 classes beside a 100-output meta-model (pm.outputs)
pm10=(--set pm.path="$TMP/pm10.h5" --set pm.outputs=10)
for np in 1 2; do
  fh_mpirun "$np" run "$deck" "${common[@]}" "${pm10[@]}" --set output.name="pm10_np$np" >"$TMP/pm10_np$np.log" 2>&1 \
    || { cat "$TMP/pm10_np$np.log"; fail "augfl, 100 outputs, a 10-class PM, on $np ranks"; }
done
"$PY" "$(dirname "$0")/compare_runs.py" "$TMP" pm10_np1 pm10_np2 || fail "a 10-class PM: runs differ"
ok "augfl, 100 outputs with a 10-class PM (pm.outputs = 10): bitwise identical on 1 and 2 ranks"
expect_fail 3 "pm.outputs = 10 but the meta-model has 100" "${pm10[@]}" --set augfl.kd_weight=1
expect_fail 3 "pm.outputs = 5 is fewer than the data set's 10 classes" --set pm.outputs=5
echo "$NCHECKS passed, 0 failed"
