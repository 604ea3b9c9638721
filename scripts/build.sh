#!/usr/bin/env bash
# Configures and builds fedhpc with a CMake preset (default: release -> build/).
# Incremental: fast when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
preset=${1:-release}
dir=build
[[ $preset == debug-sanitize ]] && dir=build-asan
if [[ ! -f $dir/CMakeCache.txt ]]; then
  cmake --preset "$preset" >/dev/null
fi
cmake --build --preset "$preset" -- --no-print-directory >"$dir/build.log" 2>&1 || {
  cat "$dir/build.log" >&2
  echo "build failed (log: $dir/build.log)" >&2
  exit 1
}
grep -E "warning:" "$dir/build.log" || true
