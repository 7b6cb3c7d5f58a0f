#!/usr/bin/env bash
# Tokens/s of a byte-level GPT training step (forward, token cross-entropy, backward) at one
# thread: Retort's `gpt` plugin on the host against the same model in PyTorch (bench/lm_step.py,
# nanoGPT-style), side by side, median of 3 runs each (taking turns). PyTorch goes into
# bench/.venv (from PyPI), never a dependency.
# Usage: bench/lm.sh [layers width heads context batch] (default: the LM table's teacher, 4 128 4 64 32)
set -euo pipefail
cd "$(dirname "$0")/.."
shape=("${@:-4 128 4 64 32}")
read -r -a shape <<< "${shape[*]}"
export RAYON_NUM_THREADS=1 CANDLE_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
cargo build --release --quiet --workspace
if [ ! -x bench/.venv/bin/python ] || ! bench/.venv/bin/python -c "import torch" 2>/dev/null; then
  python3 -m venv bench/.venv
  bench/.venv/bin/pip install --quiet torch==2.15.0 numpy
fi
tokens() { "$@" | sed -E 's/.* ([0-9]+) tokens\/s.*/\1/'; }
T=(); R=()
for _ in 1 2 3; do
  T+=("$(tokens bench/.venv/bin/python bench/lm_step.py "${shape[@]}")")
  R+=("$(tokens ./target/release/lm-step "${shape[@]}")")
done
median() { printf '%s\n' "$@" | sort -g | sed -n 2p; }
t=$(median "${T[@]}"); r=$(median "${R[@]}")
echo "gpt ${shape[*]} (layers width heads context batch), one thread, forward + backward"
printf '%-8s %12s\n' impl tokens/s
printf '%-8s %12s\n' pytorch "$t" retort "$r"
awk -v r="$r" -v t="$t" 'BEGIN { printf "retort/pytorch %.2f\n", r / t }'
