"""How many training sequences re-rendering changes, on episodes of the default run (real default model).

Collects two-attempt episodes exactly as ``configs/default.yaml``'s collection plays them (its environment
and training split, RISE's collection wrapper and turn-routed policy: greedy first attempt, second sampled at
collect.temperature, max_new_tokens and stop string, best-of-N branches from failed second attempts) with the
embedded SmolLM2-135M-Instruct (``HFPolicy``, bf16 on CPU), then builds every training sequence two ways and
compares each with what the policy actually saw and sampled (prompt ids at generation time + sampled ids,
loss on the sampled ids only):

* ``rendered``: the turn's messages through the chat template and re-tokenised, as training did before
  (``chat_example(tokenizer, [*observation, assistant(action)])``);
* ``sampled``: what the methods build now (``turn_example``; for the method's own selection, the real
  ``RISE.examples`` of the default config).

Counted for every sampled turn and for the sequences the default method trains (RISE ``filter: success``),
with where a rendered sequence differs (context / trained span), how the reply ended (stop string,
end-of-turn, max_new_tokens) and what differs in the trained span (see :func:`compare`).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/token_faithful.py [--tasks 24] [--best-of 1] [--out FILE]

By default the rollouts only (``--best-of 1``: 24 two-attempt episodes, 48 sequences; 98 s on the shared
2-core machine, load ~6). ``benchmarks/results/token_faithful.json`` is the default config's own best-of-8
collection: ``--tasks 24 --best-of 8 --out benchmarks/results/token_faithful.json`` (24 episodes + 133
branches, 181 sequences; 456 s there). Measured there: every one of the 181 re-rendered sequences trains
other tokens than were sampled (176: the template's newline after end-of-turn, which the policy never
samples; 3: a stop string's tokens replaced by end-of-turn; 2: a reply cut at max_new_tokens given an
end-of-turn it never wrote); contexts and the replies' own ids agreed. The sampled-id examples: 0 of 181.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _truth(turn: Any) -> tuple[list[int], list[int]]:
    prompt, gen = list(turn.prompt_token_ids), list(turn.token_ids)
    return prompt + gen, [0] * len(prompt) + [1] * len(gen)


def _ending(tokenizer: Any, turn: Any, stop: list[str]) -> str:
    gen = list(turn.token_ids)
    if gen and gen[-1] == tokenizer.convert_tokens_to_ids("<|im_end|>"):
        return "end_of_turn"
    tail = tokenizer.decode(gen[-8:], skip_special_tokens=True)
    return "stop_string" if any(s and s in tail for s in stop) else "max_new_tokens"


def compare(tokenizer: Any, turns: list[Any], examples: list[Any], stop: list[str], max_len: int) -> dict[str, Any]:
    """Mismatch counts of ``examples[i]`` against the sampled sequence of ``turns[i]``.

    A trained span that differs is classed by where: ``reply_retokenised`` (the reply's own ids differ),
    ``ending_differs`` (the reply's ids agree, then the ending differs: a stop string's tokens replaced by the
    template's end-of-turn), ``tokens_after_the_sampled_end`` (the sampled ids, then tokens the policy never
    sampled, e.g. the template's newline after end-of-turn); ``appended`` counts those extra tokens' texts.
    """
    from agentloop.training.data import encode_example

    differ, context, trained, why, where, appended = 0, 0, 0, Counter(), Counter(), Counter()
    for turn, ex in zip(turns, examples):
        ids, mask, _ = encode_example(tokenizer, ex, max_len)
        want, want_mask = _truth(turn)
        if len(want) > max_len:  # both sides keep their end
            want, want_mask = want[-max_len:], want_mask[-max_len:]
        if (ids, mask) == (want, want_mask):
            continue
        differ += 1
        cut = len(want) - sum(want_mask)
        context += ids[:cut] != want[:cut] or mask[:cut] != want_mask[:cut]
        got_span = [i for i, m in zip(ids, mask) if m]
        want_span = [i for i, m in zip(want, want_mask) if m]
        if got_span == want_span:
            continue
        trained += 1
        why[_ending(tokenizer, turn, stop)] += 1
        reply = list(tokenizer(turn.action, add_special_tokens=False)["input_ids"])
        if got_span[: len(want_span)] == want_span:
            where["tokens_after_the_sampled_end"] += 1
            appended[tokenizer.decode(got_span[len(want_span):])] += 1
        elif want_span[: len(reply)] != reply:
            where["reply_retokenised"] += 1
        else:
            where["ending_differs"] += 1
    return {"sequences": len(turns), "differ": differ, "context_differs": int(context), "trained_span_differs": trained,
            "trained_span_differs_by_ending": dict(why), "trained_span_differs_where": dict(where),
            "appended_tokens": dict(appended)}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "default.yaml")
    parser.add_argument("--tasks", type=int, default=24, help="training tasks (one rollout each, as the default)")
    parser.add_argument("--best-of", type=int, default=1,
                        help="method.best_of for the collection (1 = rollouts only, fast; 0 = the config's own)")
    parser.add_argument("--out", type=Path, default=None, help="write the counts as JSON here")
    args = parser.parse_args(argv)

    from agentloop.algorithms.base import Collector, TaskSet
    from agentloop.config import load_config
    from agentloop.improve import env_factory
    from agentloop.improve_config import ImproveConfig
    from agentloop.policies.hf import HFPolicy
    from agentloop.registry import make_algorithm
    from agentloop.training.data import chat_example, turn_example
    from agentloop.types import SamplingParams, assistant

    started = time.perf_counter()
    cfg = load_config(ImproveConfig, args.config)
    method = cfg.method if args.best_of == 0 else cfg.method.model_copy(update={"best_of": args.best_of})
    algorithm = make_algorithm(method)
    policy = HFPolicy(model=cfg.model)
    tokenizer = policy.tokenizer
    c = cfg.collect
    sampling = SamplingParams(temperature=c.temperature, top_p=c.top_p, max_new_tokens=c.max_new_tokens, stop=c.stop,
                              seed=cfg.seed * 1000 + 1, return_logprobs=True)
    tasks = TaskSet(make_env=env_factory(cfg.env, "train"), indices=tuple(range(args.tasks)))
    collector = Collector(algorithm.collection_policy(policy), sampling, max_concurrency=c.batch_size)
    rollouts = collector.collect(algorithm.specs(1, tasks))
    branches = collector.collect(algorithm.branch_specs(1, tasks, rollouts))
    collected = time.perf_counter() - started
    episodes = [*rollouts, *branches]
    turns = [t for e in episodes if e.error is None for t in e.turns]
    missing = sum(t.token_ids is None or t.prompt_token_ids is None for t in turns)
    if missing:
        print(f"{missing} turns carry no ids (a teacher's, or a backend without ids): left out", file=sys.stderr)
    turns = [t for t in turns if t.token_ids is not None and t.prompt_token_ids is not None]
    max_len = cfg.train.max_len

    def rendered(turn: Any) -> Any:
        return chat_example(tokenizer, [*turn.observation, assistant(turn.action)], train="last")

    # The default method's own selection, in the order RISE.examples builds it.
    from agentloop.algorithms.rise import best_turns, rise_training_turns

    rolls = [e for e in episodes if e.metadata.get("phase") != "branch"]
    kept = [t for t, _, _ in rise_training_turns(rolls, method.filter, best_turns(rolls, branches)
                                                 if method.best_of > 1 else None)]
    result = {
        "config": str(args.config.relative_to(ROOT) if args.config.is_relative_to(ROOT) else args.config),
        "model": cfg.model or "embedded SmolLM2-135M-Instruct (bf16, CPU)",
        "tasks": args.tasks, "best_of": method.best_of, "episodes": len(rollouts), "branch_episodes": len(branches),
        "collect_seconds": round(collected, 1),
        "all_turns": {"rendered": compare(tokenizer, turns, [rendered(t) for t in turns], list(c.stop), max_len),
                      "sampled": compare(tokenizer, turns, [turn_example(tokenizer, t) for t in turns], list(c.stop),
                                         max_len)},
        "method_examples": {"rendered": compare(tokenizer, kept, [rendered(t) for t in kept], list(c.stop), max_len),
                            "sampled": compare(tokenizer, kept, algorithm.examples(episodes, tokenizer), list(c.stop),
                                               max_len)},
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(result, indent=2))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
