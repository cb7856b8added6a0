"""Evaluation protocols: one shared first attempt, each protocol's text after the answers it names, per-protocol reports."""

from __future__ import annotations

import pytest
from agentloop.policies.scripted import ScriptedPolicy

from agentloop.evaluation.evaluate import EvalConfig, evaluate
from agentloop.evaluation.protocols import EvalProtocol, parse_protocols
from tests.helpers import answer_of


class Reader(ScriptedPolicy):
    """Even tasks right at once, odd ones wrong; afterwards it reads the text: "incorrect" -> fixes its answer,
    anything else ("try again") -> changes it to a wrong one. Records every conversation it answers."""

    def __init__(self):
        self.seen: list[list] = []
        super().__init__(self._reply)

    def _reply(self, conversation) -> str:
        self.seen.append(list(conversation))
        word = answer_of(conversation)
        if not any(m.role == "assistant" for m in conversation):
            return word if int(word.removeprefix("word")) % 2 == 0 else "nope"
        return word if "incorrect" in conversation[-1].content.lower() else "nope"


def _run(tmp_path, echo_ids, name="run", **kw):
    policy = Reader()
    cfg = EvalConfig(envs=[echo_ids[0]], max_attempts=2, **kw)
    return evaluate(cfg, tmp_path / name, policy=policy), policy


def test_protocols_branch_from_one_shared_first_attempt(tmp_path, echo_ids):
    res, policy = _run(tmp_path, echo_ids, protocols=["retry", "binary", "env", "critic:verifier"])
    firsts = [c for c in policy.seen if not any(m.role == "assistant" for m in c)]
    assert len(firsts) == 6  # generated once for 6 tasks, not once per protocol
    eps = res.run.episodes()
    first = {e.metadata["task_index"]: e.turns[0].action for e in eps if e.metadata["mode"] == "first"}
    played = [e for e in eps if e.metadata["mode"] == "sequential"]
    assert len(played) == 4 * 6 and all(e.turns[0].action == first[e.metadata["task_index"]] for e in played)
    p = res.metrics["protocols"]
    assert list(p) == ["retry", "binary", "env", "critic:verifier"]
    # retry: the same text after every answer, every attempt played: right answers are broken
    r = p["retry"]["overall"]
    assert not p["retry"]["oracle_stopped"] and r["acc_t1"]["value"] == 0.5 and r["acc_t2"]["value"] == 0.0
    assert r["delta_c_to_i"]["value"] == 0.5 and r["delta_i_to_c"]["value"] == 0.0
    # binary and env: "incorrect" after wrong answers only; the episode stops at a success (oracle-stopped)
    for name in ("binary", "env"):
        b = p[name]["overall"]
        assert p[name]["oracle_stopped"] and b["oracle_stopped"] and b["protocol"] == name
        assert b["acc_t1"]["value"] == 0.5 and b["acc_t2"]["value"] == 1.0 and b["delta_i_to_c"]["value"] == 0.5
    env_text = next(e for e in played if e.metadata["protocol"] == "env" and len(e.turns) == 2).turns[1].observation[-1]
    assert "should have 5 characters" in env_text.content  # the environment's own feedback, not the answer
    assert p["critic:verifier"]["overall"]["critic"]["verdict_accuracy"]["n"] == 3  # the 3 wrong first answers
    assert res.metrics["overall"] == p["retry"]["overall"]  # the first protocol is also the top-level block


def test_feedback_text_is_the_methods_own_after_the_answers_the_protocol_names(tmp_path, echo_ids):
    text = "Your answer may be incorrect; think again."
    res, _ = _run(tmp_path, echo_ids, protocols=["retry", "binary"], feedback_text=text)
    eps = [e for e in res.run.episodes() if e.metadata["mode"] == "sequential"]
    retry = [e for e in eps if e.metadata["protocol"] == "retry"]
    binary = [e for e in eps if e.metadata["protocol"] == "binary"]
    assert all(len(e.turns) == 2 and e.turns[1].observation[-1].content == text for e in retry)
    assert all(len(e.turns) == (2 if e.metadata["task_index"] % 2 else 1) for e in binary)  # right ones stop
    assert all(e.turns[1].observation[-1].content == text for e in binary if len(e.turns) == 2)


def test_a_resumed_run_branches_from_the_recorded_first_attempts(tmp_path, echo_ids):
    seen = []

    def crash(ep):
        seen.append(ep)
        if len(seen) == 8:  # killed after the 6 first attempts and 2 retry episodes
            raise KeyboardInterrupt

    cfg = EvalConfig(envs=[echo_ids[0]], max_attempts=2, protocols=["retry", "binary"])
    with pytest.raises(KeyboardInterrupt):
        evaluate(cfg, tmp_path / "run", policy=Reader(), on_episode=crash)
    policy = Reader()
    res = evaluate(cfg, tmp_path / "run", policy=policy, resume=True)
    assert res.new_episodes == 10 and not [c for c in policy.seen if len(c) == 1]  # no first attempt generated again
    assert res.metrics["protocols"]["binary"]["overall"]["acc_t2"]["value"] == 1.0


