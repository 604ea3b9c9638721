#!/usr/bin/env bash
# The rank-invariance, resume and deck tests take their cases from the
# registry, not from lists of their own: fedhpc_tiny, the test build's fedhpc
# with one more algorithm (tests/alg/tiny.c, registered there only, with no
# test table and named in no test script), lists a default case for it, and
# each of those three scripts, run on that binary for that case alone, checks
# it. The fedhpc binary knows no such algorithm.
source "$(dirname "$0")/lib.sh"
: "${FEDHPC_TINY:?set FEDHPC_TINY to the fedhpc_tiny binary}"
here=$(dirname "$0")
"$FEDHPC" help algorithms --tests | grep -q '^tiny|' && fail "fedhpc lists the test-only algorithm"
"$FEDHPC" help algorithms --tests | grep -q '^fedavg|' || fail "fedhpc lists no fedavg case"
"$FEDHPC_TINY" help algorithms --tests | grep -qx 'tiny|tiny|ranks,resume,deck||' \
  || fail "fedhpc_tiny does not list tiny's default case"
ok "the test-only algorithm is registered in fedhpc_tiny only, with the default case"
for script in test_bitwise_ranks_algorithms test_checkpoint test_input_decks; do
  FEDHPC=$FEDHPC_TINY FH_TEST_ONLY='^tiny$' bash "$here/$script.sh" >"$TMP/$script.log" 2>&1 \
    || { cat "$TMP/$script.log"; fail "$script on tiny"; }
  grep -q '^ok: .*tiny' "$TMP/$script.log" || { cat "$TMP/$script.log"; fail "$script did not check tiny"; }
  ok "$script checks tiny: $(grep -c '^ok: .*tiny' "$TMP/$script.log") check(s)"
done
echo "$NCHECKS passed, 0 failed"
