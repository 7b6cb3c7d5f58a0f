#!/usr/bin/env bash
# The MNIST training jobs at one thread, side by side: PyTorch, a monolithic candle loop and Retort
# (plugins on the host), for the MLP and CNN models and the teacher / scratch / distill jobs. Each
# run is its own process; the table gives the median steps/s of 3 runs, the peak RSS of the median
# run, and the ratios. PyTorch goes into bench/.venv (from PyPI), never a dependency.
# Usage: bench/run.sh [mlp steps] [cnn steps] [runs]
set -euo pipefail
cd "$(dirname "$0")/.."
mlp_steps="${1:-60}"
cnn_steps="${2:-30}"
runs="${3:-3}"
export RAYON_NUM_THREADS=1 CANDLE_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
cargo build --release --quiet --workspace
if [ ! -x bench/.venv/bin/python ] || ! bench/.venv/bin/python -c "import torch" 2>/dev/null; then
  python3 -m venv bench/.venv
  bench/.venv/bin/pip install --quiet torch==2.15.0 numpy
fi
torch_version=$(bench/.venv/bin/python -c 'import torch; print(torch.__version__)')

# One line per run: "steps/s rss_mib".
one() { "$@" 2>/dev/null | awk '{printf "%s %.0f\n", $2, $4 / 1024}'; }
# The middle value of $runs lines.
median() { sort -g | sed -n "$(((runs + 1) / 2))p"; }

echo "one thread, batch 128, Adam; median of $runs runs ($mlp_steps MLP / $cnn_steps CNN steps each); pytorch $torch_version"
printf '%-5s %-8s | %8s %8s %8s | %7s %7s %7s | %8s %8s\n' model job torch candle retort "torch" "candle" "retort" retort/ candle/
printf '%-5s %-8s | %8s %8s %8s | %7s %7s %7s | %8s %8s\n' "" "" "steps/s" "steps/s" "steps/s" "MiB" "MiB" "MiB" torch torch
for model in mlp cnn; do
  steps=$mlp_steps
  [ "$model" = cnn ] && steps=$cnn_steps
  for job in teacher scratch distill; do
    # The three implementations take turns within each repetition, so that drift in the machine's
    # speed (shared vCPUs) lands on all of them alike.
    T=(); C=(); R=()
    for _ in $(seq "$runs"); do
      T+=("$(one bench/.venv/bin/python bench/torch_kd_step.py "$steps" "$model" "$job")")
      C+=("$(one ./target/release/kd-step "$steps" "$model" "$job" candle)")
      R+=("$(one ./target/release/kd-step "$steps" "$model" "$job" retort)")
    done
    read -r t tm < <(printf '%s\n' "${T[@]}" | median)
    read -r c cm < <(printf '%s\n' "${C[@]}" | median)
    read -r r rm < <(printf '%s\n' "${R[@]}" | median)
    awk -v m="$model" -v j="$job" -v t="$t" -v c="$c" -v r="$r" -v tm="$tm" -v cm="$cm" -v rm="$rm" \
      'BEGIN { printf "%-5s %-8s | %8.2f %8.2f %8.2f | %7d %7d %7d | %8.2f %8.2f\n", m, j, t, c, r, tm, cm, rm, r / t, c / t }'
  done
done
