#!/usr/bin/env bash
# The bench table of bench/run.sh on a GPU (or any device): the six MNIST jobs (MLP and CNN ×
# teacher / scratch / distill, batch 128, Adam) plus the compute-bound probe (MLP widths ×4, batch
# 1024) in PyTorch eager, plain candle and Retort, interleaved within each repetition; median
# steps/s of `runs` runs and the peak device memory of the median run (PyTorch:
# max_memory_allocated; candle and Retort: the default memory pool's used high-water mark).
# Builds nothing: KD_STEP names the kd-step binary (a CUDA build: scripts/cuda/build.sh),
# PYTHON a Python with torch. Usage: bench/run-device.sh [device] [steps] [runs]
set -euo pipefail
cd "$(dirname "$0")/.."
device="${1:-cuda}"
steps="${2:-300}"
runs="${3:-3}"
kd_step="${KD_STEP:-./target/release/kd-step}"
python="${PYTHON:-python3}"
export RAYON_NUM_THREADS=1 CANDLE_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
torch_version=$("$python" -c 'import torch; print(torch.__version__)')

# One line per run: "steps/s device_mib".
one() { "$@" 2>/dev/null | awk '{printf "%s %s\n", $2, $6}'; }
median() { sort -g | sed -n "$(((runs + 1) / 2))p"; }

echo "$device, Adam, eager; median of $runs runs, $steps steps each; pytorch $torch_version"
printf '%-5s %-8s %-9s | %8s %8s %8s | %7s %7s %7s | %8s %8s\n' model job shape torch candle retort torch candle retort retort/ candle/
printf '%-5s %-8s %-9s | %8s %8s %8s | %7s %7s %7s | %8s %8s\n' "" "" "" "steps/s" "steps/s" "steps/s" "MiB" "MiB" "MiB" torch torch
row() {
  local model=$1 job=$2 width=$3 batch=$4
  T=(); C=(); R=()
  for _ in $(seq "$runs"); do
    T+=("$(one "$python" bench/torch_kd_step.py "$steps" "$model" "$job" "$device" "$width" "$batch")")
    C+=("$(one "$kd_step" "$steps" "$model" "$job" candle "$device" "$width" "$batch")")
    R+=("$(one "$kd_step" "$steps" "$model" "$job" retort "$device" "$width" "$batch")")
  done
  read -r t tm < <(printf '%s\n' "${T[@]}" | median)
  read -r c cm < <(printf '%s\n' "${C[@]}" | median)
  read -r r rm < <(printf '%s\n' "${R[@]}" | median)
  awk -v m="$model" -v j="$job" -v s="w${width}b${batch}" -v t="$t" -v c="$c" -v r="$r" -v tm="$tm" -v cm="$cm" -v rm="$rm" \
    'BEGIN { printf "%-5s %-8s %-9s | %8.1f %8.1f %8.1f | %7d %7d %7d | %8.2f %8.2f\n", m, j, s, t, c, r, tm, cm, rm, r / t, c / t }'
}
for model in mlp cnn; do
  for job in teacher scratch distill; do row "$model" "$job" 1 128; done
done
for job in teacher scratch distill; do row mlp "$job" 4 1024; done
