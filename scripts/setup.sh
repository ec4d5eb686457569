#!/usr/bin/env bash
# Installs bwt's Debian packages (when run as root; otherwise names what to install) and builds
# bwt into build/ (Release). With --sanitize it also builds build-asan/ with ASan + UBSan. With --mpi it
# also installs Open MPI and builds build-mpi/bwt for MPI jobs. With --fuzz it also installs what the
# fuzzers need (tests/fuzz/run.sh builds build-fuzz/ itself).
set -euo pipefail
cd "$(dirname "$0")/.."

# Why each package: compiler and build (build-essential, cmake, pkg-config); BLAS/CBLAS for every
# matrix product, the build that shares OpenMP's threads (libopenblas-openmp-dev); LAPACKE for PCA (liblapacke-dev); JSON for configs, metrics
# and safetensors headers (libcjson-dev); CRC-32 checksums of checkpoints (zlib1g-dev); the unit-test framework (libcmocka-dev); figures as PNG
# and SVG (libplplot-dev with its cairo driver, plplot-driver-cairo); tokenizers' pre-tokenizer regexes (libpcre2-dev) and Unicode
# normalization (libutf8proc-dev).
packages=(build-essential cmake pkg-config libopenblas-openmp-dev liblapacke-dev libcjson-dev zlib1g-dev libcmocka-dev libplplot-dev plplot-driver-cairo libpcre2-dev libutf8proc-dev)
# --mpi: Open MPI's compiler wrappers and headers (libopenmpi-dev) and mpirun (openmpi-bin), for the
# MPI build in build-mpi/ (docs/cluster.md).
if [ "${1:-}" = "--mpi" ]; then packages+=(libopenmpi-dev openmpi-bin); fi
# --fuzz: clang with libFuzzer and its sanitizer runtimes (clang, libclang-rt-14-dev), and clang's
# OpenMP runtime, which gcc's libgomp does not stand in for (libomp-14-dev).
if [ "${1:-}" = "--fuzz" ]; then packages+=(clang libclang-rt-14-dev libomp-14-dev); fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: missing Debian packages: ${missing[*]}" >&2
    echo "setup: install them with: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

jobs=$(nproc)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$jobs" >/dev/null
if [ "${1:-}" = "--sanitize" ]; then
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBWT_SANITIZE=ON >/dev/null
  cmake --build build-asan -j"$jobs" >/dev/null
fi
if [ "${1:-}" = "--mpi" ]; then
  cmake -S . -B build-mpi -DCMAKE_BUILD_TYPE=Release -DBWT_MPI=ON >/dev/null
  cmake --build build-mpi -j"$jobs" --target bwt >/dev/null
  echo "setup: built build-mpi/bwt (MPI)" >&2
fi
echo "setup: built build/bwt" >&2
