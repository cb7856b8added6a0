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

``static`` (the static-cache, continuously batched decode loop of ``agentloop.policies.static``) is
ranked the same way, and for every backend the run also measures **this CPU's own limit**: the time
of the model's linear layers alone (every projection of every layer and the output projection,
``torch.nn.functional.linear`` on the model's own weights) at M = the batch size, the work one
decode step cannot avoid. ``share_of_bound`` is the backend's tokens/s over ``batch / that time``;
the backend's time includes its prefill, so the share is a lower estimate of the decode share.

Agreement and bf16 ties: two correct bf16 engines that batch differently round some logits
differently, and greedy decoding then flips between two tokens whose logits are within rounding of
each other (``hf`` against itself at another batch size shows it). ``agree`` is the strict share of
identical texts; ``agree_ties`` also counts a prompt whose texts first differ at a *near-tie*: the
two tokens' logits, recomputed by one unpadded forward pass of the common prefix, differ by at most
``--tie-ulps`` bf16 units in the last place (2 by default). A real defect diverges at a clear margin.

``--prefill-lengths 1400,2600,4000,5400`` times the prefill of one batch of prompts of those token
lengths (one new token each) for ``hf`` and each backend, against the linear-layer bound at
M = the total number of prompt tokens.

``--env math/arith-v0 --env-kwargs difficulty=6,split=test --env-prompts 300 --stop "\n\n"`` times a
real workload (the first observation of each of N tasks, mixed lengths, a stop string) for ``hf``
(batches of 64) and each backend, greedy, in alternating order: the default run's generation.

``--json PATH`` writes ``{"backends": {NAME: {"<batch>": {"ratio_to_hf", "share_of_bound", "agree",
"agree_ties", ...}}}, "prefill": {...}, "bound": {...}}``.

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
    if name == "static":
        from agentloop.policies.static import StaticPolicy

        start = time.perf_counter()
        policy = StaticPolicy(model=model, max_batch_size=64)
        return policy, time.perf_counter() - start
    if name == "ct2":
        from agentloop.policies.ct2 import CT2Policy

        start = time.perf_counter()
        policy = CT2Policy(model=model, compute_type=setting or "int8", max_batch_size=64)
        return policy, time.perf_counter() - start
    raise SystemExit(f"unknown backend {spec!r}; use static, ct2:int8, ct2:float32 or llamacpp[:file.gguf]")


def alternating(policies: dict, convs: list, sampling, repeats: int) -> tuple[dict[str, float], dict[str, list]]:
    """Each policy generates ``convs`` ``repeats`` times, the order reversed every other round (so neither side
    always runs on a warmer or busier machine); returns each one's best seconds and its last completions."""
    best = {name: float("inf") for name in policies}
    outs: dict[str, list] = {}
    for r in range(repeats):
        for name in (list(policies) if r % 2 == 0 else list(reversed(policies))):
            start = time.perf_counter()
            outs[name] = policies[name].generate(convs, sampling)
            best[name] = min(best[name], time.perf_counter() - start)
    return best, outs


def bench_backend(hf, other, batch: int, max_new_tokens: int, repeats: int, tie_ulps: float) -> dict:
    from agentloop.types import SamplingParams

    convs = prompts(batch)
    sampling = SamplingParams(max_new_tokens=max_new_tokens, return_logprobs=True)
    best, outs = alternating({"hf": hf, "other": other}, convs, sampling, repeats)
    tokens = {side: sum(len(c.token_ids) for c in outs[side]) for side in outs}
    tps = {side: tokens[side] / best[side] for side in best}
    pairs = list(zip(outs["hf"], outs["other"]))
    strict = [a.text == b.text for a, b in pairs]
    ties = [same or near_tie(hf, a, b, tie_ulps) for same, (a, b) in zip(strict, pairs)]
    texts = [(a.text, b.text) for a, b in pairs]
    return {"batch": batch, "hf_tok_s": tps["hf"], "tok_s": tps["other"], "ratio": tps["other"] / tps["hf"],
            "agree": sum(strict) / batch, "agree_ties": sum(ties) / batch,
            "agree_answer": sum(a.split("\n\n")[0] == b.split("\n\n")[0] for a, b in texts) / batch,
            "tokens": tokens["other"], "seconds": best["other"], "hf_seconds": best["hf"]}


