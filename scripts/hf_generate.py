#!/usr/bin/env python3
"""A Hugging Face `transformers` GPT-2 `generate` loop, as an inference engineer would write it
(fp16, random weights, no network): one of the unmodified programs wattlens is judged on.

    python3 scripts/hf_generate.py [--iters N] [--batch B] [--prompt P] [--new-tokens T]
                                   [--no-cache] [--layers L]

It prints one JSON line: iterations, the loop's wall time, tokens generated, and a SHA-256
checksum of every generated token, so that a run under wattlens can be compared bit for bit
with one without it.
"""
import argparse
import hashlib
import json
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402
from transformers import GPT2Config, GPT2LMHeadModel  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--prompt", type=int, default=32)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--no-cache", action="store_true", help="recompute the whole prefix every step")
    a = p.parse_args()

    torch.manual_seed(0)
    config = GPT2Config(n_layer=a.layers)
    model = GPT2LMHeadModel(config).to("cuda", dtype=torch.float16).eval()
    gen = torch.Generator(device="cpu").manual_seed(1)
    prompts = torch.randint(0, config.vocab_size, (a.batch, a.prompt), generator=gen).cuda()
    mask = torch.ones_like(prompts)
    kwargs = dict(
        attention_mask=mask,
        max_new_tokens=a.new_tokens,
        min_new_tokens=a.new_tokens,
        do_sample=False,
        use_cache=not a.no_cache,
        pad_token_id=config.eos_token_id,
    )
    digest = hashlib.sha256()
    with torch.no_grad():
        model.generate(prompts, **kwargs)  # warm-up: cuBLAS handles, kernel selection
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(a.iters):
            out = model.generate(prompts, **kwargs)
            digest.update(out.cpu().numpy().tobytes())
        torch.cuda.synchronize()
    loop_s = time.perf_counter() - t0
    print(json.dumps({"iters": a.iters, "loop_s": loop_s,
                      "tokens": a.iters * a.batch * a.new_tokens,
                      "checksum": digest.hexdigest()}), flush=True)


if __name__ == "__main__":
    main()
