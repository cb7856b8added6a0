"""critique_all in evaluation: every answer critiqued (no oracle), the episode stops when the critic approves."""

from __future__ import annotations

import pytest
from agentloop.policies.scripted import ScriptedPolicy
from typer.testing import CliRunner

from agentloop.errors import ConfigError
from agentloop.evaluation.evaluate import EvalConfig, evaluate
from agentloop.registry import make
from agentloop.runs import RunDir
from agentloop.types import Critique, CritiqueRequest


class ApprovingCritic:
    """A scripted critic that approves every answer and remembers what it was asked."""

    def __init__(self) -> None:
        self.requests: list[CritiqueRequest] = []

    def critique(self, requests: list[CritiqueRequest]) -> list[Critique]:
        self.requests.extend(requests)
        return [Critique(text="Looks right.", final_correct=True, critic="approve") for _ in requests]


def test_approving_critic_stops_after_one_attempt(tmp_path, echo_ids):
    cfg = EvalConfig(envs=[echo_ids[1]], max_attempts=3, feedback="critic", critic={"id": "llm"}, critique_all=True)
    critic = ApprovingCritic()
    res = evaluate(cfg, tmp_path / "all", policy=ScriptedPolicy(["nope"]), critic=critic)
    eps = [e for e in res.run.episodes() if e.metadata["mode"] == "sequential"]  # not the shared first attempts
    assert len(eps) == 3 and all(len(ep.turns) == 1 and not ep.success for ep in eps)
    assert len(critic.requests) == 3 and all(r.success is None for r in critic.requests)  # no verdict leaked
    assert res.run.read_config()["critique_all"] is True
    # the oracle mode with the same critic keeps going: wrong answers are critiqued and retried up to k
    oracle = evaluate(cfg.model_copy(update={"critique_all": False}), tmp_path / "oracle",
                      policy=ScriptedPolicy(["nope"]), critic=ApprovingCritic())
    assert all(len(ep.turns) == 3 for ep in oracle.run.episodes() if ep.metadata["mode"] == "sequential")


def test_critique_all_needs_critic_feedback_and_attempts(echo_ids):
    with pytest.raises(ValueError, match="critique_all"):
        EvalConfig(envs=[echo_ids[0]], max_attempts=2, feedback="binary", critique_all=True)
    with pytest.raises(ValueError, match="max_attempts >= 2"):
        EvalConfig(envs=[echo_ids[0]], max_attempts=1, feedback="critic", critic={"id": "llm"}, critique_all=True)
    with pytest.raises(ConfigError, match="max_attempts > 1"):
        make(echo_ids[0], max_attempts=1, critique_all=True)
    env = make(echo_ids[0], max_attempts=2, feedback="critic", critique_all=True)
    assert env.config.critique_all and not env.config.stops_on_success


def test_cli_critique_all_with_self_critiquing_llm(tmp_path, echo_ids):
    from agentloop.cli import app

    # the actor answers wrong; as its own llm critic it approves ("Correctness of the final answer: Correct")
    replies = '{"Check the answer": "Correctness of the final answer: Correct"}'
    args = ["eval", "--policy", "scripted", "-p", f"replies={replies}", "-p", "default=nope", "--env", echo_ids[1],
            "--max-attempts", "3", "--feedback", "critic", "--critic", "llm", "--quiet", "--no-report"]
    r = CliRunner().invoke(app, [*args, "--critique-all", "--out", str(tmp_path / "all")])
    assert r.exit_code == 0, r.output
    eps = [e for e in RunDir.open(tmp_path / "all").episodes() if e.metadata["mode"] == "sequential"]
    assert len(eps) == 3 and all(len(ep.turns) == 1 for ep in eps)
    r = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "oracle")])
    assert r.exit_code == 0, r.output
    assert all(len(ep.turns) == 3 for ep in RunDir.open(tmp_path / "oracle").episodes()
               if ep.metadata["mode"] == "sequential")
