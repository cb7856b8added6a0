"""vLLM (``vllm`` policy) against transformers (``hf`` policy) on the same GPU, prompts and settings.

Both policies render the same chat-templated prompts (agentloop.policies.chat) and generate greedily
with the same ``max_new_tokens``; tokens/s counts generated tokens (``token_ids``, EOS included). It
also reports how many greedy texts agree (bf16 kernels differ, so some divergence is expected) and
the mean absolute logprob difference on the tokens both produced identically. When vLLM is missing
the hf figures are still printed and the script exits with status 3.

    python benchmarks/device/bench_vllm.py --prompts 256 --max-new-tokens 128
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def conversations(n: int) -> list:
    from agentloop.types import user

    return [[user(f"Q{i}: A shop sells {i % 17 + 2} apples for {i % 5 + 1} dollars each. "
                  f"How much do {i % 7 + 3} apples cost? Explain step by step.")] for i in range(n)]


def timed(policy, convs, sampling) -> tuple[list, float]:
    start = time.perf_counter()
    out = policy.generate(convs, sampling)
    return out, time.perf_counter() - start


def raw_generate(hf, convs, max_new_tokens: int, batch: int) -> dict:
    """Plain model.generate on the policy's own prompt ids (same left padding), to price the policy's overhead."""
    import torch

    from agentloop.policies.chat import encode_chat

    ids = [encode_chat(hf.tokenizer, c, None, max_new_tokens)[0] for c in convs]
    ids.sort(key=len)  # the policy groups prompts by length too
    tokens, start = 0, time.perf_counter()
    for i in range(0, len(ids), batch):
        chunk = ids[i:i + batch]
        width = max(map(len, chunk))
        input_ids = torch.full((len(chunk), width), hf.pad_id, dtype=torch.long)
        mask = torch.zeros_like(input_ids)
        for row, p in enumerate(chunk):
            input_ids[row, width - len(p):] = torch.tensor(p)
            mask[row, width - len(p):] = 1
        with torch.no_grad():
            out = hf.model.generate(input_ids=input_ids.to(hf.device), attention_mask=mask.to(hf.device),
                                    max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=hf.pad_id)
        for row in out[:, width:].tolist():
            tokens += next((k + 1 for k, t in enumerate(row) if t in hf.eos_ids), len(row))
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "tokens": tokens, "tok_s": tokens / seconds}


def compare(a: list, b: list) -> dict:
    same = sum(x.text == y.text for x, y in zip(a, b))
    diffs = []
    for x, y in zip(a, b):
        for tx, ty, lx, ly in zip(x.token_ids or (), y.token_ids or (), x.logprobs or (), y.logprobs or ()):
            if tx != ty:
                break
            diffs.append(abs(lx - ly))
    return {"identical_texts": same, "of": len(a), "mean_abs_logprob_diff": sum(diffs) / max(len(diffs), 1)}


def random_model(config_dir: str) -> str:
    """Save a random-weight model with the config and tokenizer in ``config_dir``; returns its folder."""
    import shutil
    import tempfile

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    target = Path(tempfile.mkdtemp(prefix="random-model-"))
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(config_dir), dtype=torch.bfloat16)
    model.save_pretrained(target)
    for f in Path(config_dir).iterdir():
        if f.name != "config.json" and f.is_file():
            shutil.copy(f, target / f.name)
    return str(target)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default=None, help="Model folder; default: the embedded default model.")
    p.add_argument("--prompts", type=int, default=256)
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--hf-batch", type=int, default=64)
    p.add_argument("--random-weights-from", default=None,
                   help="Folder with config.json + tokenizer files: build a seeded random-weight model of that shape "
                        "(throughput equals the real model's; agreement figures are then meaningless).")
    p.add_argument("--out", default="device-results/results.json")
    args = p.parse_args()
    import torch

    if args.random_weights_from:
        args.model = random_model(args.random_weights_from)

    from agentloop.errors import PolicyError
    from agentloop.policies.hf import HFPolicy
    from agentloop.types import SamplingParams

    results: dict = {"gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                     "prompts": args.prompts, "max_new_tokens": args.max_new_tokens}
    convs = conversations(args.prompts)
    sampling = SamplingParams(max_new_tokens=args.max_new_tokens, return_logprobs=True)
    hf = HFPolicy(model=args.model, device="cuda" if torch.cuda.is_available() else "cpu", max_batch_size=args.hf_batch)
    # Warm-up at full size: the GPU's first pass over each new shape is slow, and both sides must be warm.
    hf.generate(convs[: args.hf_batch], sampling)
    raw_a = raw_generate(hf, convs, args.max_new_tokens, args.hf_batch)
    hf_out, hf_s = timed(hf, convs, sampling)
    raw_b = raw_generate(hf, convs, args.max_new_tokens, args.hf_batch)
    hf_tokens = sum(len(c.token_ids) for c in hf_out)
    results["hf"] = {"seconds": hf_s, "tokens": hf_tokens, "tok_s": hf_tokens / hf_s, "batch": args.hf_batch}
    results["hf_raw_generate"] = max(raw_a, raw_b, key=lambda r: r["tok_s"])  # raw gets the better of two runs
    print(f"hf   : {hf_tokens} tokens in {hf_s:.1f} s = {hf_tokens / hf_s:.0f} tok/s (batch {args.hf_batch}, with logprobs)",
          flush=True)
    print(f"raw  : model.generate on the same prompts: {results['hf_raw_generate']['tok_s']:.0f} tok/s (best of 2); "
          f"hf policy / raw = {results['hf']['tok_s'] / results['hf_raw_generate']['tok_s']:.3f}", flush=True)
    del hf
    torch.cuda.empty_cache()
    status = 0
    try:
        from agentloop.policies.vllm import VLLMPolicy

        vl = VLLMPolicy(model=args.model, gpu_memory_utilization=0.6)
        vl.generate(convs[:2], sampling.model_copy(update={"max_new_tokens": 4}))
        vl_out, vl_s = timed(vl, convs, sampling)
        vl_tokens = sum(len(c.token_ids) for c in vl_out)
        results["vllm"] = {"seconds": vl_s, "tokens": vl_tokens, "tok_s": vl_tokens / vl_s}
        results["speedup"] = (vl_tokens / vl_s) / (hf_tokens / hf_s)
        results["agreement"] = compare(hf_out, vl_out)
        print(f"vllm : {vl_tokens} tokens in {vl_s:.1f} s = {vl_tokens / vl_s:.0f} tok/s; "
              f"speedup {results['speedup']:.1f}x; agreement {results['agreement']}", flush=True)
    except PolicyError as e:
        results["vllm"] = {"error": str(e)}
        print(f"vllm : not measured: {e}", flush=True)
        status = 3
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    return status


if __name__ == "__main__":
    sys.exit(main())
