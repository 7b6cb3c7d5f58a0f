#!/usr/bin/env bash
# Builds the CUDA trainer on any Linux x86_64 machine, with or without a GPU or a CUDA install,
# and packs what a GPU machine needs to run it into target-cuda/pkg (git-ignored, xz-compressed;
# scripts/cuda/check.sh unpacks and runs it there):
#   bin/retort            the trainer with `--features cuda`
#   bin/retort-cuda-tests the host's unit tests with `--features cuda` (the GPU kernel checks)
#   bin/loss-zoo-tests    the loss zoo's reference and gradient checks, run on the GPU there
#   bin/kd-step           the bench step binary with `--features cuda`
#   plugins/              the ordinary CPU build of the plugins (plugins never link candle)
#
# Where each piece comes from (all pinned; CUDA 13.0 because newer toolkits emit PTX that a 580
# driver cannot load):
#   nvcc, its C runtime headers, cccl, nvvm, cudart, nvrtc   PyPI wheels nvidia-cuda-* 13.0.x
#   cublas / cublasLt, curand (link time only)                PyPI wheels nvidia-cublas, nvidia-curand
#   libcuda.so                                                a stub generated here from cudarc's own
#                                                             bindings, for the linker only; the GPU
#                                                             machine's driver provides the real one
# Environment: CUDA_COMPUTE_CAP (default 90: H100/H200; 80: A100), RETORT_CUDA_DIR (default
# target-cuda). At run time the binary needs libcudart, libcublas(Lt), libcurand and libnvrtc of
# CUDA 13 on LD_LIBRARY_PATH (PyTorch's cu13 wheels carry them) and the NVIDIA driver.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
out=${RETORT_CUDA_DIR:-$repo/target-cuda}
cap=${CUDA_COMPUTE_CAP:-90}
tc=$out/toolchain
wheels=(
  nvidia-cuda-nvcc==13.0.88
  nvidia-cuda-crt==13.0.88
  nvidia-cuda-runtime==13.0.96
  nvidia-cuda-cccl==13.0.85
  nvidia-nvvm==13.0.88
  nvidia-cuda-nvrtc==13.0.88
  nvidia-cublas==13.0.2.14
  nvidia-curand==10.4.0.35
)

mkdir -p "$tc"
if [ ! -f "$tc/wheels.lock" ] || [ "$(cat "$tc/wheels.lock")" != "${wheels[*]}" ]; then
  echo "== toolchain: CUDA 13.0 wheels from PyPI into $tc/venv"
  rm -rf "$tc/venv" "$tc/cuda"
  python3 -m venv "$tc/venv"
  "$tc/venv/bin/pip" install --quiet --no-deps "${wheels[@]}"
  echo "${wheels[*]}" >"$tc/wheels.lock"
fi
cu13=$("$tc/venv/bin/python" -c 'import nvidia, os; print(os.path.join(nvidia.__path__[0], "cu13"))')

# A CUDA root of links, laid out as cudarc's and cudaforge's build scripts expect.
cuda=$tc/cuda
mkdir -p "$cuda/lib64/stubs"
for d in bin include nvvm; do ln -sfn "$cu13/$d" "$cuda/$d"; done
for so in "$cu13"/lib/lib*.so.*; do
  base=$(basename "$so")
  ln -sfn "$so" "$cuda/lib64/$base"
  ln -sfn "$so" "$cuda/lib64/${base%%.so.*}.so"
done

# The link-time libcuda stub: every driver entry point cudarc declares, each returning
# CUDA_ERROR_UNKNOWN (999). Never shipped.
cudarc=$(find "${CARGO_HOME:-$HOME/.cargo}/registry/src" -maxdepth 2 -type d -name 'cudarc-0.19.*' | sort | tail -1)
if [ -z "$cudarc" ]; then
  cargo fetch --quiet
  cudarc=$(find "${CARGO_HOME:-$HOME/.cargo}/registry/src" -maxdepth 2 -type d -name 'cudarc-0.19.*' | sort | tail -1)
fi
grep -oE '^pub unsafe fn cu[A-Za-z0-9_]+' "$cudarc/src/driver/sys/mod.rs" | awk '{print $4}' | sort -u |
  awk '{printf "int %s(void) { return 999; }\n", $1}' >"$cuda/lib64/stubs/libcuda.c"
gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$cuda/lib64/stubs/libcuda.so" "$cuda/lib64/stubs/libcuda.c"

export CUDA_ROOT=$cuda CUDA_PATH=$cuda CUDA_HOME=$cuda CUDA_COMPUTE_CAP=$cap
export PATH=$cuda/bin:$PATH
export LIBRARY_PATH=$cuda/lib64:$cuda/lib64/stubs${LIBRARY_PATH:+:$LIBRARY_PATH}
nvcc --version | tail -2

echo "== CUDA build (compute capability $cap) into $out/cargo"
export CARGO_TARGET_DIR=$out/cargo
cargo build --release -p retort --features cuda
cargo build --release -p retort-bench --features cuda
tests=$(cargo test --release -p retort --features cuda --lib --no-run --message-format=json |
  sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)
zoo=$(cargo test --release -p retort-e2e --features cuda --test loss_zoo --no-run --message-format=json |
  sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)
[ -x "$tests" ] && [ -x "$zoo" ] || { echo "no test binaries from cargo test --no-run"; exit 1; }

echo "== plugins: the ordinary build"
unset CARGO_TARGET_DIR
cargo build --release --workspace --exclude retort-bench

# xz-compressed (the binaries are mostly candle's PTX text): what a GPU check carries stays small.
pkg=$out/pkg
rm -rf "$pkg"
mkdir -p "$pkg/bin" "$pkg/plugins"
cp "$out/cargo/release/retort" "$out/cargo/release/kd-step" "$pkg/bin/"
cp "$tests" "$pkg/bin/retort-cuda-tests"
cp "$zoo" "$pkg/bin/loss-zoo-tests"
strip "$pkg/bin/"*
for crate in plugins/*/*/; do
  lib=$(sed -n 's/^name = "\(.*\)"/\1/p' "$crate/Cargo.toml" | head -1 | tr - _)
  cp "target/release/lib$lib.so" "$pkg/plugins/"
done
xz -T0 -6 "$pkg"/bin/* "$pkg"/plugins/*
echo "== packed into $pkg ($(du -sh "$pkg" | cut -f1)); on the GPU machine: scripts/cuda/check.sh"
