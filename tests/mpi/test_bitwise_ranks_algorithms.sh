#!/usr/bin/env bash
# Every case of the registry's ranks check (each algorithm's table; plain
# FedAvg is test_bitwise_ranks.sh), with the evaluation modes on: the final
# model and every metric but the timings are bitwise identical on 1, 2 and 3
# ranks, and each mode that should be measured is.
# SCAFFOLD's client state in the hdf5 backend gives the memory backend's run.
source "$(dirname "$0")/lib.sh"
common=(--set run.rounds=6 --set run.clients=23 --set run.client_fraction=0.4 --set run.eval_every=2
        --set train.momentum=0.9 --set output.dir="$TMP")
# the registry's cases (fh_cases, lib.sh): name|algorithm|settings|the modes that must hold a number
mapfile -t algs < <(fh_cases ranks)
[[ ${#algs[@]} -gt 0 ]] || fail "no ranks cases in the registry"
for spec in "${algs[@]}"; do
  IFS='|' read -r name alg settings modes <<<"$spec"
  read -ra extra <<<"--set run.algorithm=$alg $settings"
  for np in 1 2 3; do
    fh_mpirun "$np" run "$SRC_DIR/input/quickstart.ini" "${common[@]}" "${extra[@]}" --set output.name="${name}_np$np" \
      >"$TMP/${name}_np$np.log" 2>&1 || { cat "$TMP/${name}_np$np.log"; fail "$name on $np ranks"; }
  done
  "$PY" "$(dirname "$0")/compare_runs.py" "$TMP" "${name}_np1" "${name}_np2" "${name}_np3" | tee "$TMP/$name.cmp" \
    || fail "$name: runs differ"
  for mode in $modes; do
    "$PY" -c "import sys,h5py,numpy as np; a=h5py.File(sys.argv[1])[sys.argv[2]][-1]; sys.exit(not (np.isfinite(a) and 0 < a <= 1))" \
      "$TMP/${name}_np1/metrics.h5" "$mode" || fail "$name: $mode was not measured"
  done
  ok "$name on 1, 2, 3 ranks"
done
[[ -z ${FH_TEST_ONLY:-} ]] || { echo "$NCHECKS passed, 0 failed"; exit 0; }
# the hdf5 state backend, 1 rank, against the memory backend on 2
fh_mpirun 1 run "$SRC_DIR/input/quickstart.ini" "${common[@]}" --set run.algorithm=scaffold --set train.momentum=0 \
  --set output.name=scaffold_h5 --set state.backend=hdf5 >"$TMP/h5.log" 2>&1 || { cat "$TMP/h5.log"; fail "hdf5 backend"; }
fh_mpirun 2 run "$SRC_DIR/input/quickstart.ini" "${common[@]}" --set run.algorithm=scaffold --set train.momentum=0 \
  --set output.name=scaffold_mem >"$TMP/mem.log" 2>&1 || { cat "$TMP/mem.log"; fail "memory backend"; }
"$PY" "$(dirname "$0")/compare_runs.py" "$TMP" scaffold_mem scaffold_h5 || fail "hdf5 backend differs"
ok "scaffold: hdf5 state backend on 1 rank = memory backend on 2"
echo "$NCHECKS passed, 0 failed"
