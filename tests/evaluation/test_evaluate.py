"""`evaluate`: episodes and metrics in the run directory, resume without duplicates, bad input refused early."""

from __future__ import annotations

import json

import pytest
from agentloop.policies.scripted import ScriptedPolicy

from agentloop.errors import ConfigError, RegistryError
from agentloop.evaluation.evaluate import EvalConfig, evaluate, resolve_checkpoint
from agentloop.runs import RunDir, RunDirError
from tests.helpers import EchoEnv, fixer_reply


def test_eval_writes_episodes_and_hand_checkable_metrics(tmp_path, echo_ids, fixer):
    cfg = EvalConfig(envs=[echo_ids[0]], max_attempts=2, feedback="binary")
    res = evaluate(cfg, tmp_path / "run", policy=fixer)
    eps = res.run.episodes()
    assert len(eps) == 12 and res.new_episodes == 12  # 6 shared first attempts + 6 binary episodes branching from them
    keys = {ep.metadata["run_key"] for ep in eps}
    assert {"first|test/EvalEcho-v0|task=0|sample=0|seed=0", "binary|test/EvalEcho-v0|task=0|sample=0|seed=0"} <= keys
    b = res.metrics["per_env"]["test/EvalEcho-v0"]
    # tasks 0..5: t1 right for 0,3; t2 right for 0,1,3,4
    assert [a["value"] for a in b["acc_by_attempt"]] == [pytest.approx(2 / 6), pytest.approx(4 / 6)]
    assert b["delta_i_to_c"]["value"] == pytest.approx(2 / 6) and b["delta_c_to_i"]["value"] == 0
    assert b["fix_rate"]["value"] == pytest.approx(0.5) and b["fix_rate"]["n"] == 4
    assert json.loads((res.run.path / "metrics.json").read_text())["max_attempts"] == 2
    assert res.run.read_config()["policy"]["id"] == "instance:ScriptedPolicy"


def test_eval_resumes_without_duplicates(tmp_path, echo_ids):
    cfg = EvalConfig(envs=list(echo_ids), max_attempts=2, max_concurrency=2)
    seen = []

    def crash(ep):
        seen.append(ep)
        if len(seen) == 4:
            raise KeyboardInterrupt  # a kill after 4 finished episodes

    with pytest.raises(KeyboardInterrupt):
        evaluate(cfg, tmp_path / "run", policy=ScriptedPolicy(fixer_reply), on_episode=crash)
    assert len(RunDir.open(tmp_path / "run").episodes()) == 4
    with pytest.raises(RunDirError, match="--resume"):
        evaluate(cfg, tmp_path / "run", policy=ScriptedPolicy(fixer_reply))
    res = evaluate(cfg, tmp_path / "run", policy=ScriptedPolicy(fixer_reply), resume=True)
    keys = [ep.metadata["run_key"] for ep in res.run.episodes()]
    assert res.new_episodes == 14 and len(keys) == 18 and len(set(keys)) == 18  # 9 first attempts + 9 env episodes
    again = evaluate(cfg, tmp_path / "run", policy=ScriptedPolicy(fixer_reply), resume=True)
    assert again.new_episodes == 0 and again.metrics["overall"]["n_episodes"] == 9


def test_samples_seeds_and_compare(tmp_path, echo_ids, fixer):
    cfg = EvalConfig(envs=[echo_ids[1]], max_attempts=2, n=2, seeds=[0, 1], compare=True, sampling={"temperature": 0.7})
    res = evaluate(cfg, tmp_path / "run", policy=fixer)
    eps = res.run.episodes()
    assert len(eps) == 3 * 2 * (2 + 2 + 2)  # tasks x seeds x (n first attempts + n sequential + K parallel)
    b = res.metrics["overall"]
    assert b["n_episodes"] == 12 and "pass_at_k" in b and "confidence_critique" in b
    cm = b["compute_matched"]
    assert cm["n_problems"] == 6 and cm["seq_final"]["value"] == pytest.approx(4 / 6)
    assert cm["par_majority"]["value"] == pytest.approx(2 / 6)  # the parallel samples never see feedback


def test_limit_and_bad_input_fail_before_work(tmp_path, echo_ids, fixer):
    res = evaluate(EvalConfig(envs=[echo_ids[0]], max_attempts=1, limit=2), tmp_path / "r", policy=fixer)
    assert len(res.run.episodes()) == 2
    with pytest.raises(RegistryError, match="test/Nope-v0"):
        evaluate(EvalConfig(envs=["test/Nope-v0"]), tmp_path / "r2", policy=fixer)
    assert not (tmp_path / "r2").exists()
    with pytest.raises(ConfigError, match="does not exist"):
        evaluate(EvalConfig(envs=[echo_ids[0]], policy={"checkpoint": str(tmp_path / "none")}), tmp_path / "r3")
    assert not (tmp_path / "r3").exists()
    with pytest.raises(ConfigError, match="unknown suite"):
        evaluate(EvalConfig(suite="no-such-suite"), tmp_path / "r4", policy=fixer)
    empty = tmp_path / "suites.yaml"
    empty.write_text("mine:\n  envs: []\n")
    with pytest.raises(ConfigError, match="at least one environment"):
        evaluate(EvalConfig(suite="mine", suites_file=str(empty)), tmp_path / "r5", policy=fixer)


