#!/usr/bin/env bash
# AugFL on the scaled-down digits deck (a pretrained model made first):
# - the final model and every metric are bitwise identical on 1, 2 and 3
#   ranks, with full-batch and with minibatch client steps, without the
#   pretrained model (lambda = 0, ADMM-FedMeta), with the default R (CE + CRD,
#   the authors' weights; 64 negatives, 32-wide embeddings to stay short, the
#   heads stepped each round),
#   with KD instead of CRD, with the feature hint, and with the CRD heads'
#   own momentum-SGD steps before g_R (augfl.crd_head_steps); the target clients
#   (held-out) and the sources' personalised accuracy are measured;
# - a run checkpointed after round 4 and resumed on another rank count to
#   round 6 equals the uninterrupted run (duals and counters in the checkpoint;
#   CRD's heads, memory banks, Z and pass count as server state),
#   also with the feature-hint term, whose connector is server state, and
#   with the heads' steps, whose momentum (carried) is server state;
# - the second-order server step (ScaLAPACK on 2 and 4 ranks, LAPACK on 1)
#   gives the same model on 1, 2 and 4 ranks to rounding, and not the
#   linearised step's; the same for the step over the whole model (a small
#   MLP), and a model above augfl.second_order_max_n is refused;
# - decks the method cannot run are refused: partial participation, the
#   second-order step without the regulariser (exit 3), a missing PM (exit 4).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/checkpoint_lib.sh"
deck="$SRC_DIR/input/augfl_digits.ini"
common=(--set output.dir="$TMP" --set data.path="$SRC_DIR/input/digits.h5" --set data.server_shards=6
        --set pm.hidden=64 --set pm.path="$TMP/pm.h5" --set run.rounds=6 --set run.eval_every=2
        --set augfl.crd_k=64 --set augfl.crd_dim=32 --set augfl.crd_lr=0.05)
fh_mpirun 2 pretrain "$deck" "${common[@]}" --set pretrain.epochs=4 >"$TMP/pretrain.log" 2>&1 \
  || { cat "$TMP/pretrain.log"; fail "pretrain"; }

measured() { # measured RUN MODE...: the last value of each mode is a number in (0, 1]
  local run=$1
  shift
  for mode in "$@"; do
    "$PY" -c "import sys,h5py,numpy as np; a=h5py.File(sys.argv[1])[sys.argv[2]][-1]; sys.exit(not (np.isfinite(a) and 0 < a <= 1))" \
      "$TMP/$run/metrics.h5" "$mode" || fail "$run: $mode was not measured"
  done
}

# name|settings|rank counts
cases=("pm||1 2 3" "kd|--set augfl.kd_weight=1 --set augfl.crd_weight=0|1 2" "minibatch|--set augfl.batch=6|1 3" "nopm|--set augfl.lambda=0|1 2"
       "hint|--set augfl.hint_weight=0.5|1 3"
       "heads|--set augfl.crd_head_steps=2 --set augfl.crd_head_lr=0.05 --set augfl.crd_head_carry=true|1 2 3")
for spec in "${cases[@]}"; do
  IFS='|' read -r name settings nps <<<"$spec"
  read -ra extra <<<"$settings"
  runs=()
  for np in $nps; do
    fh_mpirun "$np" run "$deck" "${common[@]}" "${extra[@]}" --set output.name="${name}_np$np" \
      >"$TMP/${name}_np$np.log" 2>&1 || { cat "$TMP/${name}_np$np.log"; fail "$name on $np ranks"; }
    runs+=("${name}_np$np")
  done
  "$PY" "$(dirname "$0")/compare_runs.py" "$TMP" "${runs[@]}" || fail "$name: runs differ"
  measured "${runs[0]}" holdout/accuracy personal/accuracy test_accuracy
  ok "$name: bitwise identical on $nps ranks"
done
grep -q "no PM: ADMM-FedMeta" "$TMP/nopm_np1.log" || fail "lambda = 0 is not reported as ADMM-FedMeta"
grep -q "CRD a_crd = 0.8: heads 32 -> 32 and 64 -> 32, 64 negatives per row" "$TMP/pm_np1.log" \
  || { cat "$TMP/pm_np1.log"; fail "the default R has no CRD line"; }
