#!/usr/bin/env bash
# MNIST MLP and CNN KD steps at one thread: Retort vs a monolithic candle loop (MLP) vs PyTorch; prints steps/s
# and ratios (median of 3 runs each). PyTorch goes into bench/.venv (from PyPI), never a dependency.
# Usage: bench/run.sh [steps]
set -euo pipefail
cd "$(dirname "$0")/.."
steps="${1:-100}"
export RAYON_NUM_THREADS=1 CANDLE_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
cargo build --release --quiet --workspace
if [ ! -x bench/.venv/bin/python ] || ! bench/.venv/bin/python -c "import torch" 2>/dev/null; then
  python3 -m venv bench/.venv
  bench/.venv/bin/pip install --quiet torch==2.15.0 numpy
fi
median() { sort -g | sed -n 2p; }
r=(); c=(); t=()
for _ in 1 2 3; do
  out=$(./target/release/kd-step "$steps")
  r+=("$(echo "$out" | awk '/^retort/ {print $2}')")
  c+=("$(echo "$out" | awk '/^candle/ {print $2}')")
  t+=("$(bench/.venv/bin/python bench/torch_kd_step.py "$steps" | awk '{print $2}')")
done
R=$(printf '%s\n' "${r[@]}" | median); C=$(printf '%s\n' "${c[@]}" | median); T=$(printf '%s\n' "${t[@]}" | median)
echo "MNIST MLP KD step, batch 128, one thread, median of 3 × $steps steps"
printf '%-24s %8s steps/s\n' "retort (plugins)" "$R" "plain candle loop" "$C" "pytorch $(bench/.venv/bin/python -c 'import torch; print(torch.__version__)')" "$T"
awk -v r="$R" -v c="$C" -v t="$T" 'BEGIN { printf "retort/pytorch %.2f  candle/pytorch %.2f  retort/candle %.2f\n", r/t, c/t, r/c }'

# The CNN job (LeNet-style teacher conv 32-64 + fc 256, student conv 16-32 + fc 128): Retort vs PyTorch.
rc=(); tc=()
for _ in 1 2 3; do
  rc+=("$(./target/release/kd-step "$steps" cnn 2>/dev/null | awk '/^retort/ {print $2}')")
  tc+=("$(bench/.venv/bin/python bench/torch_kd_step.py "$steps" cnn | awk '{print $2}')")
done
RC=$(printf '%s\n' "${rc[@]}" | median); TC=$(printf '%s\n' "${tc[@]}" | median)
echo "MNIST CNN KD step, batch 128, one thread, median of 3 × $steps steps"
printf '%-24s %8s steps/s\n' "retort (plugins)" "$RC" "pytorch" "$TC"
awk -v r="$RC" -v t="$TC" 'BEGIN { printf "retort/pytorch %.2f\n", r/t }'