def test_paired_gains_over_another_run_under_each_protocol(tmp_path, echo_ids):
    base, _ = _run(tmp_path, echo_ids, name="base", protocols=["retry", "binary"])
    worse = ScriptedPolicy("nope")
    cfg = EvalConfig(envs=[echo_ids[0]], max_attempts=2, protocols=["retry", "binary"], versus=[str(base.run.path)])
    res = evaluate(cfg, tmp_path / "worse", policy=worse)
    vs = res.metrics["versus"][str(base.run.path)]
    assert set(vs) == {"retry", "binary"}
    assert vs["binary"]["gain_acc_t1"]["value"] == pytest.approx(-0.5) and vs["binary"]["n"] == 6
    assert vs["binary"]["gain_acc_t2"]["value"] == pytest.approx(-1.0)
    assert vs["retry"]["gain_delta"]["value"] == pytest.approx(0.5)  # base broke its right answers, this one had none


def test_envs_take_kwargs_and_protocol_config_rules(tmp_path, echo_ids):
    cfg = EvalConfig(envs=[{"env": echo_ids[0], "kwargs": {"n_tasks": 2}}], max_attempts=1)
    res = evaluate(cfg, tmp_path / "r", policy=Reader())
    assert list(res.metrics["per_env"]) == [f"{echo_ids[0]}[n_tasks=2]"] and res.metrics["overall"]["n_episodes"] == 2
    assert [p.name for p in EvalConfig(envs=["a/b-v0"], protocols="retry,env").protocol_list()] == ["retry", "env"]
    labelled = EvalConfig(envs=["math/arith-v0[difficulty=6,split=test]"]).envs[0]
    assert (labelled.env, labelled.kwargs, labelled.label) == ("math/arith-v0", {"difficulty": 6, "split": "test"},
                                                               "math/arith-v0[difficulty=6,split=test]")
    with pytest.raises(ValueError, match="not both"):
        EvalConfig(envs=["a/b-v0"], protocols=["retry"], feedback="binary")
    with pytest.raises(ValueError, match="needs a critic"):
        EvalConfig(envs=["a/b-v0"], protocols=["critic"])
    with pytest.raises(ValueError, match="twice"):
        parse_protocols("retry,retry")
    with pytest.raises(ValueError, match="unknown protocol"):
        EvalProtocol.parse("verdict")
    assert EvalProtocol.parse("binary").attempt_kwargs("T") == {"feedback": "binary", "stop_on_success": True,
                                                                "binary_wrong_template": "T"}
    assert EvalProtocol.parse("retry").attempt_kwargs("T") == {"feedback": "none", "stop_on_success": False,
                                                               "none_template": "T"}
    assert not EvalProtocol.parse("critic-all:llm").oracle_stopped and EvalProtocol.parse("critic:llm").oracle_stopped


def test_cli_evaluates_several_protocols_and_compares_with_an_earlier_run(tmp_path, echo_ids):
    from typer.testing import CliRunner

    from agentloop.cli import app

    base = ["eval", "--policy", "scripted", "-p", "default=nope", "--env", echo_ids[0], "--max-attempts", "2",
            "--protocols", "retry,binary,env", "--quiet", "--no-report"]
    r = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "a")])
    assert r.exit_code == 0, r.output
    assert "under binary (oracle-stopped" in r.output and "under retry (no oracle" in r.output
    r = CliRunner().invoke(app, [*base, "--versus", str(tmp_path / "a"), "--out", str(tmp_path / "b")])
    assert r.exit_code == 0, r.output
    assert f"this run - {tmp_path / 'a'} under env (paired, 6 problems): Acc@t1 0.0" in " ".join(r.output.split())


def test_an_errored_first_attempt_decides_every_protocol_episode(tmp_path):
    """A first attempt that failed (here: the policy raised) is the episode under every protocol: the same error,
    counted by the report's rule (wrong at every attempt), nothing played again."""
    from agentloop.registry import envs
    from tests.helpers import EchoEnv

    class Flaky(ScriptedPolicy):
        def __init__(self):
            super().__init__(lambda c: answer_of(c))

        def generate(self, conversations, sampling, **kw):
            if any("word1" in c[0].content for c in conversations):
                raise RuntimeError("policy down")
            return super().generate(conversations, sampling, **kw)

    with envs.registered("test/EvalFlaky-v0", EchoEnv, kwargs={"n_tasks": 3}):
        cfg = EvalConfig(envs=["test/EvalFlaky-v0"], max_attempts=2, protocols=["retry", "binary"])
        res = evaluate(cfg, tmp_path / "r", policy=Flaky())
    eps = [e for e in res.run.episodes() if e.metadata["mode"] == "sequential"]
    bad = [e for e in eps if e.metadata["task_index"] == 1]
    assert len(bad) == 2 and all(e.error is not None and e.error.stage == "policy" for e in bad)
    assert len({e.id for e in res.run.episodes()}) == len(res.run.episodes())
    for name in ("retry", "binary"):
        b = res.metrics["protocols"][name]["overall"]
        assert b["n_errors"] == 1 and b["acc_t1"]["value"] == pytest.approx(2 / 3)
        assert b["acc_t2"]["value"] == pytest.approx(2 / 3)
