#!/usr/bin/env bash
# pFedAFM against the model-heterogeneous baselines: every algorithm on one
# deck for several seeds, each run in OUT/<alg><tag>_s<seed>/ with its log
# next to it (OUT/<alg><tag>_s<seed>.log); analysis/pfedafm_table.py OUT then
# makes the tables.
#
#   scripts/pfedafm_sweep.sh DECK OUT [--np N] [--seeds "1 2 3"] [--algs "pfedafm standalone"]
#                            [--tag NAME] [--set section.key=value ...]
#
# --tag is appended to the algorithm's name in the run folders (variants of
# one deck: --tag -alr0.1 --set pfedafm.alpha_lr=0.1). The default algorithms
# are pfedafm standalone lg_fedavg fml fedkd fedproto fedgh fd. Runs already
# complete (metrics.h5 present) are skipped, so an interrupted sweep resumes.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $# -ge 2 ]] || { sed -n '2,14p' "$0"; exit 2; }
deck=$1 out=$2
shift 2
np=2 seeds="1 2 3" tag="" algs="pfedafm standalone lg_fedavg fml fedkd fedproto fedgh fd"
sets=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --np) np=$2; shift 2 ;;
    --seeds) seeds=$2; shift 2 ;;
    --algs) algs=$2; shift 2 ;;
    --tag) tag=$2; shift 2 ;;
    --set) sets+=(--set "$2"); shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
export OMPI_ALLOW_RUN_AS_ROOT=${OMPI_ALLOW_RUN_AS_ROOT:-1} OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-1}
mkdir -p "$out"
for alg in $algs; do
  for seed in $seeds; do
    name="$alg${tag}_s$seed"
    if [[ -f $out/$name/metrics.h5 ]]; then echo "skip $name (complete)"; continue; fi
    echo "run  $name"
    "${MPIEXEC:-mpirun}" --oversubscribe -np "$np" -x OPENBLAS_NUM_THREADS=1 "${FEDHPC:-build/fedhpc}" run "$deck" --set run.algorithm="$alg" \
      --set run.seed="$seed" "${sets[@]}" --set output.dir="$out" --set output.name="$name" >"$out/$name.log" 2>&1 \
      || { echo "FAILED: $name (log: $out/$name.log)" >&2; tail -3 "$out/$name.log" >&2; }
  done
done
