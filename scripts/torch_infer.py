#!/usr/bin/env python3
"""A small PyTorch transformer (torch.nn, random weights) doing batched inference, with an
NVTX range around every module's forward: the unmodified program `wattlens run` is tested on.

    python3 scripts/torch_infer.py [--seconds S | --steps N] [--torch-profiler] [--crash | --kill-self]
                                   [--step-times FILE] [--gpu-times] [--checksum]

It prints one JSON line: steps done, the inference loop's wall time, and the median time of
one step (robust to the occasional host stall that moves the loop's total). With --torch-profiler
the loop runs under torch.profiler (CPU and CUDA activities), the comparison for wattlens'
overhead. --crash ends in a segmentation fault and --kill-self in SIGKILL, after the work:
the trace must survive both.
"""
import argparse
import ctypes
import hashlib
import json
import os
import signal
import time

import torch
import torch.nn as nn


def nvtx_per_module(model):
    """Push an NVTX range named after each module around its forward, as emit_nvtx would."""
    for name, module in model.named_modules():
        parts = name.split(".") if name else []
        label = parts[-1] if parts else "model"
        if len(parts) >= 2 and parts[-2] == "layers":
            label = f"layer{label}"
        elif label.isdigit():
            label = type(module).__name__.lower()  # mlp.0 -> linear, mlp.1 -> gelu

        def pre(_m, _inp, label=label):
            torch.cuda.nvtx.range_push(label)

        def post(_m, _inp, _out):
            torch.cuda.nvtx.range_pop()

        module.register_forward_pre_hook(pre)
        module.register_forward_hook(post)


class Block(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.norm1 = nn.LayerNorm(d)
        self.attention = nn.MultiheadAttention(d, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x):
        h = self.norm1(x)
        x = x + self.attention(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class Model(nn.Module):
    def __init__(self, vocab=32000, d=1024, heads=16, layers=6):
        super().__init__()
        self.embedding = nn.Embedding(vocab, d)
        self.layers = nn.Sequential(*[Block(d, heads) for _ in range(layers)])
        self.norm = nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, vocab, bias=False)

    def forward(self, tokens):
        return self.lm_head(self.norm(self.layers(self.embedding(tokens))))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--steps", type=int, default=0, help="a fixed number of steps instead")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=512)
    p.add_argument("--torch-profiler", action="store_true")
    p.add_argument("--crash", action="store_true")
    p.add_argument("--kill-self", action="store_true")
    p.add_argument("--step-times", help="write each step's end (s since the loop began), its length, "
                   "the host time it took to issue the forward (s) and, with --gpu-times, the "
                   "forward's GPU time (ms) to this file")
    p.add_argument("--gpu-times", action="store_true",
                   help="also time each step's forward on the GPU (CUDA events) and print the median")
    p.add_argument("--checksum", action="store_true",
                   help="hash every step's last-position logits (SHA-256), to compare runs bit for bit")
    a = p.parse_args()
    digest = hashlib.sha256()

    torch.manual_seed(0)
    dev = torch.device("cuda")
    model = Model().to(dev, dtype=torch.bfloat16).eval()
    nvtx_per_module(model)
    tokens = torch.randint(0, 32000, (a.batch, a.seq), device=dev)

    step_s = []
    issue_s = []
    start_unix = []
    loop_t0 = []
    step_events = []

    def loop():
        steps = 0
        start_unix.append(time.time())
        t0 = time.perf_counter()
        loop_t0.append(t0)
        last = t0
        with torch.no_grad():
            while (steps < a.steps) if a.steps else (last - t0 < a.seconds):
                torch.cuda.nvtx.range_push("request")
                if a.gpu_times:
                    step_events.append((torch.cuda.Event(enable_timing=True),
                                   torch.cuda.Event(enable_timing=True)))
                    step_events[-1][0].record()
                logits = model(tokens)
                issued = time.perf_counter()
                if a.gpu_times:
                    step_events[-1][1].record()
                if a.checksum:
                    digest.update(logits[:, -1].contiguous().view(torch.int16).cpu().numpy().tobytes())
                next_token = logits[:, -1].argmax(-1).cpu()  # one host read per step
                torch.cuda.nvtx.range_pop()
                steps += 1
                now = time.perf_counter()
                step_s.append(now - last)
                issue_s.append(issued - last)
                last = now
        torch.cuda.synchronize()
        return steps, time.perf_counter() - t0, int(next_token[0])

    with torch.no_grad():
        model(tokens)  # warm-up: cuBLAS handles, kernel selection
    torch.cuda.synchronize()
    if a.torch_profiler:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            steps, loop_s, tok = loop()
        events = len(prof.events())
    else:
        steps, loop_s, tok = loop()
        events = 0
    if a.step_times:
        with open(a.step_times, "w") as f:
            # time.perf_counter() is CLOCK_MONOTONIC on Linux: the clock sched_probe.py reads.
            f.write(f"# loop start, time.perf_counter() s: {loop_t0[0]:.6f}\n")
            end = 0.0
            gpu = [f"\t{b.elapsed_time(e):.4f}" for b, e in step_events] or [""] * len(step_s)
            for s, i, g in zip(step_s, issue_s, gpu):
                end += s
                f.write(f"{end:.6f}\t{s:.6f}\t{i:.6f}{g}\n")
    gpu_ms = sorted(b.elapsed_time(e) for b, e in step_events)
    step_s.sort()
    median = step_s[len(step_s) // 2] if step_s else 0.0
    p99 = step_s[len(step_s) * 99 // 100] if step_s else 0.0
    # The most common step time (0.02 ms bins): the fast state, which the host's slow
    # stretches (whole seconds at up to twice the step time, seen in bare runs too) leave be.
    bins = {}
    for s in step_s:
        bins[round(s / 20e-6)] = bins.get(round(s / 20e-6), 0) + 1
    peak = max(bins, key=lambda b: (bins[b], -b)) * 20e-6 if bins else 0.0
    # Time lost in steps that took over twice the median: stalls, not a steady slowdown.
    stall_s = sum(s - median for s in step_s if s > 2 * median)
    print(json.dumps({"steps": steps, "loop_s": loop_s, "step_ms_median": 1e3 * median,
                      "step_ms_p99": 1e3 * p99,
                      "step_ms_peak": 1e3 * peak, "stall_s": stall_s, "token": tok,
                      "loop_start_unix": start_unix[0] if start_unix else 0.0,
                      "gpu_ms_median": gpu_ms[len(gpu_ms) // 2] if gpu_ms else 0.0,
                      "profiler_events": events,
                      "checksum": digest.hexdigest() if a.checksum else None}), flush=True)
    if a.crash:
        ctypes.string_at(0)  # SIGSEGV
    if a.kill_self:
        os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    main()
