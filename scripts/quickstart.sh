#!/usr/bin/env bash
# Quick start: installs what is missing (Debian 12 packages), builds, and runs
# the default experiment input/quickstart.ini on 2 MPI ranks -> runs/quickstart/.
# Extra arguments are passed to `fedhpc run` (e.g. --set run.rounds=20).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh release
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
exec mpirun --oversubscribe -np "${NP:-2}" -x OPENBLAS_NUM_THREADS build/fedhpc run input/quickstart.ini "$@"