grep -q "R = 1 CE + 0 T^2 KL (T = 4) + a_crd CRD" "$TMP/pm_np1.log" || fail "the default R is not 1 CE + 0 KL + CRD"
grep -q "CRD a_crd" "$TMP/kd_np1.log" && fail "augfl.crd_weight = 0 still runs CRD"
"$PY" "$(dirname "$0")/compare_runs.py" "$TMP" pm_np1 kd_np1 >/dev/null 2>&1 && fail "CRD and KD give the same run"

# checkpoint after round 4 on 2 ranks, resume to round 6 on 3
fh_mpirun 2 run "$deck" "${common[@]}" --set run.rounds=4 --set checkpoint.every=2 --set output.name=resumed \
  >"$TMP/resumed.log" 2>&1 || { cat "$TMP/resumed.log"; fail "first part"; }
fh_mpirun 3 run "$deck" "${common[@]}" --set checkpoint.every=2 --resume "$TMP/resumed" >>"$TMP/resumed.log" 2>&1 \
  || { cat "$TMP/resumed.log"; fail "resumed part"; }
grep -q "resumed from $TMP/resumed/checkpoint.h5 after round 4 of 6" "$TMP/resumed.log" || fail "no resumed line"
ck_compare pm_np1 resumed
# the heads' own momentum-SGD steps, momentum carried across rounds (server state)
grep -q "CRD heads take 2 momentum-SGD steps per round over the server rows before g_R (lr 0.05, momentum 0.9, weight decay 0.0005, momentum carried across rounds)" \
  "$TMP/heads_np1.log" || { cat "$TMP/heads_np1.log"; fail "no head-steps line"; }
"$PY" "$(dirname "$0")/compare_runs.py" "$TMP" pm_np1 heads_np1 >/dev/null 2>&1 && fail "the heads' steps change nothing"
heads=(--set augfl.crd_head_steps=2 --set augfl.crd_head_lr=0.05 --set augfl.crd_head_carry=true)
fh_mpirun 3 run "$deck" "${common[@]}" "${heads[@]}" --set run.rounds=4 --set checkpoint.every=2 \
  --set output.name=heads_resumed >"$TMP/heads_resumed.log" 2>&1 || { cat "$TMP/heads_resumed.log"; fail "heads: first part"; }
fh_mpirun 2 run "$deck" "${common[@]}" "${heads[@]}" --set checkpoint.every=2 --resume "$TMP/heads_resumed" \
  >>"$TMP/heads_resumed.log" 2>&1 || { cat "$TMP/heads_resumed.log"; fail "heads: resumed part"; }
ck_compare heads_np1 heads_resumed
# with the hint term's learnable connector (server state: 32 -> 64 features)
grep -q "between the meta-model's 32 features and the PM's 64 through a learnable linear connector" "$TMP/hint_np1.log" \
  || { cat "$TMP/hint_np1.log"; fail "no connector line"; }
fh_mpirun 3 run "$deck" "${common[@]}" --set augfl.hint_weight=0.5 --set run.rounds=4 --set checkpoint.every=2 \
  --set output.name=hint_resumed >"$TMP/hint_resumed.log" 2>&1 || { cat "$TMP/hint_resumed.log"; fail "hint: first part"; }
fh_mpirun 1 run "$deck" "${common[@]}" --set augfl.hint_weight=0.5 --set checkpoint.every=2 \
  --resume "$TMP/hint_resumed" >>"$TMP/hint_resumed.log" 2>&1 || { cat "$TMP/hint_resumed.log"; fail "hint: resumed part"; }
ck_compare hint_np1 hint_resumed
"$PY" - "$TMP" <<'PY' || fail "the hint term changes nothing"
import sys, h5py, numpy as np
def params(run):
    with h5py.File(f"{sys.argv[1]}/{run}/model.h5") as f:
        return np.concatenate([f["params"][k][()].ravel() for k in sorted(f["params"])])
assert np.abs(params("hint_np1") - params("pm_np1")).max() > 1e-4
PY

# the second-order step: the same to rounding on 1, 2, 4 ranks; not the linearised step
for np in 1 2 4; do
  fh_mpirun "$np" run "$deck" "${common[@]}" --set augfl.step=second_order --set augfl.gn_chunk=50 \
    --set output.name="so_np$np" >"$TMP/so_np$np.log" 2>&1 || { cat "$TMP/so_np$np.log"; fail "second order on $np ranks"; }
