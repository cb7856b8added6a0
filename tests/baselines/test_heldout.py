"""Held-out evaluation of a model through agentloop.evaluation: protocols from one shared first attempt, per-protocol
episodes sorted by task, and the shared report's figures."""

from __future__ import annotations

import json
import re

import pytest
from agentloop.policies.scripted import ScriptedPolicy

from agentloop.baselines.heldout import HeldOutTasks, attempts_of, eval_config, evaluate_model, finished_twin, ops_of
from agentloop.evaluation.selfcorrection import self_correction


def _fix_subtractions(conversation) -> str:
    """Right at once on additions; wrong then right on subtractions; always wrong on products."""
    q = re.search(r"What is (.*)\?", conversation[0].content).group(1)
    value = eval(q.replace("x", "*"))  # noqa: S307 - the environment's own arithmetic
    tries = sum(m.role == "assistant" for m in conversation)
    right = "+" in q or ("-" in q and tries >= 1)
    return f"Answer: {value if right else value + 1}"


def test_evaluate_model_plays_each_protocol_from_one_first_attempt_and_tags_operations(tmp_path):
    settings = HeldOutTasks(env="math/arith-v0", kwargs={"difficulty": 6, "split": "test"}, tasks=40,
                            protocols="retry,binary")
    eps = evaluate_model(None, settings, tmp_path / "ev", policy=ScriptedPolicy(_fix_subtractions))
    assert list(eps) == ["retry", "binary"]
    retry, binary = eps["retry"], eps["binary"]
    attempts, ops = attempts_of(retry, 2), ops_of(retry)
    assert len(attempts) == 40 and set(ops) == {"add", "sub", "sub_neg", "mul"}
    assert [e.metadata["task_index"] for e in retry] == list(range(40))
    # retry reveals no verdict, so both attempts are always played; binary stops at a success (oracle-stopped)
    assert all(len(e.turns) == 2 for e in retry)
    assert all(len(e.turns) == (1 if op == "add" else 2) for e, op in zip(binary, ops_of(binary)))
    for a, op in zip(attempts, ops):
        assert a == {"add": [True, True], "sub": [False, True], "sub_neg": [False, True], "mul": [False, False]}[op]
    assert attempts_of(binary, 2) == attempts  # the same verdicts here, reached with and without the oracle
    report = self_correction(binary, 2, protocol="binary", oracle_stopped=True)
    assert report.acc_t2.value == pytest.approx(sum(a[1] for a in attempts) / 40) and report.oracle_stopped
    # A finished run directory is reused, not re-generated.
    again = evaluate_model(None, settings, tmp_path / "ev", policy=ScriptedPolicy("Answer: 0"))
    assert attempts_of(again["retry"], 2) == attempts
    assert not list(tmp_path.glob("*.suites.yaml"))  # the environment's kwargs go in the config, no suite file


def test_a_finished_evaluation_of_the_same_configuration_is_found_for_reuse(tmp_path):
    settings = HeldOutTasks(env="math/arith-v0", kwargs={"difficulty": 6, "split": "test"}, tasks=8,
                            protocols="retry,env")
    evaluate_model(None, settings, tmp_path / "a", policy=ScriptedPolicy(_fix_subtractions))
    assert finished_twin(eval_config(None, settings), [tmp_path / "a"]) is None  # a policy instance is not the model
    saved = tmp_path / "a" / "config.json"  # as if the embedded model had played it
    saved.write_text(json.dumps({**json.loads(saved.read_text()),
                                 "policy": eval_config(None, settings).model_dump(mode="json")["policy"]}))
    assert finished_twin(eval_config(None, settings), [tmp_path / "missing", tmp_path / "a"]) == tmp_path / "a"
    other_tasks = settings.model_copy(update={"tasks": 9})
    for cfg in (eval_config(None, settings, seed=1), eval_config(None, other_tasks),
                eval_config("some/model", settings), eval_config(None, settings, checkpoint="run/checkpoints/iter-1"),
                eval_config(None, settings, feedback_text="Try again.")):
        assert finished_twin(cfg, [tmp_path / "a"]) is None  # any difference in what is evaluated: no reuse
    (tmp_path / "a" / "metrics.json").unlink()  # unfinished: not reused
    assert finished_twin(eval_config(None, settings), [tmp_path / "a"]) is None
