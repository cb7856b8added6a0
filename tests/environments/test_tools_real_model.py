"""The embedded default model plays the tool environments end to end (parsing real generations)."""

from __future__ import annotations

import pytest

from agentloop import Job, SamplingParams, rollout


@pytest.mark.slow
def test_default_model_runs_function_calling_and_calc_math():
    from agentloop.policies.hf import HFPolicy

    policy = HFPolicy()
    jobs = [Job(env="tools/function-calling-v0", options={"index": i}) for i in range(1)]
    jobs.append(Job(env="tools/calc-math-v0", seed=0, make_kwargs={"max_replies": 2}))
    episodes = rollout(jobs, policy, sampling=SamplingParams(max_new_tokens=32))
    for ep in episodes:
        assert ep.error is None, ep.error
        assert ep.turns and (ep.turns[-1].terminated or ep.turns[-1].truncated)
        assert isinstance(ep.turns[-1].info["feedback"], str) and isinstance(ep.turns[-1].info["success"], bool)
