#!/usr/bin/env bash
# FedGC's design space and headline comparison on one deck, for several seeds:
# every run in OUT/<name>_s<seed>/ with its log next to it; then
# analysis/fedgc_table.py OUT makes the tables (docs/fedgc.md).
#
#   scripts/fedgc_sweep.sh DECK OUT [--np N] [--jobs J] [--seeds "1 2 3"]
#                          [--part design|headline|budgets|holdout|all] [--budgets "equal inverse waterfill"]
#                          [--set section.key=value ...]
#
# design    FedAvg + FedGC, one axis varied at a time, the others at their
#           defaults (budget inverse, design diverse, guidance mixed):
#           budget equal|inverse|waterfill, design single|multi|diverse,
#           guidance prompt|real|mixed (7 distinct settings)
# headline  FedAvg, FedProx (fedprox.mu = 0.01) and SCAFFOLD (train.momentum
#           = 0) without generated data (<alg>-plain) and with FedGC's
#           defaults (<alg>-gc-inverse-diverse-mixed)
# budgets   the three algorithms without generated data and with FedGC at
#           each budget equal|inverse|waterfill (design and guidance at
#           their defaults); not part of all
# holdout   the three algorithms without generated data and with the
#           server's real hold-out rows in place of generated ones
#           (fedgc.source = holdout, fedgc.pool_draw = cycle: the same budgets
#           and class mix, every hold-out row dealt once before any twice) at
#           each budget: the generator's baseline; not part of all
# --budgets the budgets of budgets and holdout (default all three)
# --jobs J  runs at a time (default 1), each on --np ranks
# Run names: <alg>-plain_s<seed>, <alg>-gc-<budget>-<design>-<guidance>_s<seed>,
# <alg>-holdout-<budget>_s<seed>.
# The deck should set fedgc.membership = true for the attack's AUCs. Runs
# already complete (metrics.h5 present) are skipped, so a sweep resumes.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $# -ge 2 ]] || { sed -n '2,28p' "$0"; exit 2; }
deck=$1 out=$2
shift 2
np=2 seeds="1 2 3" part=all jobs=1 budgets="equal inverse waterfill"
sets=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --np) np=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --seeds) seeds=$2; shift 2 ;;
    --part) part=$2; shift 2 ;;
    --budgets) budgets=$2; shift 2 ;;
    --set) sets+=(--set "$2"); shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
export OMPI_ALLOW_RUN_AS_ROOT=${OMPI_ALLOW_RUN_AS_ROOT:-1} OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-1}
mkdir -p "$out"

# one ALG GC [BUDGET DESIGN GUIDANCE]: every seed of one setting (GC: on,
# off, or holdout with BUDGET alone)
one() {
  local alg=$1 gc=$2 name extra=()
  case $alg in
    fedprox) extra=(--set fedprox.mu=0.01) ;;
    scaffold) extra=(--set train.momentum=0) ;;
  esac
  if [[ $gc == holdout ]]; then
    name="$alg-holdout-$3"
    extra+=(--set fedgc.enabled=true --set fedgc.source=holdout --set fedgc.pool_draw=cycle --set fedgc.budget="$3")
  elif [[ $gc == on ]]; then
    name="$alg-gc-$3-$4-$5"
    extra+=(--set fedgc.enabled=true --set fedgc.budget="$3" --set fedgc.design="$4" --set fedgc.guidance="$5")
  else
    name="$alg-plain"
    extra+=(--set fedgc.enabled=false)
  fi
  for seed in $seeds; do
    local run="${name}_s$seed"
    while (($(jobs -rp | wc -l) >= jobs)); do wait -n || true; done
    if [[ -f $out/$run/metrics.h5 ]]; then echo "skip $run (complete)"; continue; fi
    echo "run  $run"
    {
      "${MPIEXEC:-mpirun}" --oversubscribe -np "$np" -x OPENBLAS_NUM_THREADS=1 "${FEDHPC:-build/fedhpc}" run "$deck" \
        --set run.algorithm="$alg" --set run.seed="$seed" "${extra[@]}" "${sets[@]}" --set output.dir="$out" \
        --set output.name="$run" >"$out/$run.log" 2>&1 \
        || { echo "FAILED: $run (log: $out/$run.log)" >&2; tail -3 "$out/$run.log" >&2; }
    } &
  done
}

if [[ $part == design || $part == all ]]; then
  for b in equal inverse waterfill; do one fedavg on "$b" diverse mixed; done
  for d in single multi; do one fedavg on inverse "$d" mixed; done
  for g in prompt real; do one fedavg on inverse diverse "$g"; done
fi
if [[ $part == headline || $part == all ]]; then
  for alg in fedavg fedprox scaffold; do
    one "$alg" off
    one "$alg" on inverse diverse mixed
  done
fi
if [[ $part == budgets ]]; then
  for alg in fedavg fedprox scaffold; do
    one "$alg" off
    for b in $budgets; do one "$alg" on "$b" diverse mixed; done
  done
fi
if [[ $part == holdout ]]; then
  for alg in fedavg fedprox scaffold; do
    one "$alg" off
    for b in $budgets; do one "$alg" holdout "$b"; done
  done
fi
wait
