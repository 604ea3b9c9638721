#!/usr/bin/env bash
# Checkpoint and resume (FedAvg, SCAFFOLD, FST-CBDG, AugFL, pFedAFM, FedAvg+LIPS, FedAvg+FedGC; see ALGORITHMS in checkpoint_lib.sh):
# - a run checkpointed after round 4 and resumed to round 6 equals the run that
#   went to round 6 uninterrupted, bit for bit, on 1 -> 1, 3 -> 3, 3 -> 2 and
#   1 -> 2 ranks; the model-heterogeneous baselines (RESUME_ALGORITHMS) on
#   3 -> 2 ranks;
# - a finished 3-round run extended to 4 rounds (run.eval_every = 2) equals the
#   4-round run: the evaluation forced in the old last round is dropped;
# - a run killed (SIGKILL) in the middle of the checkpoint write after round 4
#   keeps the round-2 checkpoint and resumes from it to the same result;
# - client-state fields of every type and server vectors come back on another
#   rank count and backend (mpi_checkpoint_state), and a field of another size
#   is refused;
# - resuming with a deck that changes what the checkpoint depends on is refused
#   with exit 3 naming the key and both values; no checkpoint is exit 2.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/checkpoint_lib.sh"
common=(--set run.clients=23 --set run.client_fraction=0.4 --set run.eval_every=2 --set train.momentum=0.9
        --set train.epochs=2 --set output.dir="$TMP")

