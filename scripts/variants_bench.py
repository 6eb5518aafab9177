"""A user's own precision variants of one model, for `wattlens compare` on the GPU machine.

An MLP stack (4 layers of 4096x4096, GELU) on 256 tokens, in fp16, bf16, or weight-only int8
(per-output-channel scales, dequantised to fp16 before each matmul: the dequantise kernels are
the extra work). A fixed number of steps (8 forward passes each, inside an NVTX range `step`),
so that a run's energy is its work's: a time-boxed loop would make every variant cost the same
per run. Prints `max error E` against an fp32 reference on the same input.

    python3 variants_bench.py --dtype fp16|bf16|int8 [--steps 300]
    python3 variants_bench.py --ranges [--steps 300]   # all three, each step in its NVTX range
"""

import argparse

import torch

LAYERS, D, TOKENS = 4, 4096, 256


def build(seed=0):
    g = torch.Generator(device="cpu").manual_seed(seed)
    ws = [torch.randn(D, D, generator=g) / D**0.5 for _ in range(LAYERS)]
    x = torch.randn(TOKENS, D, generator=g)
    return [w.cuda() for w in ws], x.cuda()


def quantise(w):
    scale = w.abs().amax(dim=1, keepdim=True) / 127.0
    return torch.round(w / scale).clamp(-127, 127).to(torch.int8), scale.half()


def forward(kind, params, x):
    h = x
    for p in params:
        if kind == "int8":
            q, scale = p
            w = q.half() * scale
        else:
            w = p
        h = torch.nn.functional.gelu(h @ w.t())
    return h


def prepare(kind, ws, x):
    if kind == "fp16":
        return [w.half() for w in ws], x.half()
    if kind == "bf16":
        return [w.bfloat16() for w in ws], x.bfloat16()
    return [quantise(w) for w in ws], x.half()


def max_error(out, ref):
    return ((out.float() - ref).abs().max() / ref.abs().max()).item()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dtype", choices=["fp16", "bf16", "int8"])
    ap.add_argument("--ranges", action="store_true")
    ap.add_argument("--steps", type=int, default=300)
    a = ap.parse_args()
    ws, x = build()
    ref = forward("fp32", ws, x)
    kinds = ["fp16", "bf16", "int8"] if a.ranges else [a.dtype]
    prepared = {k: prepare(k, ws, x) for k in kinds}
    for k in kinds:  # warm-up: kernels chosen, pools filled
        forward(k, *prepared[k])
    torch.cuda.synchronize()
    for _ in range(a.steps):
        for k in kinds:
            torch.cuda.nvtx.range_push(k if a.ranges else "step")
            for _ in range(8):
                forward(k, *prepared[k])
            torch.cuda.synchronize()
            torch.cuda.nvtx.range_pop()
    for k in kinds:
        print(f"{k} max error {max_error(forward(k, *prepared[k]), ref):.4e}")


if __name__ == "__main__":
    main()