def near_tie(hf, a, b, ulps: float) -> bool:
    """Whether completions ``a`` and ``b`` (same prompt) first differ at tokens whose logits, from one
    unpadded forward pass over the prompt and the common prefix, are within ``ulps`` bf16 ulps."""
    import math

    import torch

    ta, tb = list(a.token_ids), list(b.token_ids)
    k = next((i for i, (x, y) in enumerate(zip(ta, tb)) if x != y), None)
    if k is None:
        return len(ta) == len(tb)  # one is a prefix of the other: a length limit, not a tie
    ids = torch.tensor([list(a.prompt_token_ids) + ta[:k]])
    with torch.no_grad():
        logits = hf.model(ids).logits[0, -1].float()
    la, lb = float(logits[ta[k]]), float(logits[tb[k]])
    ulp = 2.0 ** (math.floor(math.log2(max(abs(la), abs(lb), 1e-6))) - 7)  # bf16: 8 significant bits
    return abs(la - lb) <= ulps * ulp


def linear_bound_seconds(model, rows: int, repeats: int = 3) -> float:
    """Best time of every linear layer of ``model`` (each projection and the output one) at M = ``rows``."""
    import torch
    import torch.nn.functional as F

    weights = [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear)]
    inputs = {w.shape[1]: torch.randn(rows, w.shape[1], dtype=w.dtype) for w in weights}
    best = float("inf")
    with torch.no_grad():
        for _ in range(repeats + 1):  # the first pass warms oneDNN's kernels
            start = time.perf_counter()
            for w in weights:
                F.linear(inputs[w.shape[1]], w)
            best = min(best, time.perf_counter() - start)
    return best


def long_prompts(tokenizer, lengths: list[int]) -> list[list]:
    """Chat prompts whose templated token counts are close to ``lengths`` (real prose: this script's source)."""
    from agentloop.types import user

    words = open(__file__).read().split()
    out = []
    for n in lengths:
        text = " ".join(words[i % len(words)] for i in range(n))
        ids = tokenizer(text, add_special_tokens=False)["input_ids"][: max(n - 30, 1)]
        out.append([user(tokenizer.decode(ids))])
    return out


def bench_prefill(hf, others: dict, lengths: list[int], repeats: int) -> dict:
    """Seconds to prefill one batch of prompts of ``lengths`` tokens (one new token each), per backend."""
    from agentloop.types import SamplingParams

    convs = long_prompts(hf.tokenizer, lengths)
    sampling = SamplingParams(max_new_tokens=1)
    times, _ = alternating({"hf": hf, **others}, convs, sampling, repeats)
    from agentloop.policies.chat import encode_chat

    total = sum(len(encode_chat(hf.tokenizer, c, None, 1)[0]) for c in convs)
    bound = linear_bound_seconds(hf.model, total)
    return {"lengths": lengths, "prompt_tokens": total, "bound_seconds": bound,
            "backends": {name: {"seconds": t, "tok_s": total / t, "ratio_to_hf": times["hf"] / t,
                                "share_of_bound": bound / t} for name, t in times.items()}}


def env_prompts(env_id: str, kwargs: str, n: int) -> list[list]:
    """The first observation (the chat the policy sees) of tasks 0..n-1 of a registered environment."""
    from agentloop.registry import make

    parsed = {}
    for item in filter(None, kwargs.split(",")):
        key, _, value = item.partition("=")
        parsed[key] = int(value) if value.lstrip("-").isdigit() else value
    env = make(env_id, **parsed)
    return [list(env.reset(seed=i, options={"index": i})[0]) for i in range(n)]


