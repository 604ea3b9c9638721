#!/usr/bin/env bash
# Training augmentation (data.augment_*) on the model-heterogeneous path:
# for pFedAFM and each of its baselines, a run with flips and random crops
# trains differently from the same run without (its metrics differ), and is
# still bitwise identical on 1 and 2 ranks (each client augments from its own
# stream). The algorithms whose client training cannot augment refuse the
# keys with exit 3 and one line. One table of algorithms drives the checks.
source "$(dirname "$0")/lib.sh"
common=(--set data.source=synthimg --set data.synthimg_height=8 --set data.synthimg_width=8
        --set data.synthimg_train=600 --set data.synthimg_test=300 --set run.rounds=2 --set run.clients=6
        --set run.client_fraction=0.5 --set run.eval_every=1 --set hetero.models=mlp-32-16,mlp-24-16
        --set pfedafm.shared=mlp-20-16 --set model.hidden=16 --set hetero.epochs=1 --set train.batch_size=16
        --set fedkd.max_rank=4 --set output.dir="$TMP")
aug=(--set data.augment_flip=true --set data.augment_crop_pad=2)
# every algorithm that trains with the heterogeneous gather, and the
# homogeneous ones that train with local SGD (one of them suffices here)
algs=(pfedafm standalone lg_fedavg fml fedkd fedproto fedgh fd fedavg)
for alg in "${algs[@]}"; do
  fh_mpirun 1 run "$SRC_DIR/input/quickstart.ini" "${common[@]}" --set run.algorithm="$alg" \
    --set output.name="${alg}_plain" >"$TMP/${alg}_plain.log" 2>&1 || { cat "$TMP/${alg}_plain.log"; fail "$alg plain"; }
  for np in 1 2; do
    fh_mpirun "$np" run "$SRC_DIR/input/quickstart.ini" "${common[@]}" "${aug[@]}" --set run.algorithm="$alg" \
      --set output.name="${alg}_aug$np" >"$TMP/${alg}_aug$np.log" 2>&1 || { cat "$TMP/${alg}_aug$np.log"; fail "$alg augmented on $np ranks"; }
  done
  "$PY" "$(dirname "$0")/compare_runs.py" "$TMP" "${alg}_aug1" "${alg}_aug2" >"$TMP/$alg.cmp" \
    || { cat "$TMP/$alg.cmp"; fail "$alg: augmented runs differ between 1 and 2 ranks"; }
  if "$PY" "$(dirname "$0")/compare_runs.py" "$TMP" "${alg}_plain" "${alg}_aug1" >"$TMP/$alg.cmp2" 2>&1; then
    fail "$alg: augmentation did not change training (bitwise identical to the run without)"
  fi
  ok "$alg: augmentation changes training; augmented runs bitwise identical on 1 and 2 ranks"
done

for alg in perfedavg augfl; do
  rc=0
  fh_mpirun 1 run "$SRC_DIR/input/quickstart.ini" "${common[@]}" "${aug[@]}" --set run.algorithm="$alg" \
    --set output.name="${alg}_refused" >"$TMP/$alg.log" 2>&1 || rc=$?
  [[ $rc -eq 3 ]] || { cat "$TMP/$alg.log"; fail "$alg with data.augment_*: exit $rc, not 3"; }
  n=$(grep -c "cannot honour data.augment_" "$TMP/$alg.log" || true)
  [[ $n -eq 1 ]] || { cat "$TMP/$alg.log"; fail "$alg: refusal not said in one line"; }
  ok "$alg refuses data.augment_* (exit 3)"
done
echo "$NCHECKS checks passed"
