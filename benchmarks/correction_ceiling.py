"""How much a second attempt *could* fix: the model's own other answers where its greedy answer is wrong.

A self-correction method that learns "after a wrong verdict, answer differently" can at best turn a greedy
mistake into the answer the model would give next. Whether that is worth training for depends on how often
the model's other answers are right where its first one is wrong; this script measures it on held-out tasks,
before any training (or for a checkpoint: ``--adapter``):

* greedy first attempts (Acc@t1, as evaluation plays them);
* per greedy failure, ``--samples`` fresh answers to the question alone at ``--temperature``: the share of
  samples that are right, the share of failures with at least one right sample (what best-of-N fresh
  candidates can find to train on: RISE ``candidates: question``), and whether the *next answer* is right:
  the most frequent sampled answer other than the greedy one (answers compared as the verdict extracted them,
  ``info["extracted_answer"]``, else as text). A model that, told "wrong", gave exactly its next answer would
  fix that share of failures: ``next_answer_ceiling`` = failures fixed / tasks, the delta(t1, t2) it implies;
* per greedy failure, ``--samples`` second attempts after each ``--protocols`` feedback (built by the same
  ``MultiAttempt`` wrapper evaluation uses, so the text is the protocol's): the share right and the share
  that repeat the first answer.

    OMP_NUM_THREADS=2 python benchmarks/correction_ceiling.py                      # arithmetic level 6, 300 tasks
    python benchmarks/correction_ceiling.py --env code/tasks-v0 \\
        --kwargs '{"path": "configs/efficacy/data/code-tasks-families.jsonl"}' --tasks 84 --max-new-tokens 128 \\
        --stop '\\n```\\n' --json /tmp/code.json

Generation is the embedded model through ``HFPolicy`` (bf16 on CPU), seeded; the figures are counts over
the named tasks, printed and written with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from typing import Any

import agentloop
from agentloop.algorithms.rise import RISE_FEEDBACK
from agentloop.evaluation.protocols import EvalProtocol
from agentloop.types import SamplingParams
from agentloop.wrappers import MultiAttempt


def answer_of(verdict: Any, text: str) -> str:
    """What two attempts are compared by: the verdict's extracted answer, else the reply's text."""
    extracted = (verdict.info or {}).get("extracted_answer")
    return str(extracted) if extracted is not None else text.strip()


def judged(env: Any, task: Any, completions: list[Any]) -> list[tuple[str, bool]]:
    """(answer, right) of each completion for ``task``."""
    return [(answer_of(v, c.text), bool(v.success)) for c in completions for v in [env.verify(task, c.text)]]


def next_answer_right(greedy: str, samples: list[tuple[str, bool]]) -> bool:
    """Whether the most frequent sampled answer other than ``greedy`` is right (ties: the first sampled)."""
    others = Counter(a for a, _ in samples if a != greedy)
    if not others:
        return False
    top = others.most_common(1)[0][0]
    return any(ok for a, ok in samples if a == top)


def ceiling(policy: Any, env_id: str, kwargs: dict[str, Any], tasks: int, samples: int, temperature: float,
            max_new_tokens: int, stop: tuple[str, ...], protocols: list[str], seed: int = 0) -> dict[str, Any]:
    env = agentloop.make(env_id, **kwargs).unwrapped
    n = min(tasks, env.num_tasks())
    items = [env.get_task(i) for i in range(n)]
    greedy_params = SamplingParams(temperature=0.0, max_new_tokens=max_new_tokens, stop=stop)
    sampled = SamplingParams(temperature=temperature, max_new_tokens=max_new_tokens, stop=stop, n=samples, seed=seed)
    t0 = time.perf_counter()
    greedy = [c.text for c in policy.generate([list(t.messages) for t in items], greedy_params)]
    verdicts = [env.verify(t, g) for t, g in zip(items, greedy)]
    wrong = [i for i in range(n) if not verdicts[i].success]
    fresh = policy.generate([list(items[i].messages) for i in wrong], sampled)
    right_samples = any_right = next_right = repeats = 0
    for j, i in enumerate(wrong):
        outs = judged(env, items[i], fresh[j * samples:(j + 1) * samples])
        first = answer_of(verdicts[i], greedy[i])
        right_samples += sum(ok for _, ok in outs)
        any_right += any(ok for _, ok in outs)
        next_right += next_answer_right(first, outs)
        repeats += sum(a == first for a, _ in outs)
    out: dict[str, Any] = {
        "env": env_id, "kwargs": kwargs, "tasks": n, "samples": samples, "temperature": temperature,
        "acc_t1": round(1 - len(wrong) / n, 4), "failures": len(wrong),
        "fresh": {"right_share": round(right_samples / max(len(wrong) * samples, 1), 4),
                  "failures_with_a_right_sample": any_right, "next_answer_right": next_right,
                  "repeat_share": round(repeats / max(len(wrong) * samples, 1), 4),
                  "next_answer_ceiling": round(next_right / n, 4)},
        "after_feedback": {},
    }
    for name in protocols:
        kw = EvalProtocol.parse(name).attempt_kwargs(method_text=RISE_FEEDBACK)
        convs = []
        for i in wrong:
            wrapped = MultiAttempt(agentloop.make(env_id, **kwargs), max_attempts=2, **kw)
            wrapped.reset(options={"index": i})
            convs.append(list(wrapped.step(greedy[i])[0]))
        second = policy.generate(convs, sampled)
        right = any2 = rep = 0
        for j, i in enumerate(wrong):
            first = answer_of(verdicts[i], greedy[i])
            outs = judged(env, items[i], second[j * samples:(j + 1) * samples])
            right += sum(ok for _, ok in outs)
            any2 += any(ok for _, ok in outs)
            rep += sum(a == first for a, _ in outs)
        total = max(len(wrong) * samples, 1)
        out["after_feedback"][name] = {"right_share": round(right / total, 4), "failures_with_a_right_sample": any2,
                                       "repeat_share": round(rep / total, 4), "example": convs[0][-1].content[:300]
                                       if convs else None}
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--env", default="math/arith-v0")
    ap.add_argument("--kwargs", default='{"difficulty": 6, "split": "test"}', help="JSON keyword arguments of the env.")
    ap.add_argument("--tasks", type=int, default=300)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--stop", default="\n\n", help="Stop string (Python escapes allowed).")
    ap.add_argument("--protocols", default="binary,env")
    ap.add_argument("--adapter", default=None, help="A LoRA adapter folder (a trained checkpoint) on the default model.")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    from agentloop.policies.hf import HFPolicy

    policy = HFPolicy(adapter=args.adapter, max_batch_size=args.batch)
    stop = (args.stop.encode().decode("unicode_escape"),)
    res = ceiling(policy, args.env, json.loads(args.kwargs), args.tasks, args.samples, args.temperature,
                  args.max_new_tokens, stop, [p for p in args.protocols.split(",") if p])
    f = res["fresh"]
    print(f"{res['env']} {res['kwargs']}: {res['tasks']} tasks, Acc@t1 {res['acc_t1']:.3f}, {res['failures']} greedy failures")
    print(f"fresh answers ({res['samples']} per failure, T={res['temperature']}): {f['right_share']:.1%} right, "
          f"{f['failures_with_a_right_sample']} failures with a right one, next answer right for "
          f"{f['next_answer_right']} (ceiling of 'answer differently': +{100 * f['next_answer_ceiling']:.1f} points), "
          f"{f['repeat_share']:.1%} repeat the greedy answer")
    for name, s in res["after_feedback"].items():
        print(f"second attempts after {name}: {s['right_share']:.1%} right, {s['failures_with_a_right_sample']} failures "
              f"with a right one, {s['repeat_share']:.1%} repeat the first answer")
    print(f"wall {res['wall_s']} s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=1)


if __name__ == "__main__":
    main()
