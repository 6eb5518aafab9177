#!/usr/bin/env python3
"""Requests of two kinds for checking per-request and per-token energy (issue #11): a
GPT-2-sized `transformers` model (fp16, random weights, no network) serves a short and a long
kind of request, each in its own NVTX range with `tokens=N` in its message.

    python3 scripts/requests_check.py truth --kind short|long [--seconds S]
        one kind alone in a loop of at least S seconds (default 6), measured by the energy
        counter (NVML); run it WITHOUT wattlens: it is the truth.
    python3 scripts/requests_check.py mix [--requests N] [--zeus FILE]
        N requests (default 80) of both kinds mixed at random (seeded); with --zeus, each
        request is also measured by a Zeus `ZeusMonitor` window, and the per-kind means are
        written to FILE as JSON.
    python3 scripts/requests_check.py batched [--batches N]
        continuous batching: groups of 4 requests share decode steps; each request is a
        start/end range with its own token count, inside a push/pop range `batch`.

Each mode prints one JSON line; `mix` and `batched` print a SHA-256 checksum of every token
generated, so that a run under wattlens can be compared with a bare one.
"""
import argparse
import hashlib
import json
import os
import random
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402
from transformers import GPT2Config, GPT2LMHeadModel  # noqa: E402

BATCH = 8
PROMPT = 32
# New tokens per row: the long kind decodes 8x the short kind's steps.
KINDS = {"short": 8, "long": 64}


def build():
    torch.manual_seed(0)
    config = GPT2Config()
    model = GPT2LMHeadModel(config).to("cuda", dtype=torch.float16).eval()
    gen = torch.Generator(device="cpu").manual_seed(1)
    prompts = torch.randint(0, config.vocab_size, (BATCH, PROMPT), generator=gen).cuda()
    return config, model, prompts


def serve(model, config, prompts, new_tokens):
    """One request: a batch of BATCH prompts, each generating exactly `new_tokens`."""
    return model.generate(
        prompts,
        attention_mask=torch.ones_like(prompts),
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        do_sample=False,
        pad_token_id=config.eos_token_id,
    )


def energy_mj(handle):
    import pynvml

    return pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)


def truth(a, config, model, prompts):
    import pynvml

    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    new = KINDS[a.kind]
    with torch.no_grad():
        for _ in range(2):
            serve(model, config, prompts, new)
        torch.cuda.synchronize()
        e0, t0, n = energy_mj(handle), time.perf_counter(), 0
        while time.perf_counter() - t0 < a.seconds:
            serve(model, config, prompts, new).cpu()
            n += 1
        torch.cuda.synchronize()
        e1, t1 = energy_mj(handle), time.perf_counter()
    print(json.dumps({"mode": "truth", "kind": a.kind, "requests": n,
                      "wall_s": t1 - t0, "energy_j": (e1 - e0) / 1e3,
                      "j_per_request": (e1 - e0) / 1e3 / n,
                      "s_per_request": (t1 - t0) / n,
                      "tokens_per_request": BATCH * new}), flush=True)


def mix(a, config, model, prompts):
    monitor = None
    if a.zeus:
        try:
            from zeus.monitor import ZeusMonitor

            monitor = ZeusMonitor(gpu_indices=[0])
        except Exception as e:  # Zeus missing or failing must not stop the run
            with open(a.zeus, "w") as f:
                json.dump({"error": repr(e)}, f)
    rng = random.Random(7)
    order = [rng.choice(sorted(KINDS)) for _ in range(a.requests)]
    digest = hashlib.sha256()
    zeus = {k: [] for k in KINDS}
    wall = {k: [] for k in KINDS}
    with torch.no_grad():
        for k in KINDS:  # warm-up, outside any range
            serve(model, config, prompts, KINDS[k])
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for i, kind in enumerate(order):
            new = KINDS[kind]
            if monitor:
                monitor.begin_window(f"{kind}{i}")
            t = time.perf_counter()
            torch.cuda.nvtx.range_push(f"{kind} tokens={BATCH * new}")
            out = serve(model, config, prompts, new).cpu()
            torch.cuda.nvtx.range_pop()
            wall[kind].append(time.perf_counter() - t)
            if monitor:
                zeus[kind].append(monitor.end_window(f"{kind}{i}").total_energy)
            digest.update(out.numpy().tobytes())
        loop_s = time.perf_counter() - t0
    if monitor:
        summary = {k: {"windows": len(v), "mean_j": sum(v) / max(len(v), 1),
                       "zero_windows": sum(1 for x in v if x == 0)} for k, v in zeus.items()}
        with open(a.zeus, "w") as f:
            json.dump(summary, f)
    print(json.dumps({"mode": "mix", "requests": a.requests, "loop_s": loop_s,
                      "kinds": {k: order.count(k) for k in KINDS},
                      "s_per_request": {k: sum(v) / max(len(v), 1) for k, v in wall.items()},
                      "checksum": digest.hexdigest()}), flush=True)


def batched(a, config, model, prompts):
    """Groups of 4 requests admitted together; request r generates `targets[r]` tokens per row
    and its range ends at the step its last token is made, while the others go on."""
    targets = [16, 32, 48, 64]
    digest = hashlib.sha256()
    rows = prompts[:4]
    with torch.no_grad():
        for b in range(a.batches):
            torch.cuda.nvtx.range_push("batch")
            ranges = [torch.cuda.nvtx.range_start(f"request tokens={t}") for t in targets]
            out = model(rows, use_cache=True)
            past, tokens = out.past_key_values, [out.logits[:, -1].argmax(-1)]
            for step in range(1, max(targets) + 1):
                for r, t in enumerate(targets):
                    if step == t:
                        torch.cuda.nvtx.range_end(ranges[r])
                if step == max(targets):
                    break
                out = model(tokens[-1][:, None], past_key_values=past, use_cache=True)
                past = out.past_key_values
                tokens.append(out.logits[:, -1].argmax(-1))
                tokens[-1].cpu()  # a server reads each step's tokens back
            torch.cuda.nvtx.range_pop()
            digest.update(torch.stack(tokens).cpu().numpy().tobytes())
    print(json.dumps({"mode": "batched", "batches": a.batches, "targets": targets,
                      "checksum": digest.hexdigest()}), flush=True)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="mode", required=True)
    t = sub.add_parser("truth")
    t.add_argument("--kind", choices=sorted(KINDS), required=True)
    t.add_argument("--seconds", type=float, default=6.0)
    m = sub.add_parser("mix")
    m.add_argument("--requests", type=int, default=80)
    m.add_argument("--zeus", metavar="FILE")
    b = sub.add_parser("batched")
    b.add_argument("--batches", type=int, default=6)
    a = p.parse_args()
    config, model, prompts = build()
    {"truth": truth, "mix": mix, "batched": batched}[a.mode](a, config, model, prompts)


if __name__ == "__main__":
    main()
