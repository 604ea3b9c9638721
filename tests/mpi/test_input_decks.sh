#!/usr/bin/env bash
# Every deck in input/ is valid: decks whose data is here (generated, or a file
# in the source tree) run two rounds (or encode, for the decks of `fedhpc
# encode`, and after a one-epoch `fedhpc pretrain` for decks with a pretrained
# model; Fashion-MNIST from Debian's dataset-fashion-mnist counts as here); decks
# that expect the user's files (MNIST, CIFAR, LEAF, feature
# files, ...) get past the deck check and stop at the missing data with exit
# code 4. Then every case of the registry's deck check (fh_cases, lib.sh):
# its algorithm is named by a deck here, or it runs two rounds from
# input/quickstart.ini with the case's settings, so that a registered algorithm
# without a deck of its own is still run from one.
source "$(dirname "$0")/lib.sh"
cd "$SRC_DIR"
decks=(input/*.ini)
[[ -z ${FH_TEST_ONLY:-} ]] || decks=() # the registry's cases only (test_registry_tests.sh)
for deck in "${decks[@]}"; do
  name=$(basename "$deck" .ini)
  # Here: every file the deck names (path = , model = ) exists, and without a
  # data file the samples are generated.
  here=1
  for f in $(sed -n 's/^\(path\|model\) *= *\([^ ;]*\).*/\2/p' "$deck"); do [[ -e $f ]] || here=0; done
  grep -qE '^path *=' "$deck" || grep -qE '^source = (synthetic|synthimg)' "$deck" ||
    { grep -qE '^source = fmnist' "$deck" && [[ -d /usr/share/datasets/fashion-mnist ]]; } || here=0
  rc=0
  if [[ $here == 1 ]] && grep -q "build/fedhpc pretrain" "$deck"; then # its pretrained model first (one epoch)
    fh_mpirun 2 pretrain "$deck" --set pretrain.epochs=1 --set output.dir="$TMP" >"$TMP/$name.pm.log" 2>&1 ||
      { cat "$TMP/$name.pm.log"; fail "$deck: pretrain"; }
  fi
  if grep -q "build/fedhpc encode" "$deck"; then
    fh_mpirun 2 encode "$deck" --set output.dir="$TMP" >"$TMP/$name.log" 2>&1 || rc=$?
  else
    fh_mpirun 2 run "$deck" --set run.rounds=2 --set run.eval_every=1 --set output.dir="$TMP" \
      >"$TMP/$name.log" 2>&1 || rc=$?
  fi
  if [[ $here == 1 ]]; then
    [[ $rc -eq 0 ]] || { cat "$TMP/$name.log"; fail "$deck: exit $rc"; }
    ok "$deck runs"
  else
    [[ $rc -eq 4 ]] || { cat "$TMP/$name.log"; fail "$deck: exit $rc, expected 4 (data not here)"; }
    ok "$deck: valid deck, data not here ($(grep -m1 '^fedhpc: error:' "$TMP/$name.log" | cut -c1-90))"
  fi
done
while IFS='|' read -r name alg settings _; do
  deck=$(grep -lE "^algorithm *= *$alg *(;.*)?$" input/*.ini | head -1 || true)
  if [[ -n $deck && -z ${FH_TEST_ONLY:-} ]]; then
    ok "$name: run.algorithm = $alg has a deck ($deck)"
    continue
  fi
  read -ra extra <<<"$settings"
  fh_mpirun 2 run input/quickstart.ini --set run.algorithm="$alg" "${extra[@]}" --set run.rounds=2 \
    --set run.eval_every=1 --set output.dir="$TMP" --set output.name="case-$name" >"$TMP/case-$name.log" 2>&1 ||
    { cat "$TMP/case-$name.log"; fail "$name: run.algorithm = $alg from input/quickstart.ini"; }
  ok "$name: run.algorithm = $alg runs from input/quickstart.ini"
done < <(fh_cases deck)
echo "$NCHECKS checks passed"
