#!/usr/bin/env bash
# Every case of the registry's ranks check (each algorithm's table; plain
# FedAvg is test_bitwise_ranks.sh), with the evaluation modes on: the final
# model and every metric but the timings are bitwise identical on 1, 2 and 3
# ranks, and each mode that should be measured is.
# The schedule dimension (run.schedule, src/fl/schedule.h): the ranks cases
# also run balanced on 2 and 3 ranks, and every other case of the registry
# (every algorithm and add-on) runs static on 1 rank and balanced on 2 and 3,
# all bitwise equal; a balanced run on 3 ranks must have moved clients (unless
# its algorithm keeps them home, which it says). run.schedule_bandwidth makes
# moving free, so that the assignment is the cost-only LPT one.
# SCAFFOLD's client state in the hdf5 backend gives the memory backend's run,
# static and balanced; a checkpoint written under one schedule resumes under
# the other, and one from before run.schedule (no schedule/ columns) resumes.
source "$(dirname "$0")/lib.sh"
common=(--set run.rounds=6 --set run.clients=23 --set run.client_fraction=0.4 --set run.eval_every=2
        --set train.momentum=0.9 --set output.dir="$TMP")
balanced=(--set run.schedule=balanced --set run.schedule_bandwidth=1e15)
static=(--set run.schedule=static)

# moved NAME: clients moved over the run's rounds (metrics.h5 schedule/moved_clients)
moved() {
  "$PY" -c "import sys,h5py; print(int(h5py.File(sys.argv[1])['schedule/moved_clients'][:].sum()))" "$TMP/$1/metrics.h5"
}
# run_case NAME NP SCHEDULE ARGS...: one run; fails with its log
run_case() {
  local name=$1 np=$2 sched=$3
  shift 3
  local -n sets=$sched
  fh_mpirun "$np" run "$SRC_DIR/input/quickstart.ini" "${common[@]}" "$@" "${sets[@]}" --set output.name="$name"     >"$TMP/$name.log" 2>&1 || { cat "$TMP/$name.log"; fail "$name ($sched) on $np ranks"; }
}
# check_moved NAME: a balanced run moved clients, or said why it kept them home
check_moved() {
  grep -q "every client trains on its host" "$TMP/$1.log" || [[ $(moved "$1") -gt 0 ]] \
    || fail "$1: balanced on 3 ranks moved no client"
}

