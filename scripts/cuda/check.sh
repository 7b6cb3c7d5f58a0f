#!/usr/bin/env bash
# The GPU checks, run on a machine with an NVIDIA GPU from the repository root, with the package
# scripts/cuda/build.sh made (target-cuda/pkg) and a Python whose torch carries CUDA 13 libraries
# (no Rust toolchain, no network needed). Each step has its own time limit; logs go to $OUT (or
# /tmp/retort-gpu-check). Usage: scripts/cuda/check.sh [step ...]; steps:
#   unit     the host's CUDA unit tests (kernels against the CPU path, optimizer resume) and the
#            loss zoo's reference checks with the tensors on the GPU
#   startup  time to the first step: cold driver cache, warm cache, after `retort device warm`
#   match    CUDA against CPU: 60 steps without dropout, losses compared
#   resume   a CUDA run stopped at step 30 and resumed equals the uninterrupted one at step 60
#   default  the default run on CUDA (test errors, wall time), then `retort eval` of it on CUDA
#   live     a config edit applied live to a running CUDA run
#   bench    bench/run-device.sh cuda (PyTorch eager CUDA, candle, Retort)
# Default: every step but bench.
set -uo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
pkg=${RETORT_CUDA_PKG:-$repo/target-cuda/pkg}
out=${OUT:-/tmp/retort-gpu-check}
python=${PYTHON:-python3}
mkdir -p "$out"
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(unit startup match resume default live)

work=$(mktemp -d)
bin=$work/bin
mkdir -p "$bin"
for f in "$pkg"/bin/* "$pkg"/plugins/*; do
  case "$f" in
    *.xz) xz -dc "$f" >"$bin/$(basename "${f%.xz}")" ;;
    *) cp "$f" "$bin/" ;;
  esac
done
chmod +x "$bin"/*
cu13=$("$python" -c 'import nvidia, os; print(os.path.join(nvidia.__path__[0], "cu13", "lib"))' 2>/dev/null || true)
export LD_LIBRARY_PATH=${cu13}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export RETORT__RUN__OUTPUT_DIR=$work/runs RETORT__LOGGING__PROGRESS=false RETORT__LOGGING__TENSORBOARD=false
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"

# Runs a step under a time limit, logging to $out/<name>.log; prints its status and wall time.
step() {
  local name=$1 limit=$2
  shift 2
  local t0=$SECONDS
  timeout "$limit" "$@" >"$out/$name.log" 2>&1
  local rc=$?
  echo "-- $name: rc $rc, $((SECONDS - t0)) s"
  return $rc
}
# The seconds a run's log gives for its first step.
first_step() { sed -n 's/.*first step done \([0-9.]*\) s.*/\1/p' "$out/$1.log" | head -1; }
retort() { "$bin/retort" "$@"; }
cuda_train=(env RETORT__RUN__DEVICE=cuda RUST_LOG=retort=info "$bin/retort" train)

for s in "${steps[@]}"; do
  echo "== $s"
  case $s in
    unit)
      step unit 300 "$bin/retort-cuda-tests" cuda --test-threads=1
      grep -E "^test |test result" "$out/unit.log"
      # Every loss plugin's reference values and gradients with the tensors on the GPU.
      step loss-zoo 300 env RETORT_TEST_DEVICE=cuda RETORT_TEST_PLUGIN_DIR="$bin" "$bin/loss-zoo-tests" --test-threads=1
      grep -E "^test |test result" "$out/loss-zoo.log"
      ;;
    startup)
      # A fresh driver cache (CUDA_CACHE_PATH) is a fresh machine as far as kernel compiles go.
      export CUDA_CACHE_PATH=$work/cache-a
      step cold 240 "${cuda_train[@]}" --stop-after 5 --overwrite
      step warm 120 "${cuda_train[@]}" --stop-after 5 --overwrite
      export CUDA_CACHE_PATH=$work/cache-b
      step warm-command 240 "$bin/retort" device warm cuda
      cat "$out/warm-command.log"
      step after-warm 120 "${cuda_train[@]}" --stop-after 5 --overwrite
      unset CUDA_CACHE_PATH
      echo "first step: cold cache $(first_step cold) s, warm cache $(first_step warm) s, after device warm $(first_step after-warm) s"
      grep -h "opened in\|uploaded" "$out/warm.log"
      ;;
    match)
      export RETORT__MODELS__TEACHER__PARAMS__DROPOUT=0 RETORT__MODELS__TEACHER__PARAMS__INPUT_DROPOUT=0
      export RETORT__LOGGING__EVERY_STEPS=20
      step match-cpu 300 env RETORT__RUN__NAME=match-cpu RETORT__RUN__THREADS=8 "$bin/retort" train --stop-after 60 --overwrite
      step match-cuda 300 env RETORT__RUN__NAME=match-cuda RETORT__RUN__DEVICE=cuda "$bin/retort" train --stop-after 60 --overwrite
      unset RETORT__MODELS__TEACHER__PARAMS__DROPOUT RETORT__MODELS__TEACHER__PARAMS__INPUT_DROPOUT RETORT__LOGGING__EVERY_STEPS
      "$python" scripts/cuda/compare.py losses "$work/runs/match-cpu" "$work/runs/match-cuda" | tee "$out/match.txt"
      ;;
    resume)
      step resume-full 300 env RETORT__RUN__NAME=full "${cuda_train[@]}" --stop-after 60 --overwrite
      step resume-cut 300 env RETORT__RUN__NAME=cut "${cuda_train[@]}" --stop-after 30 --overwrite
      step resume-rest 300 env "${cuda_train[@]}" --resume "$work/runs/cut" --stop-after 60
      "$python" scripts/cuda/compare.py weights "$work/runs/full" "$work/runs/cut" | tee "$out/resume.txt"
      ;;
    default)
      step default 420 env RETORT__RUN__NAME=default "${cuda_train[@]}" --overwrite
      tail -n 12 "$out/default.log"
      step eval 120 env RETORT__RUN__DEVICE=cuda "$bin/retort" eval "$work/runs/default"
      tail -n 6 "$out/eval.log"
      ;;
    live)
      cfg=$work/live.toml
      retort config show >"$cfg"
      sed -i 's/^name = "mnist-hinton"/name = "live"/; s/^device = "cpu"/device = "cuda"/' "$cfg"
      RUST_LOG=retort=info timeout 300 "$bin/retort" train "$cfg" --watch --overwrite --stop-after 4000 >"$out/live.log" 2>&1 &
      pid=$!
      # Once the student stage runs, its KD temperature changes from 20 to 8.
      for _ in $(seq 240); do grep -q '"student"' "$work/runs/live/events.jsonl" 2>/dev/null && break; sleep 1; done
      sed -i 's/^temperature = 20.0/temperature = 8.0/' "$cfg"
      wait $pid
      echo "-- live: rc $?"
      grep -h '"swap"\|config_rejected\|swap_rejected' "$work/runs/live/events.jsonl" | tail -n 3
      ;;
    bench)
      KD_STEP=$bin/kd-step PYTHON=$python step bench 580 bench/run-device.sh cuda 300 3
      cat "$out/bench.log"
      ;;
    *) echo "unknown step $s" ;;
  esac
done
cp -r "$work/runs" "$out/runs" 2>/dev/null || true
rm -rf "$work"
