#!/usr/bin/env bash
# Two runs on one run folder: the second refuses at start (exit 5, one line
# naming the owner's host and pid) and leaves the first run's files alone, on
# 1 and 3 ranks, before it creates anything (SCAFFOLD with the hdf5 client
# state, whose per-rank files a second run would truncate); a lock left by a killed run is taken over with a warning; a
# lock from another host is refused with the advice to remove it.
source "$(dirname "$0")/lib.sh"
DECK="$SRC_DIR/input/quickstart.ini"
common=(--set output.dir="$TMP" --set output.name=shared --set train.epochs=1 --set run.algorithm=scaffold
  --set state.backend=hdf5)
RUN=$TMP/shared

# the first run: long enough to be running while the others start
timeout 300 "$MPIEXEC" --allow-run-as-root --oversubscribe -np 1 -x OPENBLAS_NUM_THREADS=1 "$FEDHPC" run "$DECK" \
  "${common[@]}" --set run.rounds=100000 >"$TMP/first.log" 2>&1 &
first=$!
for _ in $(seq 600); do
  [[ -s $RUN/fedhpc.lock ]] && grep -q "^round 1/" "$TMP/first.log" && break
  sleep 0.1
done
[[ -s $RUN/fedhpc.lock ]] || { cat "$TMP/first.log"; fail "the first run took no lock"; }
read -r host pid <"$RUN/fedhpc.lock"
size_before=$(stat -c %s "$RUN/state.rank0.h5") || fail "the first run has no client-state file"
[[ $host == $(hostname) ]] || fail "the lock names host '$host', not $(hostname)"
for np in 1 3; do
  fh_expect "second-$np" 5 "in use by the run of process $pid on host $host" $np run "$DECK" "${common[@]}" \
    --set run.rounds=2
  [[ -f $RUN/config.ini && -f $RUN/metrics.h5.partial && -f $RUN/fedhpc.lock ]] \
    || fail "second-$np: the first run's files were touched"
  grep -q "rounds = 100000" "$RUN/config.ini" || fail "second-$np: the first run's config.ini was replaced"
  size_now=$(stat -c %s "$RUN/state.rank0.h5")
  ((size_now >= size_before)) || fail "second-$np: the first run's client-state file was truncated ($size_before -> $size_now bytes)"
done
kill -0 "$first" || fail "the first run stopped while the second was refused"

# the first run is killed (SIGKILL: no clean-up): its lock stays; a new run
# takes it over with a warning and completes
kill -KILL "$pid"
wait "$first" || true
[[ -f $RUN/fedhpc.lock ]] || fail "the killed run's lock is gone"
fh_mpirun 3 run "$DECK" "${common[@]}" --set run.rounds=2 >"$TMP/takeover.log" 2>&1 \
  || { cat "$TMP/takeover.log"; fail "the run after the killed one"; }
grep -q "taking over the lock of process $pid on $host, which is no longer running" "$TMP/takeover.log" \
  || { cat "$TMP/takeover.log"; fail "no warning about the stale lock"; }
[[ -f $RUN/metrics.h5 && ! -e $RUN/fedhpc.lock ]] || fail "takeover: no metrics.h5, or the lock was not released"
FAULT_CASES=$((FAULT_CASES + 1))
ok "stale lock of killed process $pid taken over with a warning; the run completes and releases it"

# a lock from another host: its process cannot be checked from here
echo "node-elsewhere 4242" >"$RUN/fedhpc.lock"
fh_expect "other-host" 5 "process 4242 on host node-elsewhere.*remove the lock" 1 run "$DECK" "${common[@]}" \
  --set run.rounds=2
[[ -f $RUN/metrics.h5 ]] || fail "other-host: the earlier run's metrics.h5 was removed"
echo "$NCHECKS passed, 0 failed ($FAULT_CASES fault cases)"
