"""Rollout engine overhead: two-attempt episodes per second, engine vs a bare hand-written loop.

Both sides do the same work on the same trivial environment with the scripted policy: reset, a
wrong first attempt, environment feedback, a right second attempt, and both keep what happened
(observations, actions, rewards, infos, the final conversation). The bare loop calls the env and
the policy directly and keeps plain tuples; the engine batches, records typed and validated
records and isolates failures. Runs alternate between the two sides and are timed in process CPU
time (the VM's wall clock is noisy), best of ``--repeats`` each. Target (issue 2): engine time <= 1.5x the bare loop and
>= 2,000 episodes/s on one core.

    python benchmarks/rollout_overhead.py [--episodes 4000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import gc
import os
import time

from agentloop.env import Task, TaskEnv, Verdict
from agentloop.policies.scripted import ScriptedPolicy
from agentloop.rollout import Job, RolloutConfig, RolloutEngine
from agentloop.types import SamplingParams, user
from agentloop.wrappers import MultiAttempt


class Parity(TaskEnv):
    """Is the task number even? Trivial verification, so the benchmark measures the machinery."""

    def num_tasks(self) -> int:
        return 1000

    def get_task(self, index: int) -> Task:
        return Task(id=str(index), messages=(user(f"Is {index} even? Answer yes or no."),),
                    answer="yes" if index % 2 == 0 else "no")

    def verify(self, task: Task, action: str) -> Verdict:
        ok = action.strip() == task.answer
        return Verdict(reward=float(ok), success=ok, feedback="" if ok else "That is not right.")


def reply(conversation) -> str:
    """Wrong on the first attempt, right on the second."""
    if not any(m.role == "assistant" for m in conversation):
        return "maybe"
    number = int(conversation[0].content.split()[1])
    return "yes" if number % 2 == 0 else "no"


def make_env() -> MultiAttempt:
    return MultiAttempt(Parity(), max_attempts=2, feedback="env")


def bare_loop(n: int, policy: ScriptedPolicy, sampling: SamplingParams) -> float:
    """The same episodes with no engine: batched generation turn by turn, keeping the same information
    the engine keeps (each turn's observation, action, reward and info; the final conversation) as
    plain tuples and lists instead of typed, validated records."""
    envs = [make_env() for _ in range(n)]
    obs = [env.reset(seed=i)[0] for i, env in enumerate(envs)]
    turns: list[list[tuple]] = [[] for _ in range(n)]
    finals: list[list] = [[] for _ in range(n)]
    active = list(range(n))
    while active:
        outs = policy.generate([obs[i] for i in active], sampling)
        still = []
        for i, out in zip(active, outs):
            o, r, term, trunc, info = envs[i].step(out.text)
            turns[i].append((obs[i], out.text, r, info))
            obs[i] = o
            if term or trunc:
                finals[i] = o
                envs[i].close()
            else:
                still.append(i)
        active = still
    return sum(t[2] for episode in turns for t in episode)


def engine_run(n: int, policy: ScriptedPolicy, sampling: SamplingParams) -> float:
    engine = RolloutEngine(policy, config=RolloutConfig(sampling=sampling, max_concurrency=n))
    episodes = engine.run([Job(env=make_env, seed=i) for i in range(n)])
    assert all(e.error is None for e in episodes)
    return sum(e.total_reward for e in episodes)


def timed(fn, *args) -> tuple[float, float]:
    gc.collect()  # start each run from the same heap state: leftover garbage of the previous run skews it
    t = time.process_time()  # CPU time of this process: robust to other load on the machine
    result = fn(*args)
    return time.process_time() - t, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--episodes", type=int, default=4000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core, as the target says
    policy, sampling = ScriptedPolicy(reply), SamplingParams()
    # Interleaved runs, best of each: both sides see the same machine state over the run.
    bare_times, engine_times = [], []
    for _ in range(args.repeats):
        t, r_bare = timed(bare_loop, args.episodes, policy, sampling)
        bare_times.append(t)
        t, r_engine = timed(engine_run, args.episodes, policy, sampling)
        engine_times.append(t)
    t_bare, t_engine = min(bare_times), min(engine_times)
    assert r_bare == r_engine == args.episodes, (r_bare, r_engine)
    ratio = t_engine / t_bare
    print(f"episodes: {args.episodes} two-attempt episodes, best of {args.repeats} interleaved runs each, one core")
    print(f"bare loop: {args.episodes / t_bare:,.0f} episodes/s")
    print(f"engine:    {args.episodes / t_engine:,.0f} episodes/s")
    print(f"ratio engine/bare time: {ratio:.2f}x (target <= 1.5x); "
          f"engine >= 2,000 episodes/s: {'yes' if args.episodes / t_engine >= 2000 else 'NO'}")


if __name__ == "__main__":
    main()
