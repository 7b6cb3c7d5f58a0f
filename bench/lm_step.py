"""Tokens per second of a byte-level GPT training step in PyTorch at one thread: the same model as
Retort's `gpt` plugin (token + position embeddings, pre-LN blocks with causal self-attention and a
GELU (tanh) MLP, final layer norm, head tied to the token embedding; nanoGPT's layout), the same
batch, forward + token cross-entropy + backward (no optimizer step), median of 7 after one warm-up.
The Rust side is `target/release/lm-step`; `bench/lm.sh` runs both.
Usage: python bench/lm_step.py [layers width heads context batch]
"""
import math
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_num_threads(1)
torch.manual_seed(0)


class Block(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.fc = nn.Linear(d, 4 * d)
        self.out = nn.Linear(4 * d, d)

    def forward(self, x, mask):
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(d // self.heads) + mask
        y = att.softmax(-1) @ v
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, d))
        return x + self.out(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


class Gpt(nn.Module):
    def __init__(self, layers, d, heads, context, vocab=256):
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.wpe = nn.Embedding(context, d)
        self.blocks = nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)
        mask = torch.full((context, context), float("-inf")).triu(1)
        self.register_buffer("mask", mask)

    def forward(self, ids):
        t = ids.shape[1]
        x = self.wte(ids) + self.wpe(torch.arange(t))
        for blk in self.blocks:
            x = blk(x, self.mask[:t, :t])
        return self.ln_f(x) @ self.wte.weight.t()


def main():
    args = [int(a) for a in sys.argv[1:]] or [4, 128, 4, 128, 32]
    layers, width, heads, context, batch = args
    model = Gpt(layers, width, heads, context)
    n = batch * context
    ids = torch.tensor([(i * 7919) % 251 for i in range(n)]).view(batch, context)
    y = (ids + 1) % 256

    def step():
        model.zero_grad(set_to_none=True)
        z = model(ids)
        F.cross_entropy(z.view(-1, 256), y.view(-1)).backward()

    step()
    times = []
    for _ in range(7):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    ms = statistics.median(times) * 1e3
    print(
        f"pytorch {torch.__version__} gpt layers={layers} width={width} heads={heads} context={context} "
        f"batch={batch}: {ms:.1f} ms per forward+backward, {n / (ms / 1e3):.0f} tokens/s "
        "(median of 7, one thread; no optimizer step)"
    )


if __name__ == "__main__":
    main()
