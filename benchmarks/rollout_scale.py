"""Episodes per second: the single-process engine vs Ray with 1 and 2 environment workers, same work.

The environment's ``step`` burns a fixed amount of CPU (``--work-ms`` of hashing), as a verifier that
runs tests or parses a long answer would, so spreading environments over workers can show. The
policy is the scripted one (no model), generation is central (the driver batches all workers' turns).
Ray start-up and actor creation are excluded: each engine does one warm-up run first; each setting
is timed ``--repeats`` times and the best run is reported.

    python benchmarks/rollout_scale.py --episodes 64 --work-ms 20

Prints one JSON line per setting and the ratios to the single-process engine. On a shared machine
(other processes competing for the cores) the numbers are noisy; run it on an idle one for figures.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import time

from agentloop.env import Task, TaskEnv, Verdict
from agentloop.policies.scripted import ScriptedPolicy
from agentloop.rollout import Job, RolloutEngine
from agentloop.types import user


class BusyEnv(TaskEnv):
    """Reply with the task's word; ``verify`` first burns ``work_ms`` of CPU time."""

    def __init__(self, work_ms: float = 20.0, n_tasks: int = 100):
        super().__init__()
        self.work_ms, self.n_tasks = work_ms, n_tasks

    def num_tasks(self) -> int:
        return self.n_tasks

    def get_task(self, index: int) -> Task:
        return Task(id=str(index), messages=(user(f"Reply with exactly: word{index}"),), answer=f"word{index}")

    def verify(self, task: Task, action: str) -> Verdict:
        deadline = time.thread_time() + self.work_ms / 1000
        digest = b"x"
        while time.thread_time() < deadline:  # this thread's CPU time: the same work on a loaded machine
            digest = hashlib.sha256(digest).digest()
        ok = action.strip() == task.answer
        return Verdict(reward=float(ok), success=ok, feedback="" if ok else "wrong")


def reply(conversation) -> str:
    return next(m.content for m in conversation if m.role == "user").rsplit(" ", 1)[-1]


def timed(engine, jobs, repeats: int = 1) -> float:
    """Best episodes/s of ``repeats`` runs (the best is the least disturbed by other load on the machine)."""
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        episodes = engine.run(jobs)
        elapsed = time.perf_counter() - start
        assert len(episodes) == len(jobs) and all(ep.success for ep in episodes), "benchmark episodes must succeed"
        best = max(best, len(jobs) / elapsed)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=64)
    ap.add_argument("--work-ms", type=float, default=20.0, help="CPU milliseconds each environment step burns.")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=3, help="Timed runs per setting; the best is reported.")
    ap.add_argument("--num-cpus", type=int, default=None, help="CPUs for the local Ray instance (default: all).")
    args = ap.parse_args()

    import ray

    from agentloop.distributed import DistributedConfig, RayRolloutEngine

    factory = functools.partial(BusyEnv, work_ms=args.work_ms)
    jobs = [Job(env=factory, seed=s, options={"index": s}) for s in range(args.episodes)]
    warm = jobs[:4]
    rows = []
    single = RolloutEngine(ScriptedPolicy(reply))
    timed(single, warm)
    base = timed(single, jobs, args.repeats)
    rows.append({"setting": "single-process", "workers": 0, "episodes_per_s": round(base, 2), "ratio": 1.0})
    ray.init(num_cpus=args.num_cpus or os.cpu_count(), include_dashboard=False, log_to_driver=False)
    try:
        for n in args.workers:
            dist = DistributedConfig(address="local", num_workers=n, num_cpus_per_worker=1,
                                     episodes_per_worker=max(1, args.episodes // n))
            with RayRolloutEngine(ScriptedPolicy(reply), distributed=dist) as engine:
                timed(engine, warm)
                rate = timed(engine, jobs, args.repeats)
            rows.append({"setting": f"ray x{n}", "workers": n, "episodes_per_s": round(rate, 2),
                         "ratio": round(rate / base, 2)})
    finally:
        ray.shutdown()
    meta = {"episodes": args.episodes, "work_ms": args.work_ms, "repeats": args.repeats, "cpus": os.cpu_count(),
            "loadavg_1m": round(os.getloadavg()[0], 2)}
    for row in rows:
        print(json.dumps({**row, **meta}))
    print("ratios vs single-process: " + ", ".join(f"{r['setting']}={r['ratio']:.2f}x" for r in rows[1:]))


if __name__ == "__main__":
    main()
