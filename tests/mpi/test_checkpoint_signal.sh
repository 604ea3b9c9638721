#!/usr/bin/env bash
# The signal path: SIGTERM to one rank (as Slurm's srun delivers it), or SIGUSR1
# to mpirun (which forwards it to every rank), while a long run is going. The
# ranks agree at the end of the round, write a checkpoint, leave
# metrics.h5.partial with status "interrupted: ...", print how to resume, and
# exit 75; the run resumed on another rank count ends bitwise equal to the
# uninterrupted run.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/checkpoint_lib.sh"
R=200
common=(--set run.rounds=$R --set run.clients=23 --set run.client_fraction=0.2 --set run.eval_every=5
        --set train.epochs=1 --set output.dir="$TMP")

# interrupt NAME NP WHO SIGNAL: starts the run, waits for round 3, signals WHO
# (mpirun, or one rank), expects exit 75 and the outputs of an interrupted run.
interrupt() {
  local name=$1 np=$2 who=$3 sig=$4 launcher mpirun_pid target rc=0
  timeout 120 "$MPIEXEC" --allow-run-as-root --oversubscribe -np "$np" -x OPENBLAS_NUM_THREADS=1 "$FEDHPC" run \
    "$CK_DECK" "${common[@]}" --set run.algorithm="${ALGORITHM_OF[$alg]}" "${extra[@]}" --set output.name="$name" >"$TMP/$name.log" 2>&1 &
  launcher=$!
  for _ in $(seq 600); do
    grep -q "^round  *3/" "$TMP/$name.log" && break
    sleep 0.05
  done
  grep -q "^round  *3/" "$TMP/$name.log" || { kill "$launcher"; cat "$TMP/$name.log"; fail "$name: round 3 never came"; }
  mpirun_pid=$(pgrep -P "$launcher")
  if [[ $who == mpirun ]]; then target=$mpirun_pid; else target=$(pgrep -P "$mpirun_pid" | head -1); fi
  [[ -n $target ]] || fail "$name: no process to signal"
  kill -s "$sig" "$target"
  wait "$launcher" || rc=$?
  [[ $rc -eq 75 ]] || { cat "$TMP/$name.log"; fail "$name: exit $rc after SIG$sig, expected 75"; }
  local at
  at=$(ck_attr "$TMP/$name/checkpoint.h5" round)
  [[ $at -ge 3 && $at -lt $R ]] || fail "$name: checkpoint after round $at"
  ck_attr "$TMP/$name/metrics.h5.partial" status | grep -q "^interrupted: SIG$sig after round $at of $R" \
    || fail "$name: metrics.h5.partial status is not 'interrupted'"
  [[ ! -f $TMP/$name/metrics.h5 && ! -f $TMP/$name/model.h5 ]] || fail "$name: an interrupted run looks complete"
  grep -q "stopped by SIG$sig after round $at of $R; .* resume with: fedhpc run $TMP/$name/config.ini --resume $TMP/$name" \
    "$TMP/$name.log" || { cat "$TMP/$name.log"; fail "$name: no line saying how to resume"; }
  ok "$name: SIG$sig to $who -> exit 75 after round $at with a checkpoint"
}

for alg in "${ALGORITHMS[@]}"; do
  read -ra extra <<<"${ALGORITHM_SETS[$alg]:-}" # the algorithm's overrides (checkpoint_lib.sh)
  fh_mpirun 2 run "$CK_DECK" "${common[@]}" --set run.algorithm="${alg%%+*}" "${extra[@]}" --set output.name="$alg-ref" \
    >"$TMP/$alg-ref.log" 2>&1 || { cat "$TMP/$alg-ref.log"; fail "$alg: uninterrupted run"; }
  interrupt "$alg-term" 2 rank TERM
  fh_mpirun 3 run "$TMP/$alg-term/config.ini" --resume "$TMP/$alg-term" >>"$TMP/$alg-term.log" 2>&1 \
    || { cat "$TMP/$alg-term.log"; fail "$alg-term: resume"; }
  ck_compare "$alg-ref" "$alg-term"
  interrupt "$alg-usr1" 3 mpirun USR1
  fh_mpirun 1 run "$TMP/$alg-usr1/config.ini" --resume "$TMP/$alg-usr1" >>"$TMP/$alg-usr1.log" 2>&1 \
    || { cat "$TMP/$alg-usr1.log"; fail "$alg-usr1: resume"; }
  ck_compare "$alg-ref" "$alg-usr1"
done
echo "$NCHECKS passed, 0 failed"
