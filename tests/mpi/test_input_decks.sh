#!/usr/bin/env bash
# Every deck in input/ is valid: decks whose data is here (generated, or a file
# in the source tree) run two rounds (or encode, for the decks of `fedhpc
# encode`, and after a one-epoch `fedhpc pretrain` for decks with a pretrained
# model; Fashion-MNIST from Debian's dataset-fashion-mnist counts as here); decks
# that expect the user's files (MNIST, CIFAR, LEAF, feature
# files, ...) get past the deck check and stop at the missing data with exit
# code 4.
source "$(dirname "$0")/lib.sh"
cd "$SRC_DIR"
for deck in input/*.ini; do
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
echo "$NCHECKS checks passed"
