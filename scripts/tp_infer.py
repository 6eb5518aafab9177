#!/usr/bin/env python3
"""A tensor-parallel model of our own for issue #15 (several GPUs): a stack of Megatron-style
MLP blocks split over the ranks of a `torchrun` job, each block ending in an NCCL all-reduce.
Requests are decode loops, each in its own NVTX range with `tokens=N` in its message.

    torchrun --nproc-per-node 2 scripts/tp_infer.py [--imbalance-ms 2] [--energy-out F]

- `--imbalance-ms X`: the last rank sleeps X ms before every all-reduce, so the others wait in
  the collective: the load-imbalance waste, which `--energy-out` measures as an A/B (run once
  with 0 and once with X, and compare each GPU's counter energy over the request loop).
- `--energy-out F`: rank 0 writes a JSON object: per rank, its GPU's UUID, energy-counter mJ
  and seconds over the request loop (read with pynvml in this process, no wattlens needed).
- The last line on rank 0 is `checksum <sha256>` of the final activations, so runs with and
  without wattlens can be compared bit for bit.
- `--cpu` runs on the CPU with the gloo backend (a check of the script itself; no energy).
"""
import argparse
import hashlib
import json
import os
import time

import torch
import torch.distributed as dist


def parse():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=24)
    p.add_argument("--tokens", type=int, default=32, help="decode steps per request")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--hidden", type=int, default=4096)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--imbalance-ms", type=float, default=0.0)
    p.add_argument("--energy-out", default=None)
    p.add_argument("--cpu", action="store_true")
    return p.parse_args()


class Block(torch.nn.Module):
    """One MLP block, its 4h inner width split over `world` ranks: a column-parallel
    projection up, GELU, a row-parallel projection down; the partial sums are all-reduced."""

    def __init__(self, hidden, world, dtype, device):
        super().__init__()
        inner = 4 * hidden // world
        self.up = torch.nn.Linear(hidden, inner, bias=False, dtype=dtype, device=device)
        self.down = torch.nn.Linear(inner, hidden, bias=False, dtype=dtype, device=device)
        self.norm = torch.nn.LayerNorm(hidden, dtype=dtype, device=device)

    def forward(self, x, reduce):
        y = self.down(torch.nn.functional.gelu(self.up(self.norm(x))))
        reduce(y)
        return x + y


def nvtx(cpu):
    """push/pop that do nothing on the CPU."""
    if cpu:
        return (lambda _name: None), (lambda: None)
    return torch.cuda.nvtx.range_push, torch.cuda.nvtx.range_pop


def gpu_energy(cpu):
    """A reader of this rank's GPU energy counter (mJ) and its UUID, or None on the CPU."""
    if cpu:
        return None, ""
    import pynvml

    pynvml.nvmlInit()
    index = torch.cuda.current_device()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible:
        index = int(visible.split(",")[index])
    handle = pynvml.nvmlDeviceGetHandleByIndex(index)
    uuid = pynvml.nvmlDeviceGetUUID(handle)
    uuid = uuid.decode() if isinstance(uuid, bytes) else uuid
    return (lambda: pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)), uuid


def main():
    a = parse()
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if a.cpu:
        device, dtype = torch.device("cpu"), torch.float32
        dist.init_process_group("gloo")
    else:
        torch.cuda.set_device(local)
        device, dtype = torch.device("cuda", local), torch.float16
        dist.init_process_group("nccl", device_id=device)
    torch.manual_seed(1234 + rank)
    blocks = [Block(a.hidden, world, dtype, device) for _ in range(a.layers)]
    slow = rank == world - 1 and a.imbalance_ms > 0

    def reduce(y):
        if slow:
            if not a.cpu:
                torch.cuda.synchronize()
            time.sleep(a.imbalance_ms / 1000.0)
        dist.all_reduce(y)

    push, pop = nvtx(a.cpu)
    read_mj, uuid = gpu_energy(a.cpu)
    torch.manual_seed(99)
    x0 = torch.randn(a.batch, a.hidden, dtype=dtype, device=device)
    with torch.no_grad():
        for _ in range(2):  # warm-up: NCCL's communicators, cuBLAS handles
            x = x0
            for b in blocks:
                x = b(x, reduce)
        if not a.cpu:
            torch.cuda.synchronize()
        dist.barrier()
        e0, t0 = (read_mj() if read_mj else 0), time.perf_counter()
        for r in range(a.requests):
            push(f"request tokens={a.batch * a.tokens}")
            x = x0 + r
            for _ in range(a.tokens):
                for b in blocks:
                    x = b(x, reduce)
            pop()
        if not a.cpu:
            torch.cuda.synchronize()
        dist.barrier()
        e1, t1 = (read_mj() if read_mj else 0), time.perf_counter()
    mine = {"rank": rank, "uuid": uuid, "energy_mj": e1 - e0, "seconds": t1 - t0}
    every = [None] * world
    dist.all_gather_object(every, mine)
    digest = hashlib.sha256(x.float().cpu().numpy().tobytes()).hexdigest()
    if rank == 0:
        for m in every:
            print(
                f"rank {m['rank']}: {a.requests} requests in {m['seconds']:.3f} s, "
                f"{m['energy_mj'] / 1000.0:.1f} J on its GPU"
            )
        if a.energy_out:
            with open(a.energy_out, "w") as f:
                json.dump({"imbalance_ms": a.imbalance_ms, "ranks": every}, f, indent=1)
        print(f"checksum {digest}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
