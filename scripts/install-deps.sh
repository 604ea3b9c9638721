#!/usr/bin/env bash
# Installs every Debian 12 package fedhpc needs to build, test and analyse.
# Idempotent: packages already installed are skipped without touching the network.
#   scripts/install-deps.sh            build + test + analysis packages
#   scripts/install-deps.sh --fixtures also python3-torch (only to regenerate
#                                      the PyTorch reference fixtures in tests/fixtures)
set -euo pipefail

PACKAGES=(
  # toolchain and build
  build-essential cmake pkg-config git
  # MPI, linear algebra, I/O, counters
  openmpi-bin libopenmpi-dev
  libscalapack-openmpi-dev libopenblas-dev
  # oneDNN for the convolutions (cmake -DFEDHPC_ONEDNN=OFF builds without it)
  libdnnl-dev
  libhdf5-openmpi-dev hdf5-tools zlib1g-dev
  libpapi-dev papi-tools
  # config parsing, LEAF JSON datasets, unit tests
  libinih-dev libjansson-dev libcmocka-dev
  # analysis scripts (use /usr/bin/python3)
  python3 python3-h5py python3-matplotlib python3-numpy
  # the real data set every fresh machine has: Fashion-MNIST in
  # /usr/share/datasets/fashion-mnist (data.source = fmnist)
  dataset-fashion-mnist
  # job scripts tested on a private single-node Slurm (tests/slurm): the daemons
  # are not started by the packages here, the test starts its own as root
  slurm-wlm munge
)
if [[ "${1:-}" == "--fixtures" ]]; then
  PACKAGES+=(python3-torch)
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "install-deps: missing packages (${missing[*]}); run this script as root" >&2; exit 1; }
  SUDO="sudo"
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
