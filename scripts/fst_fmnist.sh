#!/usr/bin/env bash
# FST-CBDG's Fashion-MNIST chain from a fresh machine to the table
# (docs/fstcbdg.md):
#   1. fedhpc pretrain: LeNet-5 on the labelled split, 10% of each class of
#      the train pool held out by data.server_fraction (input/fst_pretrain_fmnist.ini)
#   2. fedhpc encode: the same held-out rows give the class embeddings (the
#      stand-in for CLIP's text embeddings) and leave the pool; the other
#      54,000 train rows and the test rows are encoded (input/fst_encode_fmnist.ini)
#   3. per seed: zero-shot, self-training, FST-CBDG, supervised head on 10
#      clients, Dirichlet(0.1), 50 rounds (input/fstcbdg_fmnist.ini), and the
#      ablations self-training / FST-CBDG at lr 5, FST-CBDG with
#      label_scale 1 (unsharpened pseudo-labels), and the supervised head at
#      lr 1 (at the deck's lr 20 it oscillates under the skew)
#   4. analysis/fst_table.py: the tables, with seconds per round
# Needs only Fashion-MNIST (data.source = fmnist; Debian's package or
# scripts/fetch_datasets.sh). OUT (default runs/fst_fmnist) receives every
# run folder; NP ranks (default 1); SEEDS (default "1 2 3"). About 3 minutes
# on one free core.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/fst_fmnist}
NP=${NP:-1}
SEEDS=${SEEDS:-1 2 3}
export OMPI_ALLOW_RUN_AS_ROOT=${OMPI_ALLOW_RUN_AS_ROOT:-1} OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-1}
mkdir -p "$OUT/log"
fh() { # fh NAME fedhpc-arguments...: one step, its log in OUT/log
  local name=$1
  shift
  mpirun --oversubscribe -np "$NP" -x OPENBLAS_NUM_THREADS=1 build/fedhpc "$@" >"$OUT/log/$name.log" 2>&1 \
    || { cat "$OUT/log/$name.log"; echo "fst_fmnist.sh: $name failed" >&2; exit 1; }
  echo "done: $name"
}
pm="$OUT/fst_pretrain_fmnist.pm.h5"
feat="$OUT/fst_encode_fmnist/features.h5"
[[ -f $pm ]] || fh pretrain pretrain input/fst_pretrain_fmnist.ini --set output.dir="$OUT"
[[ -f $feat ]] || fh encode encode input/fst_encode_fmnist.ini --set output.dir="$OUT" --set encode.model="$pm"
run() { # run NAME settings...
  local name=$1
  shift
  [[ -f $OUT/$name/metrics.h5 ]] && { echo "skip: $name"; return; }
  fh "$name" run input/fstcbdg_fmnist.ini --set data.path="$feat" --set output.dir="$OUT" --set output.name="$name" "$@"
}
for s in $SEEDS; do
  for v in zeroshot selftrain cbdg supervised; do run "$v-s$s" --set run.seed="$s" --set fstcbdg.variant="$v"; done
  run "selftrain-lr5-s$s" --set run.seed="$s" --set fstcbdg.variant=selftrain --set train.lr=5
  run "cbdg-lr5-s$s" --set run.seed="$s" --set train.lr=5
  run "cbdg-ls1-s$s" --set run.seed="$s" --set fstcbdg.label_scale=1
  run "supervised-lr1-s$s" --set run.seed="$s" --set fstcbdg.variant=supervised --set train.lr=1
done
runs() { for s in $SEEDS; do echo "$OUT/$1-s$s"; done; }
# shellcheck disable=SC2046
/usr/bin/python3 analysis/fst_table.py --markdown \
  -m zero-shot $(runs zeroshot) -m self-training $(runs selftrain) -m FST-CBDG $(runs cbdg) \
  -m "supervised head" $(runs supervised) | tee "$OUT/fst_table.md"
# shellcheck disable=SC2046
/usr/bin/python3 analysis/fst_table.py --markdown \
  -m "self-training, lr 5" $(runs selftrain-lr5) -m "FST-CBDG, lr 5" $(runs cbdg-lr5) \
  -m "FST-CBDG, label_scale 1" $(runs cbdg-ls1) -m "supervised head, lr 1" $(runs supervised-lr1) \
  | tee -a "$OUT/fst_table.md"
