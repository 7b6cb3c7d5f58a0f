#!/usr/bin/env bash
# Checks host/kernels/retort.cu without a GPU: compiles it as C++20 under the SIMT emulator in
# simt.h (a thread per CUDA thread, barriers for warp shuffles) and runs every kernel against a
# double-precision reference (check.cpp). Needs only g++ ≥ 11.
set -euo pipefail
cd "$(dirname "$0")"
out=$(mktemp -d)
g++ -std=c++20 -O1 -pthread -Wall -Wno-unknown-pragmas -o "$out/check" check.cpp
"$out/check"
rm -rf "$out"
