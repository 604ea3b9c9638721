#!/usr/bin/env bash
# The FMNIST baselines of docs/results-fmnist.md: FedAvg, FedProx, SCAFFOLD,
# Per-FedAvg and Local on Fashion-MNIST (Debian's dataset-fashion-mnist) with
# LeNet-5, 100 clients, 10 per round, Dirichlet 0.1 and 0.5, 3 seeds. Each run
# in OUT/<alg>_a<alpha>_s<seed>/ with its log next to it; runs already complete
# (metrics.h5 present) are skipped, so an interrupted sweep resumes. Then
# analysis/fmnist_table.py OUT writes the table and the curves.
#
#   scripts/fmnist_sweep.sh OUT [--rounds R] [--jobs J] [--np N] [--seeds "1 2 3"]
#                           [--algs "fedavg fedprox scaffold perfedavg local"] [--set k=v ...]
#
# J runs at once (default 2), each on N ranks (default 1).
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $# -ge 1 ]] || { sed -n '2,13p' "$0"; exit 2; }
out=$1
shift
rounds=20 jobs=2 np=1 seeds="1 2 3" algs="fedavg fedprox scaffold perfedavg local"
sets=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --np) np=$2; shift 2 ;;
    --seeds) seeds=$2; shift 2 ;;
    --algs) algs=$2; shift 2 ;;
    --set) sets+=(--set "$2"); shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
export OMPI_ALLOW_RUN_AS_ROOT=${OMPI_ALLOW_RUN_AS_ROOT:-1} OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-1}
mkdir -p "$out"
run_one() { # alg alpha seed
  local name="$1_a$2_s$3"
  if [[ -f $out/$name/metrics.h5 ]]; then echo "skip $name (complete)"; return; fi
  echo "run  $name"
  "${MPIEXEC:-mpirun}" --oversubscribe -np "$np" -x OPENBLAS_NUM_THREADS=1 "${FEDHPC:-build/fedhpc}" \
    run input/fmnist_fedavg.ini --set run.algorithm="$1" --set partition.alpha="$2" \
    --set run.seed="$3" --set run.rounds="$rounds" --set run.eval_every="$rounds" \
    --set fedprox.mu=0.1 --set perfedavg.variant=hf --set perfedavg.alpha=0.01 \
    --set perfedavg.beta=0.05 "${sets[@]}" --set output.dir="$out" --set output.name="$name" \
    >"$out/$name.log" 2>&1 || { echo "FAILED: $name (log: $out/$name.log)" >&2; tail -3 "$out/$name.log" >&2; }
}
for alpha in 0.5 0.1; do
  for alg in $algs; do
    for seed in $seeds; do
      while (($(jobs -rp | wc -l) >= jobs)); do wait -n || true; done
      run_one "$alg" "$alpha" "$seed" &
    done
  done
done
wait
