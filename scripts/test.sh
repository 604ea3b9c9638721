#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds, runs ctest (unit tests
# in cmocka, MPI tests through mpirun, analysis tests).
#   scripts/test.sh                  release build in build/
#   scripts/test.sh debug-sanitize   Debug + AddressSanitizer + UBSan in build-asan/
set -euo pipefail
cd "$(dirname "$0")/.."
preset=${1:-release}
scripts/install-deps.sh
scripts/build.sh "$preset"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
exec ctest --preset "$preset" -j 2