def bench_workload(hf, others: dict, convs: list[list], max_new_tokens: int, stop: str, repeats: int) -> dict:
    """Seconds and tokens/s for ``convs`` (greedy, ``stop``), each backend against ``hf``, alternating order."""
    from agentloop.types import SamplingParams

    sampling = SamplingParams(max_new_tokens=max_new_tokens, stop=(stop,) if stop else (), return_logprobs=True)
    best, outs = alternating({"hf": hf, **others}, convs, sampling, repeats)
    result = {}
    for name in best:
        tokens = sum(len(c.token_ids) for c in outs[name])
        result[name] = {"seconds": best[name], "tokens": tokens, "tok_s": tokens / best[name],
                        "ratio_to_hf": best["hf"] / best[name],
                        "agree": sum(a.text == b.text for a, b in zip(outs["hf"], outs[name])) / len(convs)}
    return {"prompts": len(convs), "max_new_tokens": max_new_tokens, "stop": stop, "backends": result}


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
    parser.add_argument("--backends", default="", help="Comma list of other backends to rank against hf: "
                        "static, ct2:int8, ct2:float32, llamacpp.")
    parser.add_argument("--skip-raw", action="store_true", help="Only the --backends comparison (no policy-vs-raw "
                        "table, no RSS child).")
    parser.add_argument("--tie-ulps", type=float, default=2.0, help="bf16 ulps within which a first divergence "
                        "counts as a near-tie (agree_ties).")
    parser.add_argument("--prefill-lengths", default="", help="Comma list of prompt token lengths prefilled as "
                        "one batch (e.g. 1400,2600,4000,5400).")
    parser.add_argument("--env", default="", help="Time a real workload: prompts from this environment's tasks.")
    parser.add_argument("--env-kwargs", default="", help="Its kwargs, k=v,k=v (e.g. difficulty=6,split=test).")
    parser.add_argument("--env-prompts", type=int, default=300, help="How many of its tasks.")
    parser.add_argument("--stop", default="", help="Stop string for the workload (e.g. a blank line).")
    parser.add_argument("--json", default=None, help="Write the backend comparison as JSON to this path.")
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
    import datetime
    import os

    shown = [a.encode("unicode_escape").decode() for a in sys.argv[1:]]  # a stop string's newlines as \\n
    report: dict = {"command": "python " + " ".join(["benchmarks/generation.py", *shown]),
                    "date": datetime.date.today().isoformat(), "load_avg_start": os.getloadavg()[0],
                    "threads": torch.get_num_threads(), "max_new_tokens": args.max_new_tokens, "backends": {},
                    "bound": {}}
    for batch in batches:
        t = linear_bound_seconds(policy.model, batch)
        report["bound"][str(batch)] = {"linear_seconds": t, "tok_s": batch / t}
    others = {}
    for spec in (s for s in args.backends.split(",") if s):
        other, load_s = build_backend(spec, args.model)
        others[spec] = other
        print(f"{spec}: loaded (converted on first use, cached after) in {load_s:.1f} s")
        print(f"{'batch':>5} {'hf tok/s':>9} {spec + ' tok/s':>16} {'ratio':>6} {'bound tok/s':>11} {'share':>6} "
              f"{'agree':>6} {'agree_ties':>10} {'agree_answer':>12}")
        rows = report["backends"].setdefault(spec, {})
        for batch in batches:
            r = bench_backend(policy, other, batch, args.max_new_tokens, args.repeats, args.tie_ulps)
            bound = report["bound"][str(batch)]["tok_s"]
            rows[str(batch)] = {"ratio_to_hf": r["ratio"], "share_of_bound": r["tok_s"] / bound,
                                "hf_share_of_bound": r["hf_tok_s"] / bound, **r}
            print(f"{batch:>5} {r['hf_tok_s']:>9.1f} {r['tok_s']:>16.1f} {r['ratio']:>6.2f} {bound:>11.1f} "
                  f"{r['tok_s'] / bound:>6.2f} {r['agree']:>6.2f} {r['agree_ties']:>10.2f} {r['agree_answer']:>12.2f}",
                  flush=True)
    if args.prefill_lengths:
        lengths = [int(n) for n in args.prefill_lengths.split(",")]
        report["prefill"] = p = bench_prefill(policy, others, lengths, max(2, args.repeats // 2))
        print(f"prefill of {len(lengths)} prompts, {p['prompt_tokens']} tokens (bound {p['bound_seconds']:.2f} s):")
        for name, b in p["backends"].items():
            print(f"  {name:>8} {b['seconds']:7.2f} s {b['tok_s']:8.1f} tok/s ratio_to_hf {b['ratio_to_hf']:.2f} "
                  f"share_of_bound {b['share_of_bound']:.2f}")
    if args.env:
        convs = env_prompts(args.env, args.env_kwargs, args.env_prompts)
        report["workload"] = w = bench_workload(policy, others, convs, args.max_new_tokens, args.stop,
                                                max(2, args.repeats // 2))
        w.update(env=args.env, env_kwargs=args.env_kwargs)
        print(f"workload: {args.env} [{args.env_kwargs}], {len(convs)} prompts, stop {args.stop!r}:")
        for name, b in w["backends"].items():
            print(f"  {name:>8} {b['seconds']:7.2f} s {b['tokens']:6d} tokens {b['tok_s']:8.1f} tok/s "
                  f"ratio_to_hf {b['ratio_to_hf']:.2f} agree {b['agree']:.2f}")
    others.clear()
    report["load_avg_end"] = os.getloadavg()[0]
    if args.json:
        from pathlib import Path

        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
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
