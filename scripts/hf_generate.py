#!/usr/bin/env python3
"""A Hugging Face `transformers` GPT-2 `generate` loop, as an inference engineer would write it
(fp16, random weights, no network): one of the unmodified programs wattlens is judged on.

    python3 scripts/hf_generate.py [--iters N] [--batch B] [--prompt P] [--new-tokens T]
                                   [--no-cache] [--reload] [--layers L] [--tiny] [--llama] [--cpu]

`--no-cache` decodes without a KV cache (every step recomputes the whole prefix); `--reload`
loads the weights from host tensors before every call (the same bytes every time). Both are
the waste `wattlens run --audit` must prove. `--tiny` is a 2-layer, 64-wide model, `--llama` a
Llama-architecture one (rotary positions, grouped-query attention) in its place, and `--cpu`
runs on the CPU in fp32 (for capturing the audit's facts on a machine without a GPU).

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
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--prompt", type=int, default=32)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--no-cache", action="store_true", help="recompute the whole prefix every step")
    p.add_argument("--reload", action="store_true",
                   help="load the weights from host tensors before every generate call")
    p.add_argument("--tiny", action="store_true", help="a 2-layer, 64-wide model")
    p.add_argument("--llama", action="store_true",
                   help="a Llama-architecture model (rotary positions) in place of GPT-2")
    p.add_argument("--cpu", action="store_true", help="run on the CPU, in fp32")
    p.add_argument("--nvtx", action="store_true",
                   help="run each timed generate call in an NVTX range `generate` (a request)")
    a = p.parse_args()

    torch.manual_seed(0)
    layers, width = (2, 64) if a.tiny else (a.layers, 768)
    if a.llama:
        config = LlamaConfig(num_hidden_layers=layers, hidden_size=width,
                             intermediate_size=4 * width, num_attention_heads=max(width // 64, 2),
                             num_key_value_heads=max(width // 128, 1),
                             vocab_size=256 if a.tiny else 32000, max_position_embeddings=1024,
                             bos_token_id=0, eos_token_id=0)
        model_class = LlamaForCausalLM
    elif a.tiny:
        config = GPT2Config(n_layer=2, n_head=2, n_embd=64, vocab_size=256, n_positions=256,
                            bos_token_id=0, eos_token_id=0)
        model_class = GPT2LMHeadModel
    else:
        config = GPT2Config(n_layer=a.layers)
        model_class = GPT2LMHeadModel
    device, dtype = ("cpu", torch.float32) if a.cpu else ("cuda", torch.float16)
    model = model_class(config).to(device, dtype=dtype).eval()
    host_weights = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}
    gen = torch.Generator(device="cpu").manual_seed(1)
    prompts = torch.randint(0, config.vocab_size, (a.batch, a.prompt), generator=gen).to(device)
    mask = torch.ones_like(prompts)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
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
        sync()
        t0 = time.perf_counter()
        for _ in range(a.iters):
            if a.reload:
                model.load_state_dict(host_weights)
            if a.nvtx:
                torch.cuda.nvtx.range_push("generate")
            out = model.generate(prompts, **kwargs)
            if a.nvtx:
                torch.cuda.synchronize()
                torch.cuda.nvtx.range_pop()
            digest.update(out.cpu().numpy().tobytes())
        sync()
    loop_s = time.perf_counter() - t0
    print(json.dumps({"iters": a.iters, "loop_s": loop_s,
                      "tokens": a.iters * a.batch * a.new_tokens,
                      "checksum": digest.hexdigest()}), flush=True)


if __name__ == "__main__":
    main()
