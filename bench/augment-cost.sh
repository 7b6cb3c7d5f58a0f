#!/usr/bin/env bash
# The cost of the augmenters: one `retort train` at one thread whose stages distil the same student
# from the same teacher (MLP 1200-1200 → 400-400, τ = 20, batch 128) without an augmenter, with
# each mixer, and with HARD-Affine (its adversarial objective backpropagated through the frozen
# teacher and the student), plain first and last (to see the machine drift). Prints each stage's
# median steps/s over its logged windows and its overhead against the mean of the two plain stages.
# Usage: bench/augment-cost.sh [steps per stage]
set -euo pipefail
cd "$(dirname "$0")/.."
steps="${1:-300}"
export RAYON_NUM_THREADS=1 CANDLE_NUM_THREADS=1
cargo build --release --quiet --workspace
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
subset=$((steps * 128))
stage() { # name augmenter
  local aug=""
  [ -n "$2" ] && aug="augmenters = [\"$2\"]"
  printf '[[stages]]\nname = "%s"\ntrain = "student"\nteacher = "teacher"\n%s\nepochs = 1\nsubset = %d\n' "$1" "$aug" "$subset"
  printf 'losses = [{ plugin = "hinton-kd", params = { temperature = 20.0 } }, { plugin = "cross-entropy", weight = 0.1, params = { target = "%s" } }]\n\n' \
    "$([ -n "$2" ] && echo soft || echo hard)"
}
{
  printf '[run]\nname = "cost"\nseed = 1\nthreads = 1\noutput_dir = "%s"\n\n[data]\ndataset = "mnist"\nbatch_size = 128\n\n' "$out"
  printf '[models.teacher]\nplugin = "mlp"\nparams = { hidden = [1200, 1200] }\n\n[models.student]\nplugin = "mlp"\nparams = { hidden = [400, 400] }\n\n'
  for m in mixup cutmix pmu fmu; do printf '[augmenters.a_%s]\nplugin = "%s"\n\n' "$m" "$m"; done
  printf '[logging]\nevery_steps = 20\nprogress = false\n\n[eval]\nevery_epochs = 100\n\n'
  printf '[[stages]]\nname = "teacher"\ntrain = "teacher"\nepochs = 1\nsubset = 2560\nlosses = [{ plugin = "cross-entropy" }]\n\n'
  stage plain ""
  for m in mixup cutmix pmu fmu; do stage "$m" "a_$m"; done
  printf '[augmenters.a_hard]\nplugin = "hard-affine"\nparams = { translate_only = true }\n\n'
  printf '[[stages]]\nname = "hard"\ntrain = "student"\nteacher = "teacher"\nfrozen = ["teacher"]\naugmenters = ["a_hard"]\n'
  printf 'optimize = ["a_hard"]\nepochs = 1\nsubset = %d\n' "$subset"
  printf 'losses = [{ plugin = "hinton-kd", params = { temperature = 20.0 } }, { plugin = "cross-entropy", weight = 0.1 },\n'
  printf '  { plugin = "hard-adversarial", on = "a_hard", inputs = { student = "peer.student", source = "a_hard.source", augmented = "a_hard.augmented" } }]\n\n'
  stage plain_again ""
} > "$out/cost.toml"
./target/release/retort train "$out/cost.toml" > /dev/null
python3 - "$out/cost/metrics.jsonl" <<'PY'
import json, statistics, sys
rates = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get("type") == "train" and r["stage"] != "teacher" and r["stage_step"] > 20:
        rates.setdefault(r["stage"], []).append(r["steps_per_s"])
med = {k: statistics.median(v) for k, v in rates.items()}
base = (med["plain"] + med["plain_again"]) / 2
print(f"{'stage':<12} {'steps/s':>8} {'overhead':>9}")
for k, v in med.items():
    print(f"{k:<12} {v:8.1f} {100 * (base / v - 1):8.1f} %")
PY
