"""MBPP and task-file code environments: splits, prompt, check_env, gold solutions, MultiAttempt modes."""

from __future__ import annotations

import json

import pytest

import agentloop
from agentloop.environments.code import run_task_tests
from agentloop.environments.code.envs import (CODE_RETRY_INSTRUCTION, MBPP_SPLITS, CodeTaskEnv, defines_named, load_mbpp,
                                             load_task_file)
from agentloop.errors import ConfigError
from agentloop.sandbox.local import bwrap_status

pytestmark = pytest.mark.skipif(not bwrap_status()[0], reason=f"bubblewrap unavailable: {bwrap_status()[1]}")


def fenced(code: str) -> str:
    return f"Here is my solution:\n```python\n{code}\n```"


@pytest.mark.parametrize(("split", "n"), [("prompt", 10), ("test", 500), ("validation", 90), ("train", 374)])
def test_mbpp_splits_and_check_env(split, n):
    env = agentloop.make("code/mbpp-v0", split=split)
    assert env.unwrapped.num_tasks() == n
    lo, hi = MBPP_SPLITS[split]
    ids = [env.unwrapped.get_task(i).metadata["task_id"] for i in range(n)]
    assert ids == list(range(lo, hi + 1))
    agentloop.check_env(env)


def test_mbpp_prompt_format_and_retry_instruction():
    env = agentloop.make("code/mbpp-v0", split="test")
    obs, info = env.reset(options={"index": 0})
    assert info["task_id"] == "mbpp-11"
    assert obs[0].content == (
        "Write a python function to remove first and last occurrence of a given character from the string.\n"
        "Your code should pass this test:\nassert remove_Occ(\"hello\",\"l\") == \"heo\"\n"
        "Write the Python function in a ```python code block."
    )
    assert env.unwrapped.retry_instruction == CODE_RETRY_INSTRUCTION
    assert CODE_RETRY_INSTRUCTION.endswith("Only output the final correct Python program!")
    assert len(load_mbpp()) == 974


def test_mbpp_gold_solutions_pass_and_wrong_ones_fail():
    env = agentloop.make("code/mbpp-v0", split="validation").unwrapped
    for i in range(0, 90, 9):
        task = env.get_task(i)
        verdict = env.verify(task, fenced(task.answer["reference"]))
        assert verdict.success and verdict.info["pass_fraction"] == 1.0, (task.id, verdict.feedback)
    task = env.get_task(0)
    name = task.answer["tests"][0].split("assert ", 1)[1].split("(", 1)[0].strip()
    bad = env.verify(task, fenced(f"def {name}(*args):\n    return None"))
    assert not bad.success and bad.info["stage"] == "test"


def test_mbpp_step_info_and_feedback():
    env = agentloop.make("code/mbpp-v0", split="test")
    env.reset(options={"index": 0})
    _, reward, term, _, info = env.step(fenced("def remove_Occ(s, ch):\n    return s"))
    assert (reward, term, info["success"]) == (0.0, True, False)
    assert info["tests_passed"] == 0 and info["tests_total"] == 3 and info["pass_fraction"] == 0.0
    assert info["feedback"].startswith("AssertionError: assert remove_Occ(\"hello\",\"l\") == \"heo\"")
    assert "A correct solution" in info["oracle_feedback"] and "A correct solution" not in info["feedback"]
    env.reset(options={"index": 0})
    _, _, _, _, info = env.step("I don't know.")
    assert info["parse_error"] == "no code found" and info["stage"] == "no_code"


@pytest.mark.parametrize("mode", ["retry", "env", "oracle", "binary"])
def test_multiattempt_feedback_modes_on_code(mode):
    env = agentloop.make("code/mbpp-v0", split="test", max_attempts=2, feedback=mode)
    env.reset(options={"index": 0})
    gold = env.unwrapped.task.answer["reference"]
    obs, r1, term1, _, _ = env.step(fenced("def remove_Occ(s, ch):\n    return s"))
    feedback = obs[-1].content
    obs, r2, term2, _, info = env.step(fenced(gold))
    assert (r1, term1, r2, term2, info["success"]) == (0.0, False, 1.0, True, True)
    if mode == "retry":
        assert feedback == CODE_RETRY_INSTRUCTION
    if mode == "env":
        assert "AssertionError: assert remove_Occ" in feedback and "A correct solution" not in feedback
    if mode == "oracle":
        assert "A correct solution" in feedback
    if mode == "binary":
        assert "AssertionError" not in feedback


