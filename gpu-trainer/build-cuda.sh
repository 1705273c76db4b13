#!/usr/bin/env bash
# Builds statapp-gpu-trainer with burn's CUDA backend on a machine without internet.
#
# cubecl-cuda depends on cubecl-llvm, whose build script downloads a prebuilt LLVM; offline that
# fails, so this build patches in the small stand-in under offline/cubecl-llvm (NVRTC compiles the
# kernels; LLVM is never used). The patch is given on the command line only, and Cargo.lock is
# restored afterwards, so normal builds and the Dockerfile (which has internet) use crates.io.
# No CUDA toolkit is needed to build: CUDARC_CUDA_VERSION pins the driver API (CUDA 13.0).
#
# Usage: gpu-trainer/build-cuda.sh            -> target/release/statapp-gpu-trainer
set -euo pipefail
cd "$(dirname "$0")/.."
export CUDARC_CUDA_VERSION="${CUDARC_CUDA_VERSION:-13000}"
cp Cargo.lock target/.Cargo.lock.before-cuda 2>/dev/null || { mkdir -p target && cp Cargo.lock target/.Cargo.lock.before-cuda; }
trap 'cp target/.Cargo.lock.before-cuda Cargo.lock' EXIT
cargo build --release -p statapp-gpu-trainer --features cuda \
  --config 'patch.crates-io.cubecl-llvm.path="gpu-trainer/offline/cubecl-llvm"'
ls -la target/release/statapp-gpu-trainer