for alg in "${ALGORITHMS[@]}"; do
  a=("${common[@]}" --set run.algorithm="${alg%%+*}")
  read -ra extra <<<"${ALGORITHM_SETS[$alg]:-}"
  a+=("${extra[@]}")
  fh_mpirun 1 run "$CK_DECK" "${a[@]}" --set run.rounds=6 --set output.name="$alg-ref" >"$TMP/$alg-ref.log" 2>&1 \
    || { cat "$TMP/$alg-ref.log"; fail "$alg: uninterrupted run"; }
  for pair in 1:1 3:3 3:2 1:2; do
    w=${pair%:*} r=${pair#*:} name="$alg-$w-to-$r"
    fh_mpirun "$w" run "$CK_DECK" "${a[@]}" --set run.rounds=4 --set checkpoint.every=2 --set output.name="$name" \
      >"$TMP/$name.log" 2>&1 || { cat "$TMP/$name.log"; fail "$name: first part"; }
    [[ $(ck_attr "$TMP/$name/checkpoint.h5" round) == 4 ]] || fail "$name: checkpoint is not after round 4"
    fh_mpirun "$r" run "$CK_DECK" "${a[@]}" --set run.rounds=6 --set checkpoint.every=2 --resume "$TMP/$name" \
      >>"$TMP/$name.log" 2>&1 || { cat "$TMP/$name.log"; fail "$name: resumed part"; }
    grep -q "resumed from $TMP/$name/checkpoint.h5 after round 4 of 6" "$TMP/$name.log" \
      || { cat "$TMP/$name.log"; fail "$name: no 'resumed' line"; }
    ck_compare "$alg-ref" "$name"
  done

  # SIGKILL in the middle of the write after round 4: the round-2 checkpoint stays.
  name="$alg-killed"
  rc=0
  timeout 120 "$MPIEXEC" --allow-run-as-root --oversubscribe -np 2 -x OPENBLAS_NUM_THREADS=1 \
    -x FEDHPC_TEST_KILL_IN_CHECKPOINT=4 "$FEDHPC" run "$CK_DECK" "${a[@]}" --set run.rounds=6 \
    --set checkpoint.every=2 --set output.name="$name" >"$TMP/$name.log" 2>&1 || rc=$?
  [[ $rc -ne 0 && $rc -ne 124 ]] || { cat "$TMP/$name.log"; fail "$name: exit $rc, expected a killed job"; }
  [[ -f $TMP/$name/checkpoint.h5.tmp ]] || fail "$name: no partial checkpoint.h5.tmp (was it killed in the write?)"
  [[ $(ck_attr "$TMP/$name/checkpoint.h5" round) == 2 ]] || fail "$name: checkpoint.h5 is not the round-2 one"
  [[ ! -f $TMP/$name/metrics.h5 ]] || fail "$name: a killed run has a metrics.h5"
  ok "$name: killed during the write; checkpoint.h5 still holds round 2"
  fh_mpirun 3 run "$CK_DECK" "${a[@]}" --set run.rounds=6 --set checkpoint.every=2 --resume "$TMP/$name" \
    >>"$TMP/$name.log" 2>&1 || { cat "$TMP/$name.log"; fail "$name: resume"; }
  [[ ! -f $TMP/$name/checkpoint.h5.tmp ]] || fail "$name: checkpoint.h5.tmp left after the resumed run"
  ck_compare "$alg-ref" "$name"

  # A finished run with its checkpoint after its last round (3, off the
  # run.eval_every = 2 schedule, evaluated only because it was the last),
  # extended to 4 rounds: equals the run that went to round 4 directly, which
  # has no evaluation in round 3.
  fh_mpirun 2 run "$CK_DECK" "${a[@]}" --set run.rounds=4 --set output.name="$alg-ref4" >"$TMP/$alg-ref4.log" 2>&1 \
    || { cat "$TMP/$alg-ref4.log"; fail "$alg: uninterrupted 4-round run"; }
  name="$alg-extended"
  fh_mpirun 2 run "$CK_DECK" "${a[@]}" --set run.rounds=3 --set checkpoint.every=3 --set output.name="$name" \
    >"$TMP/$name.log" 2>&1 || { cat "$TMP/$name.log"; fail "$name: the 3-round run"; }
  [[ $(ck_attr "$TMP/$name/checkpoint.h5" round) == 3 ]] || fail "$name: no checkpoint after the last round"
  "$PY" -c 'import sys, h5py, numpy as np
f = h5py.File(sys.argv[1], "r")  # the global model, or the clients own models without one
sys.exit(0 if np.isfinite(f["test_accuracy"][2]) or np.isfinite(f["personal/accuracy"][2]) else 1)' \
    "$TMP/$name/metrics.h5" \
    || fail "$name: the 3-round run did not evaluate its last round"
  fh_mpirun 3 run "$CK_DECK" "${a[@]}" --set run.rounds=4 --resume "$TMP/$name" >>"$TMP/$name.log" 2>&1 \
    || { cat "$TMP/$name.log"; fail "$name: extended to 4 rounds"; }
  ck_compare "$alg-ref4" "$name"
done

# The model-heterogeneous baselines (RESUME_ALGORITHMS): 3 ranks checkpoint
# after round 4, 2 ranks resume to round 6, equal to the uninterrupted run.
for alg in "${RESUME_ALGORITHMS[@]}"; do
  a=("${common[@]}" --set run.algorithm="${alg%%+*}")
  read -ra extra <<<"${ALGORITHM_SETS[$alg]:-}"
  a+=("${extra[@]}")
  fh_mpirun 1 run "$CK_DECK" "${a[@]}" --set run.rounds=6 --set output.name="$alg-ref" >"$TMP/$alg-ref.log" 2>&1 \
    || { cat "$TMP/$alg-ref.log"; fail "$alg: uninterrupted run"; }
  name="$alg-3-to-2"
  fh_mpirun 3 run "$CK_DECK" "${a[@]}" --set run.rounds=4 --set checkpoint.every=2 --set output.name="$name" \
    >"$TMP/$name.log" 2>&1 || { cat "$TMP/$name.log"; fail "$name: first part"; }
  fh_mpirun 2 run "$CK_DECK" "${a[@]}" --set run.rounds=6 --set checkpoint.every=2 --resume "$TMP/$name" \
    >>"$TMP/$name.log" 2>&1 || { cat "$TMP/$name.log"; fail "$name: resumed part"; }
  grep -q "resumed from $TMP/$name/checkpoint.h5 after round 4 of 6" "$TMP/$name.log" \
    || { cat "$TMP/$name.log"; fail "$name: no 'resumed' line"; }
  ck_compare "$alg-ref" "$name"
done

# Client state and server vectors across rank counts and backends.
st=(--set run.clients=20 --set model.hidden=8 --set checkpoint.buffer_mib=1)
for case in 3:2:memory:hdf5 1:3:hdf5:memory 2:1:memory:memory; do
  IFS=: read -r w r bw br <<<"$case"
  rm -rf "$TMP/state" && mkdir -p "$TMP/state"
  fh_run_prog "$w" mpi_checkpoint_state write "$TMP/state" "${st[@]}" --set state.backend="$bw"
  fh_run_prog "$r" mpi_checkpoint_state read "$TMP/state" "${st[@]}" --set state.backend="$br"
done
fh_run_prog 2 mpi_checkpoint_state mismatch "$TMP/state" "${st[@]}"

# Refusals: the deck changes a key the checkpoint depends on (one rank without
# mpirun: the check is rank 0's, and mpirun takes seconds over a failed job).
ref="$ALGORITHMS-1-to-2"
for change in run.seed=2:1 model.hidden=100:200,200 train.lr=0.1:0.03 run.clients=24:23 \
              data.synthetic_alpha=1:0.5 run.client_fraction=0.5:0.4; do
  set_kv=${change%:*} key=${set_kv%%=*} new=${set_kv#*=} old=${change##*:}
  rc=0
  timeout 60 "$FEDHPC" run "$CK_DECK" "${common[@]}" --set run.rounds=8 --set "$set_kv" --resume "$TMP/$ref" \
    >"$TMP/refuse.log" 2>&1 || rc=$?
  [[ $rc -eq 3 ]] || { cat "$TMP/refuse.log"; fail "changing $key: exit $rc, expected 3"; }
  grep -q "$key = $old in the checkpoint but $new in the deck" "$TMP/refuse.log" \
    || { cat "$TMP/refuse.log"; fail "changing $key: message does not name the key and both values"; }
  ok "resume refused when the deck changes $key ($old -> $new)"
done
rc=0
timeout 60 "$FEDHPC" run "$CK_DECK" "${common[@]}" --set run.rounds=3 --resume "$TMP/$ref" >"$TMP/refuse.log" 2>&1 || rc=$?
[[ $rc -eq 3 ]] && grep -q "run.rounds = 3 in the deck, but the checkpoint already holds 6 rounds" "$TMP/refuse.log" \
  || { cat "$TMP/refuse.log"; fail "run.rounds below the checkpoint: exit $rc"; }
ok "resume refused when run.rounds is below the checkpoint's round"
mkdir -p "$TMP/empty"
rc=0
timeout 60 "$FEDHPC" run "$CK_DECK" "${common[@]}" --resume "$TMP/empty" >"$TMP/refuse.log" 2>&1 || rc=$?
[[ $rc -eq 2 ]] && grep -q "no checkpoint $TMP/empty/checkpoint.h5" "$TMP/refuse.log" \
  || { cat "$TMP/refuse.log"; fail "no checkpoint: exit $rc"; }
ok "no checkpoint in the folder: exit 2 with a message"
echo "$NCHECKS passed, 0 failed"