# the registry's cases (fh_cases, lib.sh): name|algorithm|settings|the modes that must hold a number
mapfile -t algs < <(fh_cases ranks)
[[ ${#algs[@]} -gt 0 ]] || fail "no ranks cases in the registry"
declare -A done_case=()
for spec in "${algs[@]}"; do
  IFS='|' read -r name alg settings modes <<<"$spec"
  done_case["$alg|$settings"]=1
  read -ra extra <<<"--set run.algorithm=$alg $settings"
  for np in 1 2 3; do run_case "${name}_np$np" "$np" static "${extra[@]}"; done
  for np in 2 3; do run_case "${name}_bal$np" "$np" balanced "${extra[@]}"; done
  check_moved "${name}_bal3"
  "$PY" "$(dirname "$0")/compare_runs.py" "$TMP" "${name}_np1" "${name}_np2" "${name}_np3" "${name}_bal2" \
    "${name}_bal3" | tee "$TMP/$name.cmp" || fail "$name: runs differ"
  for mode in $modes; do
    "$PY" -c "import sys,h5py,numpy as np; a=h5py.File(sys.argv[1])[sys.argv[2]][-1]; sys.exit(not (np.isfinite(a) and 0 < a <= 1))" \
      "$TMP/${name}_np1/metrics.h5" "$mode" || fail "$name: $mode was not measured"
  done
  ok "$name on 1, 2, 3 ranks, static and balanced ($(moved "${name}_bal3") clients moved on 3 ranks)"
done

# every other case of the registry: static on 1 rank = balanced on 2 and 3
mapfile -t others < <(fh_cases all)
i=0
for spec in "${others[@]}"; do
  IFS='|' read -r name alg settings _ <<<"$spec"
  [[ -z ${done_case["$alg|$settings"]:-} ]] || continue
  done_case["$alg|$settings"]=1
  i=$((i + 1))
  id="s${i}_${name//+/_}"
  read -ra extra <<<"--set run.algorithm=$alg $settings"
  run_case "${id}_np1" 1 static "${extra[@]}"
  for np in 2 3; do run_case "${id}_bal$np" "$np" balanced "${extra[@]}"; done
  check_moved "${id}_bal3"
  "$PY" "$(dirname "$0")/compare_runs.py" "$TMP" "${id}_np1" "${id}_bal2" "${id}_bal3" | tee "$TMP/$id.cmp" \
    || fail "$name: balanced differs from static"
  ok "$name: static on 1 rank = balanced on 2, 3 ($(moved "${id}_bal3") clients moved on 3 ranks)"
done
[[ -z ${FH_TEST_ONLY:-} ]] || { echo "$NCHECKS passed, 0 failed"; exit 0; }
# the hdf5 state backend, 1 rank, against the memory backend on 2
fh_mpirun 1 run "$SRC_DIR/input/quickstart.ini" "${common[@]}" --set run.algorithm=scaffold --set train.momentum=0 \
  --set output.name=scaffold_h5 --set state.backend=hdf5 >"$TMP/h5.log" 2>&1 || { cat "$TMP/h5.log"; fail "hdf5 backend"; }
fh_mpirun 2 run "$SRC_DIR/input/quickstart.ini" "${common[@]}" --set run.algorithm=scaffold --set train.momentum=0 \
  --set output.name=scaffold_mem >"$TMP/mem.log" 2>&1 || { cat "$TMP/mem.log"; fail "memory backend"; }
"$PY" "$(dirname "$0")/compare_runs.py" "$TMP" scaffold_mem scaffold_h5 || fail "hdf5 backend differs"
ok "scaffold: hdf5 state backend on 1 rank = memory backend on 2"
run_case scaffold_h5_bal 3 balanced --set run.algorithm=scaffold --set train.momentum=0 --set state.backend=hdf5
check_moved scaffold_h5_bal
"$PY" "$(dirname "$0")/compare_runs.py" "$TMP" scaffold_mem scaffold_h5_bal || fail "hdf5 backend, balanced, differs"
ok "scaffold: hdf5 state backend, balanced on 3 ranks = memory backend, static on 2"
# a checkpoint after round 4 under one schedule, resumed to round 6 under the other
sc=(--set run.algorithm=scaffold --set train.momentum=0)
for pair in static:balanced balanced:static; do
  w=${pair%:*} r=${pair#*:} name="resume_${w}_to_$r"
  run_case "$name" 2 "$w" "${sc[@]}" --set run.rounds=4 --set checkpoint.every=2
  if [[ $r == static ]]; then rs=("${static[@]}"); else rs=("${balanced[@]}"); fi
  fh_mpirun 3 run "$SRC_DIR/input/quickstart.ini" "${common[@]}" "${sc[@]}" "${rs[@]}" --set checkpoint.every=2 \
    --resume "$TMP/$name" >>"$TMP/$name.log" 2>&1 || { cat "$TMP/$name.log"; fail "$name: resumed part"; }
  grep -q "resumed from $TMP/$name/checkpoint.h5 after round 4 of 6" "$TMP/$name.log" || fail "$name: not resumed"
  "$PY" "$(dirname "$0")/compare_runs.py" "$TMP" scaffold_mem "$name" || fail "$name differs"
  ok "scaffold: checkpoint written $w on 2 ranks, resumed $r on 3 = uninterrupted"
done
# a checkpoint from before run.schedule (no metrics/schedule group) resumes, balanced
name=resume_pre_schedule
run_case "$name" 2 static "${sc[@]}" --set run.rounds=4 --set checkpoint.every=2
"$PY" -c "import sys,h5py; f=h5py.File(sys.argv[1],'a'); del f['metrics/schedule']" "$TMP/$name/checkpoint.h5"
fh_mpirun 3 run "$SRC_DIR/input/quickstart.ini" "${common[@]}" "${sc[@]}" "${balanced[@]}" --set checkpoint.every=2 \
  --resume "$TMP/$name" >>"$TMP/$name.log" 2>&1 || { cat "$TMP/$name.log"; fail "$name: resumed part"; }
"$PY" "$(dirname "$0")/compare_runs.py" "$TMP" scaffold_mem "$name" || fail "$name differs"
ok "scaffold: a checkpoint without schedule/ columns resumes balanced on 3 = uninterrupted"
echo "$NCHECKS passed, 0 failed"
