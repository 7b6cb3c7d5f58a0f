"""Compares two Retort runs for scripts/cuda/check.sh (standard library only).

compare.py losses RUN_A RUN_B   train losses at the steps both logged, with relative differences
compare.py weights RUN_A RUN_B  the tensors of each run's latest checkpoint: identical, or max |diff|
"""
import array
import glob
import json
import os
import struct
import sys


def losses(run):
    out = {}
    with open(os.path.join(run, "metrics.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            if r.get("type") == "train":
                out[r["step"]] = r["loss"]
    return out


def safetensors(path):
    """name -> list of floats (F32 tensors only)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, meta in header.items():
        if name == "__metadata__" or meta["dtype"] != "F32":
            continue
        a, b = meta["data_offsets"]
        v = array.array("f")
        v.frombytes(data[a:b])
        out[name] = v
    return out


def latest_weights(run):
    files = glob.glob(os.path.join(run, "**", "weights-*.safetensors"), recursive=True)
    if not files:
        sys.exit(f"{run}: no checkpoint weights")
    return max(files, key=lambda p: int(os.path.basename(p)[8:14]))


def main():
    what, a, b = sys.argv[1:4]
    if what == "losses":
        la, lb = losses(a), losses(b)
        worst = 0.0
        for step in sorted(set(la) & set(lb)):
            rel = abs(la[step] - lb[step]) / max(abs(la[step]), 1e-12)
            worst = max(worst, rel)
            print(f"step {step}: {la[step]:.6f} vs {lb[step]:.6f} (relative difference {rel:.2e})")
        print(f"largest relative difference {worst:.2e}: {'PASS' if worst < 1e-2 else 'FAIL'} (tolerance 1e-2)")
    elif what == "weights":
        wa, wb = safetensors(latest_weights(a)), safetensors(latest_weights(b))
        if set(wa) != set(wb):
            print(f"FAIL: different tensors: {sorted(set(wa) ^ set(wb))}")
            return
        worst = max(max((abs(x - y) for x, y in zip(wa[k], wb[k])), default=0.0) for k in wa)
        same = all(wa[k] == wb[k] for k in wa)
        print(f"{len(wa)} tensors (weights and moments): {'bit-identical' if same else f'max |diff| {worst:.3e}'}")
        print("PASS" if same or worst < 1e-5 else "FAIL")
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