def test_task_file_env(tmp_path):
    path = tmp_path / "tasks.jsonl"
    rows = [{"id": "sq", "prompt": "Write sq(x).", "tests": ["assert sq(3) == 9", "assert sq(0) == 0"]},
            {"prompt": "Write area(r) using math.pi.", "tests": ["assert abs(area(1) - math.pi) < 1e-9"],
             "setup": "import math"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    env = agentloop.make("code/tasks-v0", path=str(path))
    agentloop.check_env(env)
    u = env.unwrapped
    assert [u.get_task(i).id for i in range(2)] == ["sq", "2"]
    assert u.verify(u.get_task(0), fenced("def sq(x):\n    return x * x")).success
    assert u.verify(u.get_task(1), fenced("import math\ndef area(r):\n    return math.pi * r * r")).success
    half = u.verify(u.get_task(0), fenced("def sq(x):\n    return 9"))
    assert half.info["pass_fraction"] == 0.5
    default = agentloop.make("code/tasks-v0").unwrapped  # the shipped examples
    for i in range(default.num_tasks()):
        task = default.get_task(i)
        assert default.verify(task, fenced(task.answer["reference"])).success, task.id


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"prompt": "p"}', "'tests' must be a non-empty list"),
        ('{"prompt": "p", "tests": []}', "'tests' must be a non-empty list"),
        ('{"tests": ["assert 1"]}', "non-empty 'prompt'"),
        ('{"prompt": "p", "tests": ["assert 1"], "answer": 3}', "unknown field"),
        ('{"id": "a", "prompt": "p", "tests": ["assert 1"]}\n{"id": "a", "prompt": "q", "tests": ["assert 1"]}',
         "duplicate task id"),
    ],
)
def test_task_file_errors_explain_the_rule(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(ConfigError, match=message):
        load_task_file(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_task_file(tmp_path / "missing.jsonl")


def test_run_task_tests_batches_replies():
    env = agentloop.make("code/mbpp-v0", split="train").unwrapped
    tasks = [env.get_task(i) for i in range(6)]
    replies = [fenced(t.answer["reference"]) if i % 2 == 0 else "no code" for i, t in enumerate(tasks)]
    reports = run_task_tests(tasks, replies)
    assert [r.passed for r in reports] == [True, False] * 3
    assert [r.stage for r in reports[1::2]] == ["no_code"] * 3
    with pytest.raises(ConfigError, match="one reply per task"):
        run_task_tests(tasks, replies[:2])


NAME_ERROR = "Traceback (most recent call last):\n  File \"<test 0>\", line 1\nNameError: name 'fn_04d616' is not defined"


@pytest.mark.parametrize("reply, defined", [
    ("```python\ndef fn_04d616(x):\n    return x\n```", True),
    ("```python\nfn_04d616 = lambda x: x\n```", True),
    ("```python\nfrom math import gcd as fn_04d616\n```", True),
    ("```python\ndef larger_2(x):\n    return x\n```", False),        # the old name again
    ("```python\ndef helper():\n    def fn_04d616(x):\n        return x\n```", False),  # not at the top level
    ("```python\ndef fn_04d616(x) return x\n```", False),            # does not parse: binds nothing
])
def test_defines_named_after_a_name_error(reply, defined):
    assert defines_named(NAME_ERROR, reply) is defined
    assert CodeTaskEnv.feedback_uptake({"feedback": NAME_ERROR}, reply, {}) is defined


def test_defines_named_checks_nothing_after_other_feedback():
    assert defines_named("AssertionError: f(2) returned 3, expected 4", "def f(x): return x + 2") is None