done
grep -q "second-order step over the classifier (330 unknowns) on the BLACS grid of 4 ranks" "$TMP/so_np4.log" \
  || { cat "$TMP/so_np4.log"; fail "no second-order line"; }
"$PY" - "$TMP" <<'PY' || fail "second-order runs disagree"
import sys, h5py, numpy as np
def params(run):
    with h5py.File(f"{sys.argv[1]}/{run}/model.h5") as f:
        return np.concatenate([f["params"][k][()].ravel() for k in sorted(f["params"])])
ref, lin = params("so_np1"), params("pm_np1")
step = np.abs(ref - lin).max() / np.abs(ref).max()
print(f"second order vs linearised: max rel diff {step:.3g}")
assert step > 1e-3, "the second-order step changes nothing"
for run in ("so_np2", "so_np4"):
    d = np.abs(params(run) - ref).max() / np.abs(ref).max()
    print(f"{run} vs so_np1: max rel diff {d:.3g}")
    assert d < 1e-4, run
PY
measured so_np4 holdout/accuracy
ok "second-order step: 1, 2, 4 ranks agree to rounding"

# over the whole model (an MLP 64-4-10: 310 unknowns): the same to rounding on 1 and 4 ranks; not linearised
small=(--set model.hidden=4 --set augfl.gn_chunk=50)
fh_mpirun 1 run "$deck" "${common[@]}" "${small[@]}" --set output.name=lin_small >"$TMP/lin_small.log" 2>&1 \
  || { cat "$TMP/lin_small.log"; fail "linearised, small model"; }
for np in 1 4; do
  fh_mpirun "$np" run "$deck" "${common[@]}" "${small[@]}" --set augfl.step=second_order \
    --set augfl.second_order_block=all --set output.name="all_np$np" >"$TMP/all_np$np.log" 2>&1 \
    || { cat "$TMP/all_np$np.log"; fail "second order over the model on $np ranks"; }
done
grep -q "second-order step over the whole model (310 unknowns) on the BLACS grid of 4 ranks" "$TMP/all_np4.log" \
  || { cat "$TMP/all_np4.log"; fail "no whole-model line"; }
"$PY" - "$TMP" <<'PY' || fail "whole-model second-order runs disagree"
import sys, h5py, numpy as np
def params(run):
    with h5py.File(f"{sys.argv[1]}/{run}/model.h5") as f:
        return np.concatenate([f["params"][k][()].ravel() for k in sorted(f["params"])])
ref, lin = params("all_np1"), params("lin_small")
step = np.abs(ref - lin).max() / np.abs(ref).max()
print(f"whole-model second order vs linearised: max rel diff {step:.3g}")
assert step > 1e-3, "the second-order step changes nothing"
for run in ("all_np4",):
    d = np.abs(params(run) - ref).max() / np.abs(ref).max()
    print(f"{run} vs all_np1: max rel diff {d:.3g}")
    assert d < 1e-4, run
PY
measured all_np4 holdout/accuracy
ok "second-order step over the whole model: 1 and 4 ranks agree to rounding"

expect_fail() { # expect_fail CODE TEXT ARGS...
  local code=$1 text=$2 rc=0
  shift 2
  fh_mpirun 2 run "$deck" "${common[@]}" "$@" --set output.name=bad >"$TMP/bad.log" 2>&1 || rc=$?
  [[ $rc -eq $code ]] && grep -qF "$text" "$TMP/bad.log" || { cat "$TMP/bad.log"; fail "$*: exit $rc, expected $code"; }
  ok "refused ($code): $*"
}
expect_fail 3 "every source client takes part in every round" --set run.client_fraction=0.5
expect_fail 3 "augfl.step = second_order keeps the curvature of R" --set augfl.step=second_order --set augfl.lambda=0
expect_fail 3 "augfl.second_order_block = all: model.arch = mlp has 2410 parameters, more than augfl.second_order_max_n = 1000" \
  --set augfl.step=second_order --set augfl.second_order_block=all --set augfl.second_order_max_n=1000
expect_fail 4 "pm.path: $TMP/none.h5: cannot open model file" --set pm.path="$TMP/none.h5"
echo "$NCHECKS passed, 0 failed"
