"""Generation throughput of the ``hf`` policy against raw ``model.generate`` on identical prompts and settings.

For each batch size (default 1, 8, 32) both sides generate greedily from the same chat-templated,
left-padded prompts with the same ``max_new_tokens``, in alternating order, ``--repeats`` times; the
best time of each side gives its tokens/s (generated tokens up to and including EOS, counted from the
raw outputs; the policy's texts are checked to be identical, so the counts agree). The target is a
policy/raw ratio of at least 0.95. Peak RSS is measured in a fresh process that loads the default
model through the policy and generates one batch of 32 (target: at most 1.5 GiB).

    python benchmarks/generation.py                       # default model, bf16, CPU
    python benchmarks/generation.py --batches 1,8 --max-new-tokens 16 --repeats 2
    python benchmarks/generation.py --backends ct2:int8,ct2:float32 --batches 1,8,64   # other backends vs hf
    python benchmarks/generation.py --backends llamacpp --batches 1,8,64 --skip-raw   # llama.cpp on the GGUF

``--backends`` adds, per batch size, each backend's tokens/s as a ratio against the ``hf`` policy timed
in the same loop (alternating sides, best of ``--repeats``) and its greedy agreement with ``hf``: the
share of prompts whose whole greedy text is identical (``agree``) and whose text up to the first blank
line (the answer, as the default improve config cuts it) is identical (``agree_answer``).

Numbers on a shared machine are noisy: compare the ratio, not the absolute figures, across runs.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def prompts(n: int) -> list[list]:
    from agentloop.types import user

    return [[user(f"What is {7 * i + 3} plus {5 * i + 11}? Explain your steps briefly.")] for i in range(n)]


def raw_generate(model, input_ids, attention, max_new_tokens: int, pad_id: int):
    import torch

    with torch.no_grad():
        return model.generate(input_ids=input_ids, attention_mask=attention, max_new_tokens=max_new_tokens,
                              do_sample=False, pad_token_id=pad_id)


def left_pad(batch: list[list[int]], pad_id: int):
    import torch

    width = max(len(p) for p in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, p in enumerate(batch):
        ids[row, width - len(p):] = torch.tensor(p)
        mask[row, width - len(p):] = 1
    return ids, mask


def count_tokens(generated, eos_ids: list[int]) -> int:
    total = 0
    for row in generated.tolist():
        end = next((k + 1 for k, t in enumerate(row) if t in eos_ids), len(row))
        total += end
    return total


def bench_batch(policy, batch: int, max_new_tokens: int, repeats: int) -> dict:
    from agentloop.policies.chat import encode_chat
    from agentloop.types import SamplingParams

    convs = prompts(batch)
    ids = [encode_chat(policy.tokenizer, c, None, max_new_tokens)[0] for c in convs]
    input_ids, attention = left_pad(ids, policy.pad_id)
    sampling = SamplingParams(max_new_tokens=max_new_tokens)
    raw_times, pol_times, tokens, same = [], [], 0, True
    for r in range(repeats):
        for side in (("raw", "policy") if r % 2 == 0 else ("policy", "raw")):
            start = time.perf_counter()
            if side == "raw":
                out = raw_generate(policy.model, input_ids, attention, max_new_tokens, policy.pad_id)
                raw_times.append(time.perf_counter() - start)
                generated = out[:, input_ids.shape[1]:]
                tokens = count_tokens(generated, policy.eos_ids)
                raw_texts = [policy.tokenizer.decode(g[: count_tokens(g[None], policy.eos_ids)], skip_special_tokens=True)
                             for g in generated]
            else:
                completions = policy.generate(convs, sampling)
                pol_times.append(time.perf_counter() - start)
                pol_texts = [c.text for c in completions]
        same = same and raw_texts == pol_texts
    raw_tps, pol_tps = tokens / min(raw_times), tokens / min(pol_times)
    return {"batch": batch, "tokens": tokens, "raw_tok_s": raw_tps, "policy_tok_s": pol_tps,
            "ratio": pol_tps / raw_tps, "identical_outputs": same,
            "raw_times": raw_times, "policy_times": pol_times}


def build_backend(spec: str, model: str | None):
    """A policy from ``name[:setting]``: ``ct2:int8`` / ``ct2:float32`` (compute type), ``llamacpp`` (the GGUF)."""
    name, _, setting = spec.partition(":")
    if name == "llamacpp":
        from agentloop.policies.llamacpp import LlamaCppPolicy

        start = time.perf_counter()
        policy = LlamaCppPolicy(model=setting or None, max_batch_size=64)
        return policy, time.perf_counter() - start
    if name == "ct2":
        from agentloop.policies.ct2 import CT2Policy

        start = time.perf_counter()
        policy = CT2Policy(model=model, compute_type=setting or "int8", max_batch_size=64)
        return policy, time.perf_counter() - start
    raise SystemExit(f"unknown backend {spec!r}; use ct2:int8, ct2:float32 or llamacpp[:file.gguf]")


def bench_backend(hf, other, batch: int, max_new_tokens: int, repeats: int) -> dict:
    from agentloop.types import SamplingParams

    convs = prompts(batch)
    sampling = SamplingParams(max_new_tokens=max_new_tokens)
    times: dict[str, list[float]] = {"hf": [], "other": []}
    texts: dict[str, list[str]] = {}
    for r in range(repeats):
        for side in (("hf", "other") if r % 2 == 0 else ("other", "hf")):
            policy = hf if side == "hf" else other
            start = time.perf_counter()
            texts[side] = [c.text for c in policy.generate(convs, sampling)]
            times[side].append(time.perf_counter() - start)
    tokens = {side: sum(len(hf.tokenizer(t, add_special_tokens=False)["input_ids"]) + 1 for t in texts[side])
              for side in texts}  # +1: the end token
    tps = {side: tokens[side] / min(times[side]) for side in times}
    pairs = list(zip(texts["hf"], texts["other"]))
    return {"batch": batch, "hf_tok_s": tps["hf"], "tok_s": tps["other"], "ratio": tps["other"] / tps["hf"],
            "agree": sum(a == b for a, b in pairs) / batch,
            "agree_answer": sum(a.split("\n\n")[0] == b.split("\n\n")[0] for a, b in pairs) / batch}


def rss_child(batch: int, max_new_tokens: int) -> None:
    """Run in a fresh process: load the default model via the policy, generate one batch, print peak RSS."""
    from agentloop.policies.hf import HFPolicy
    from agentloop.types import SamplingParams

    policy = HFPolicy()
    policy.generate(prompts(batch), SamplingParams(max_new_tokens=max_new_tokens))
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"peak_rss_gib": peak_kib / 2**20}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="Model folder; default: the embedded default model.")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads; on a shared, oversubscribed machine 1 is far faster than 2.")
    parser.add_argument("--backends", default="", help="Comma list of other backends to rank against hf: ct2:int8,...")
    parser.add_argument("--skip-raw", action="store_true", help="Only the --backends comparison (no policy-vs-raw "
                        "table, no RSS child).")
    parser.add_argument("--rss-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.rss_child:
        rss_child(32, args.max_new_tokens)
        return

    from agentloop.policies.hf import HFPolicy

    policy = HFPolicy(model=args.model, dtype=args.dtype, max_batch_size=64)
    print(f"model {policy.source} dtype {policy.model.dtype} torch threads {torch.get_num_threads()} "
          f"max_new_tokens {args.max_new_tokens} repeats {args.repeats} (best time of each side)")
    print(f"{'batch':>5} {'tokens':>6} {'raw tok/s':>10} {'hf policy tok/s':>16} {'ratio':>6} identical")
    batches = [int(b) for b in args.batches.split(",")]
    for spec in (s for s in args.backends.split(",") if s):
        other, load_s = build_backend(spec, args.model)
        print(f"{spec}: loaded (converted on first use, cached after) in {load_s:.1f} s")
        print(f"{'batch':>5} {'hf tok/s':>9} {spec + ' tok/s':>16} {'ratio':>6} {'agree':>6} {'agree_answer':>12}")
        for batch in batches:
            r = bench_backend(policy, other, batch, args.max_new_tokens, args.repeats)
            print(f"{batch:>5} {r['hf_tok_s']:>9.1f} {r['tok_s']:>16.1f} {r['ratio']:>6.2f} {r['agree']:>6.2f} "
                  f"{r['agree_answer']:>12.2f}", flush=True)
        del other
    if args.skip_raw:
        return
    results = []
    for batch in batches:
        r = bench_batch(policy, batch, args.max_new_tokens, args.repeats)
        results.append(r)
        print(f"{r['batch']:>5} {r['tokens']:>6} {r['raw_tok_s']:>10.1f} {r['policy_tok_s']:>16.1f} "
              f"{r['ratio']:>6.3f} {r['identical_outputs']}", flush=True)
    del policy
    child = subprocess.run([sys.executable, __file__, "--rss-child", "--max-new-tokens", str(args.max_new_tokens),
                            *(["--threads", str(args.threads)] if args.threads else [])],
                           capture_output=True, text=True, check=True)
    rss = json.loads(child.stdout.strip().splitlines()[-1])["peak_rss_gib"]
    print(f"peak RSS, default model via HFPolicy, batch 32: {rss:.2f} GiB (target <= 1.5)")
    print("min ratio:", f"{min(r['ratio'] for r in results):.3f}", "(target >= 0.95)")


if __name__ == "__main__":
    main()