def test_user_suite_with_kwargs_and_labels(tmp_path, echo_ids, fixer):
    f = tmp_path / "suites.yaml"
    f.write_text(f"mine:\n  envs:\n    - {{env: {echo_ids[0]}, kwargs: {{n_tasks: 2}}}}\n    - {{env: {echo_ids[1]}, limit: 1}}\n")
    res = evaluate(EvalConfig(suite="mine", suites_file=str(f), max_attempts=1), tmp_path / "r", policy=fixer)
    assert sorted(res.metrics["per_env"]) == ["test/EvalEcho-v0[n_tasks=2]", "test/EvalEchoB-v0"]
    assert res.metrics["overall"]["n_episodes"] == 3


def test_config_rules_name_the_problem():
    with pytest.raises(ValueError, match="exactly one of envs"):
        EvalConfig()
    with pytest.raises(ValueError, match="temperature > 0"):
        EvalConfig(envs=["a/b-v0"], n=2)
    with pytest.raises(ValueError, match="needs a critic"):
        EvalConfig(envs=["a/b-v0"], feedback="critic")
    with pytest.raises(ValueError, match="max_attempts >= 2"):
        EvalConfig(envs=["a/b-v0"], max_attempts=1, compare=True, sampling={"temperature": 1.0})


def test_resolve_checkpoint(tmp_path):
    full = tmp_path / "full"
    full.mkdir()
    (full / "config.json").write_text("{}")
    assert resolve_checkpoint(str(full)) == {"model": str(full)}
    run = RunDir.create(tmp_path / "run")
    with run.checkpoint("iter-1") as d:
        (d / "adapter_config.json").write_text("{}")
    assert resolve_checkpoint(str(run.path)) == {"adapter": str(run.path / "checkpoints" / "iter-1")}
    (tmp_path / "junk").mkdir()
    with pytest.raises(ConfigError, match="not a model checkpoint"):
        resolve_checkpoint(str(tmp_path / "junk"))


def test_critic_feedback_reports_critic_quality(tmp_path, echo_ids, fixer):
    cfg = EvalConfig(envs=[echo_ids[0]], max_attempts=2, feedback="critic", critic={"id": "verifier"})
    res = evaluate(cfg, tmp_path / "run", policy=fixer)
    critic = res.metrics["overall"]["critic"]
    # only the 4 wrong first answers are critiqued (oracle mode); the verifier is always right
    assert critic["verdict_accuracy"]["n"] == 4 and critic["verdict_accuracy"]["value"] == 1.0
    assert critic["wrong_recall"]["value"] == 1.0
    assert critic["closed_loop_accuracy"]["value"] == pytest.approx(4 / 6)


class _TestsEnv(EchoEnv):
    """EchoEnv whose verdict reports per-episode figures, like the code and travel environments do."""

    def verify(self, task, action):
        v = super().verify(task, action)
        passed = 2 if v.success else int(task.id) % 2
        info = {"tests_passed": passed, "tests_total": 2, "delivered": bool(action), "extracted_answer": action[:4]}
        return v.model_copy(update={"info": info})


def test_environment_figures_are_aggregated(tmp_path, fixer):
    from agentloop.registry import envs

    with envs.registered("test/EvalTests-v0", _TestsEnv, kwargs={"n_tasks": 4}):
        res = evaluate(EvalConfig(envs=["test/EvalTests-v0"], max_attempts=1), tmp_path / "r", policy=fixer)
    m = res.metrics["overall"]["env_metrics"]
    # tasks 0..3 answered word0, nope, nope, word3 -> passed 2, 1, 0, 2 of 2 each
    assert m["tests_passed"]["value"] == pytest.approx(5 / 4) and m["tests_passed"]["method"] == "bootstrap"
    assert m["tests_micro"]["value"] == pytest.approx(5 / 8)
    assert m["delivered"]["value"] == 1.0 and m["delivered"]["method"] == "wilson"
    assert "extracted_answer" not in m


def test_evaluate_prints_nothing_and_reports_progress_to_a_callback(echo_ids, tmp_path, capsys):
    seen = []
    evaluate(EvalConfig(envs=[echo_ids[0]], max_attempts=1, limit=3), tmp_path / "r", policy=ScriptedPolicy(fixer_reply),
             progress=lambda *args: seen.append(args))
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""  # a library call: bars are the CLI's (commands/eval.py)
    assert seen[0] == (echo_ids[0], 0, 3, 0) and seen[-1][1:3] == (3, 3) and len(seen) == 4


def test_old_attempt_names_are_refused_with_the_new_spelling():
    with pytest.raises(ValueError, match="'k' was renamed: write max_attempts: 3"):
        EvalConfig(envs=["a/b-v0"], k=3)
    with pytest.raises(ValueError, match="'attempts' was renamed: write max_attempts: 2"):
        EvalConfig(envs=["a/b-v0"], attempts=2, max_attempts=2)
