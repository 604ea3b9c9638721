#!/usr/bin/env bash
# AugFL with the authors' model pair on synthetic 3x32x32 images: a resnet8x4
# meta-model (residual joins, BatchNorm in training mode in the server's
# pass) regularised by a resnet32x4 pretrained model (BatchNorm statistics
# read from its model file), with the feature-hint term:
# (client steps on minibatches of 3 rows to keep it short)
# - the final model (parameters and BatchNorm statistics) and every metric
#   are bitwise identical on 1, 2 and 3 ranks;
# - a run checkpointed after round 1 on 2 ranks and resumed on 3 to round 2
#   equals the uninterrupted run.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/checkpoint_lib.sh"
deck="$SRC_DIR/input/augfl_synthimg_resnet.ini"
common=(--set output.dir="$TMP" --set pm.path="$TMP/pm.h5" --set data.synthimg_train=150
        --set data.synthimg_test=10 --set data.server_fraction=0.05 --set data.server_shards=3
        --set run.clients=4 --set eval.holdout_clients=1 --set partition.class_samples=5
        --set augfl.server_batch=4 --set augfl.batch=3 --set run.eval_every=2)
fh_mpirun 2 pretrain "$deck" "${common[@]}" --set pretrain.epochs=1 >"$TMP/pretrain.log" 2>&1 \
  || { cat "$TMP/pretrain.log"; fail "pretrain"; }
runs=()
for np in 1 2 3; do
  fh_mpirun "$np" run "$deck" "${common[@]}" --set output.name="np$np" >"$TMP/np$np.log" 2>&1 \
    || { cat "$TMP/np$np.log"; fail "resnet pair on $np ranks"; }
  runs+=("np$np")
done
grep -q "feature hint a_hint = 0.1 between the meta-model's 256 features and the PM's 256" "$TMP/np1.log" \
  || { cat "$TMP/np1.log"; fail "no hint line"; }
"$PY" "$(dirname "$0")/compare_runs.py" "$TMP" "${runs[@]}" || fail "runs differ"
ok "resnet8x4 + resnet32x4: bitwise identical on 1, 2, 3 ranks"

fh_mpirun 2 run "$deck" "${common[@]}" --set run.rounds=1 --set checkpoint.every=1 --set output.name=resumed \
  >"$TMP/resumed.log" 2>&1 || { cat "$TMP/resumed.log"; fail "first part"; }
fh_mpirun 3 run "$deck" "${common[@]}" --set checkpoint.every=1 --resume "$TMP/resumed" >>"$TMP/resumed.log" 2>&1 \
  || { cat "$TMP/resumed.log"; fail "resumed part"; }
grep -q "resumed from $TMP/resumed/checkpoint.h5 after round 1 of 2" "$TMP/resumed.log" \
  || { cat "$TMP/resumed.log"; fail "no resumed line"; }
ck_compare np1 resumed
echo "$NCHECKS passed, 0 failed"
