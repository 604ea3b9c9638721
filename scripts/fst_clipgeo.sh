#!/usr/bin/env bash
# FST-CBDG in CLIP's regime: the runs behind docs/fstcbdg.md's "CLIP's
# geometry" tables, from nothing to the tables.
#   1. scripts/make_clip_geometry_features.py: the feature file, and the same
#      file with the modality gap closed (--close-gap, an ablation)
#   2. per seed: zeroshot, selftrain, cbdg, supervised at the deck's lr 20;
#      the ablations: lr 5, label_scale 1 (unsharpened pseudo-labels),
#      mu 0.1, sigma 0.3, and the variants on the gap-closed file
#   3. analysis/fst_table.py: the tables
# OUT (default runs/fst_clipgeo) receives every run folder; NP ranks (default
# 1); SEEDS (default "1 2 3"). About 10 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/fst_clipgeo}
NP=${NP:-1}
SEEDS=${SEEDS:-1 2 3}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mkdir -p "$OUT/log"
/usr/bin/python3 scripts/make_clip_geometry_features.py "$OUT/clip_geometry.h5"
/usr/bin/python3 scripts/make_clip_geometry_features.py "$OUT/clip_geometry_closed.h5" --close-gap
run() { # name file [--set ...]
  local name=$1 file=$2; shift 2
  mpirun --oversubscribe -np "$NP" -x OPENBLAS_NUM_THREADS=1 build/fedhpc run input/fstcbdg_clipgeo.ini \
    --set data.path="$file" --set output.dir="$OUT" --set output.name="$name" "$@" >"$OUT/log/$name.log" 2>&1 \
    || { cat "$OUT/log/$name.log"; echo "fst_clipgeo.sh: $name failed" >&2; exit 1; }
  echo "done: $name"
}
for s in $SEEDS; do
  f="$OUT/clip_geometry.h5"
  for v in zeroshot selftrain cbdg supervised; do run "$v-s$s" "$f" --set run.seed="$s" --set fstcbdg.variant="$v"; done
  run "selftrain-lr5-s$s" "$f" --set run.seed="$s" --set fstcbdg.variant=selftrain --set train.lr=5
  run "cbdg-lr5-s$s" "$f" --set run.seed="$s" --set train.lr=5
  run "selftrain-ls1-s$s" "$f" --set run.seed="$s" --set fstcbdg.variant=selftrain --set fstcbdg.label_scale=1
  run "cbdg-ls1-s$s" "$f" --set run.seed="$s" --set fstcbdg.label_scale=1
  run "cbdg-mu0.1-s$s" "$f" --set run.seed="$s" --set fstcbdg.mu=0.1
  run "cbdg-sigma0.3-s$s" "$f" --set run.seed="$s" --set fstcbdg.sigma=0.3
  for v in zeroshot selftrain cbdg; do
    run "closed-$v-s$s" "$OUT/clip_geometry_closed.h5" --set run.seed="$s" --set fstcbdg.variant="$v"
  done
done
runs() { for s in $SEEDS; do echo "$OUT/$1-s$s"; done; }
# shellcheck disable=SC2046
/usr/bin/python3 analysis/fst_table.py --markdown \
  -m zero-shot $(runs zeroshot) -m self-training $(runs selftrain) -m FST-CBDG $(runs cbdg) \
  -m "supervised head" $(runs supervised) | tee "$OUT/fst_table.md"
# shellcheck disable=SC2046
/usr/bin/python3 analysis/fst_table.py --markdown \
  -m "self-training, lr 5" $(runs selftrain-lr5) -m "FST-CBDG, lr 5" $(runs cbdg-lr5) \
  -m "self-training, label_scale 1" $(runs selftrain-ls1) -m "FST-CBDG, label_scale 1" $(runs cbdg-ls1) \
  -m "FST-CBDG, mu 0.1" $(runs cbdg-mu0.1) -m "FST-CBDG, sigma 0.3" $(runs cbdg-sigma0.3) \
  -m "zero-shot, gap closed" $(runs closed-zeroshot) -m "self-training, gap closed" $(runs closed-selftrain) \
  -m "FST-CBDG, gap closed" $(runs closed-cbdg) | tee -a "$OUT/fst_table.md"
