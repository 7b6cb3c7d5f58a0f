"""The MNIST training jobs of bench/src/bin/kd-step.rs in PyTorch, for comparison with Retort.

Usage: torch_kd_step.py [steps] [mlp|cnn] [teacher|scratch|distill] [cpu|cuda] [width x] [batch].
Teacher 784-1200-1200-10 and student 784-800-800-10 (widths times `width x`; or the LeNet-style
CNNs), batch 128, Adam 1e-3, tau = 20 for distill (teacher forward every step), one CPU thread,
eager mode. Prints `torch <steps/s> steps/s <peak RSS KiB> KiB <peak device MiB> MiB` (the device
figure is torch.cuda.max_memory_allocated, 0 on the CPU).
"""
import gzip
import os
import resource
import struct
import sys
import time

import torch
import torch.nn.functional as F

torch.set_num_threads(1)
torch.manual_seed(0)
TAU = 20.0
here = os.path.dirname(os.path.abspath(__file__))


def arg(i, default):
    return sys.argv[i] if len(sys.argv) > i else default


def load_images(n):
    with gzip.open(os.path.join(here, "..", "data", "mnist", "train-images-idx3-ubyte.gz")) as f:
        _, count, rows, cols = struct.unpack(">IIII", f.read(16))
        raw = f.read(n * rows * cols)
    x = torch.frombuffer(bytearray(raw), dtype=torch.uint8).float().view(n, rows * cols) / 255.0
    return (x - 0.1307) / 0.3081


def load_labels(n):
    with gzip.open(os.path.join(here, "..", "data", "mnist", "train-labels-idx1-ubyte.gz")) as f:
        f.read(8)
        raw = f.read(n)
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8).long()


def mlp(dims):
    layers = []
    for i in range(len(dims) - 1):
        layers.append(torch.nn.Linear(dims[i], dims[i + 1]))
        if i + 2 < len(dims):
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


def cnn(c1, c2, hidden):
    """LeNet-style: conv 5x5 same + ReLU + max-pool 2, twice, then fc + ReLU + fc (as Retort's cnn)."""
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, c1, 5, padding=2), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(c1, c2, 5, padding=2), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(c2 * 49, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 10))


def main():
    steps = int(arg(1, 100))
    use_cnn = arg(2, "mlp") == "cnn"
    job = arg(3, "distill")
    device = torch.device(arg(4, "cpu"))
    k, bs = int(arg(5, 1)), int(arg(6, 128))
    x_all, y_all = load_images(bs * 20), load_labels(bs * 20)
    if use_cnn:
        x_all = x_all.view(-1, 1, 28, 28)
    x_all, y_all = x_all.to(device), y_all.to(device)
    batches = [(x_all[i * bs:(i + 1) * bs], y_all[i * bs:(i + 1) * bs]) for i in range(20)]
    if use_cnn:
        teacher, student = cnn(32, 64, 256), cnn(16, 32, 128)
    else:
        teacher, student = mlp([784, 1200 * k, 1200 * k, 10]), mlp([784, 800 * k, 800 * k, 10])
    teacher, student = teacher.to(device), student.to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    trained = teacher if job == "teacher" else student
    if job == "distill":
        teacher.eval()
    opt = torch.optim.Adam(trained.parameters(), lr=1e-3)
    phases = [0.0] * 5

    def step(i, acc):
        x, y = batches[i % len(batches)]
        t0 = time.perf_counter()
        if job == "distill":
            with torch.no_grad():
                zt = teacher(x)
            t1 = time.perf_counter()
            zs = student(x)
            t2 = time.perf_counter()
            loss = F.kl_div(F.log_softmax(zs / TAU, -1), F.log_softmax(zt / TAU, -1), log_target=True,
                            reduction="batchmean") * TAU * TAU
        else:
            t1 = t0 if job == "scratch" else None
            z = trained(x)
            t2 = time.perf_counter()
            t1 = t1 if t1 is not None else t2
            loss = F.cross_entropy(z, y)
        t3 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        t4 = time.perf_counter()
        opt.step()
        t5 = time.perf_counter()
        for k, (a, b) in enumerate([(t0, t1), (t1, t2), (t2, t3), (t3, t4), (t4, t5)]):
            acc[k] += (b - a) * 1e3

    for i in range(3):
        step(i, [0.0] * 5)
    sync()
    t = time.perf_counter()
    for i in range(steps):
        step(i, phases)
    sync()
    sps = steps / (time.perf_counter() - t)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    mib = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else 0
    print(f"torch {sps:.2f} steps/s {rss} KiB {mib:.0f} MiB")
    names = ["teacher forward", "student forward", "loss", "backward", "optimizer"]
    print("phases (ms/step): " + ", ".join(f"{n} {p / steps:.2f}" for n, p in zip(names, phases)), file=sys.stderr)


if __name__ == "__main__":
    main()
