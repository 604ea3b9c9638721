#!/usr/bin/env bash
# FedAvg against FedAvg+LIPS (docs/lips.md): every method on one LIPS deck for
# several seeds, each run in OUT/<method>_s<seed>/ with its log next to it
# (OUT/<method>_s<seed>.log); analysis/lips_table.py OUT then makes the table
# and analysis/plot_inertia.py the inertia heatmaps.
#
#   scripts/lips_sweep.sh DECK OUT [--np N] [--seeds "1 2 3"] [--methods "fedavg lips"]
#                         [--set section.key=value ...]
#
# Methods (on top of the deck's run.algorithm and lips.* settings):
#   fedavg          lips.enable = false: plain FedAvg, one global model
#   fedavg_localbn  lips.enable = true, lips.d0 = 1: never sparse, but every
#                   client keeps its own biases and BatchNorm (isolates what
#                   LIPS's local layers bring from what its sparsity brings)
#   lips            the deck's LIPS (lips.enable = true)
#   lips_w, lips_g, lips_random   LIPS with lips.score = w, g, random
# Default: fedavg fedavg_localbn lips. Every run records RUN/inertia.h5.
# Runs already complete (metrics.h5 present) are skipped, so an interrupted
# sweep resumes.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $# -ge 2 ]] || { sed -n '2,20p' "$0"; exit 2; }
deck=$1 out=$2
shift 2
np=2 seeds="1 2 3" methods="fedavg fedavg_localbn lips"
sets=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --np) np=$2; shift 2 ;;
    --seeds) seeds=$2; shift 2 ;;
    --methods) methods=$2; shift 2 ;;
    --set) sets+=(--set "$2"); shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
export OMPI_ALLOW_RUN_AS_ROOT=${OMPI_ALLOW_RUN_AS_ROOT:-1} OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-1}
mkdir -p "$out"
for method in $methods; do
  case $method in
    fedavg) m=(--set lips.enable=false) ;;
    fedavg_localbn) m=(--set lips.enable=true --set lips.d0=1) ;;
    lips) m=(--set lips.enable=true) ;;
    lips_w | lips_g | lips_random) m=(--set lips.enable=true --set lips.score="${method#lips_}") ;;
    *) echo "unknown method $method (fedavg fedavg_localbn lips lips_w lips_g lips_random)" >&2; exit 2 ;;
  esac
  for seed in $seeds; do
    name="${method}_s$seed"
    if [[ -f $out/$name/metrics.h5 ]]; then echo "skip $name (complete)"; continue; fi
    echo "run  $name"
    "${MPIEXEC:-mpirun}" --oversubscribe -np "$np" -x OPENBLAS_NUM_THREADS=1 "${FEDHPC:-build/fedhpc}" run "$deck" \
      --set run.seed="$seed" --set lips.record_inertia=true "${m[@]}" "${sets[@]}" --set output.dir="$out" \
      --set output.name="$name" >"$out/$name.log" 2>&1 \
      || { echo "FAILED: $name (log: $out/$name.log)" >&2; tail -3 "$out/$name.log" >&2; }
  done
done
