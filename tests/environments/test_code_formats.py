"""HumanEval-, MBPP- and EvalPlus-format code environments on small fixtures, and `envs check-gold`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import agentloop
from agentloop.environments.code.formats import assemble_solution, split_check
from agentloop.errors import ConfigError
from agentloop.sandbox.local import bwrap_status

FIX = Path(__file__).parent / "fixtures" / "formats"
HE, MBPP, MBPP_PLUS = str(FIX / "humaneval.jsonl"), str(FIX / "mbpp.jsonl"), str(FIX / "mbpp_plus.jsonl")
needs_sandbox = pytest.mark.skipif(not bwrap_status()[0], reason=f"bubblewrap unavailable: {bwrap_status()[1]}")


def verdict(env, task_id, reply):
    env.reset(options={"task_id": task_id})
    _, reward, _, _, info = env.step(reply)
    return reward, info


# -- pure helpers (no sandbox) -------------------------------------------------------------------
PROMPT = "from typing import List\n\n\ndef f(xs: List[int]) -> int:\n    \"\"\"Sum.\"\"\"\n"


@pytest.mark.parametrize("completion", [
    "    return sum(xs)\n",                                          # HumanEval body, indented
    "return sum(xs)",                                               # body written flush left
    "```python\n    return sum(xs)\n```",                           # body in a fence
    "```python\ndef f(xs: List[int]) -> int:\n    return sum(xs)\n```",  # whole function in a fence
    "def f(xs):\n    return sum(xs)\n",                             # whole function, bare
    "Sure!\n```python\nimport os\n```\n```python\ndef f(xs):\n    return sum(xs)\n```",  # the block defining f wins
])
def test_assemble_solution_accepts_a_body_or_a_whole_function(completion):
    code = assemble_solution(PROMPT, completion, "f")
    ns: dict = {}
    exec(code, ns)
    assert ns["f"]([1, 2, 3]) == 6
    assert code.startswith("from typing import List")  # the prompt's imports are kept


def test_assemble_solution_empty_reply_is_no_code():
    assert assemble_solution(PROMPT, "", "f") is None


def test_split_check_one_test_per_assert_else_whole_check():
    tests, setup = split_check("def check(candidate):\n    assert candidate(1) == 2\n    assert candidate(2) == 3\n", "inc")
    assert tests == ["assert candidate(1) == 2", "assert candidate(2) == 3"]
    assert setup.endswith("candidate = inc\n")
    tests, setup = split_check("def check(c):\n    for i in range(3):\n        assert c(i) == i + 1\n", "inc")
    assert tests == ["check(inc)"]


def test_loader_errors_name_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        agentloop.make("code/humaneval-format-v0", path=str(tmp_path / "nope.jsonl"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "def f():\n", "test": "def check(c): pass"}) + "\n")
    with pytest.raises(ConfigError, match="entry_point"):
        agentloop.make("code/humaneval-format-v0", path=str(bad))
    bad.write_text(json.dumps({"text": "x", "test_list": []}) + "\n")
    with pytest.raises(ConfigError, match="test_list"):
        agentloop.make("code/mbpp-format-v0", path=str(bad))


# -- running in the sandbox ----------------------------------------------------------------------
@needs_sandbox
@pytest.mark.parametrize("env_id,path", [("code/humaneval-format-v0", HE), ("code/mbpp-format-v0", MBPP),
                                         ("code/mbpp-format-v0", MBPP_PLUS), ("code/humaneval-format-v0", None),
                                         ("code/mbpp-format-v0", None)])
def test_check_env_passes(env_id, path):
    agentloop.check_env(agentloop.make(env_id, **({"path": path} if path else {})))


@needs_sandbox
def test_humaneval_gold_passes_and_counts_plus_tests():
    env = agentloop.make("code/humaneval-format-v0", path=HE)
    task = env.unwrapped.get_task(0)
    assert task.metadata["plus_tests"] == 3 and len(task.answer["tests"]) == 6
    reward, info = verdict(env, "T/0", env.unwrapped.gold_reply(task))
    assert reward == 1.0 and info["tests_passed"] == 6


@needs_sandbox
def test_humaneval_wrong_body_fails_with_the_failing_assert():
    env = agentloop.make("code/humaneval-format-v0", path=HE)
    reward, info = verdict(env, "T/0", "    return xs\n")
    assert reward == 0.0 and info["stage"] == "test"
    assert "AssertionError: assert candidate([1, 3, 2]) == [1, 3, 3]" in info["feedback"]
    assert "returned [1, 3, 2]" in info["feedback"]


@needs_sandbox
def test_evalplus_inputs_catch_what_the_base_tests_miss():
    env = agentloop.make("code/humaneval-format-v0", path=HE)
    # starts from 0: right on the base tests (non-negative), wrong on the plus input [-3, -5, -1]
    body = "    out, best = [], 0\n    for x in xs:\n        best = max(best, x)\n        out.append(best)\n    return out\n"
    reward, info = verdict(env, "T/0", body)
    assert reward == 0.0 and info["tests_passed"] == 5 and info["tests_total"] == 6
    assert "assert running_max([-3, -5, -1]) == _agentloop_expected[1]" in info["feedback"]
    assert "returned [0, 0, 0]" in info["feedback"] and "-1, -1" not in info["feedback"]  # expected output not shown
    plain = agentloop.make("code/humaneval-format-v0", path=HE, plus=False)
    assert verdict(plain, "T/0", body)[0] == 1.0


@needs_sandbox
def test_evalplus_float_outputs_compare_within_atol():
    env = agentloop.make("code/humaneval-format-v0", path=HE)
    # a different summation order gives float results that differ in the last bits
    reward, info = verdict(env, "T/2", "```python\ndef mean(values):\n    return sum(sorted(values, reverse=True)) / len(values)\n```")
    assert reward == 1.0, info["feedback"]
    reward, info = verdict(env, "T/2", "    return sum(values) / len(values) + 1e-3\n")
    assert reward == 0.0


@needs_sandbox
def test_humaneval_whole_check_and_prompt_helpers():
    env = agentloop.make("code/humaneval-format-v0", path=HE)
    assert verdict(env, "T/1", "```python\ndef double_all(xs):\n    return [_helper(x) for x in xs]\n```")[0] == 1.0
    reward, info = verdict(env, "T/1", "    return xs\n")
    assert reward == 0.0 and "check(double_all)" in info["feedback"]


@needs_sandbox
def test_no_code_and_syntax_errors_are_verdicts():
    env = agentloop.make("code/humaneval-format-v0", path=HE)
    assert verdict(env, "T/0", "")[1]["stage"] == "no_code"
    assert verdict(env, "T/0", "I am not sure.")[1]["stage"] == "syntax"


@needs_sandbox
def test_mbpp_format_gold_setup_code_and_challenge_tests():
    env = agentloop.make("code/mbpp-format-v0", path=MBPP)
    u = env.unwrapped
    assert [len(u.get_task(i).answer["tests"]) for i in range(3)] == [3, 1, 1]
    assert "Your code should pass this test:\nassert count_vowels('hello') == 2" in u.get_task(0).messages[0].content
    for tid, i in (("11", 0), ("12", 1)):
        assert verdict(env, tid, u.gold_reply(u.get_task(i)))[0] == 1.0
    reward, info = verdict(env, "11", "```python\ndef count_vowels(s):\n    return sum(c in 'aeiou' for c in s)\n```")
    assert reward == 0.0 and "AssertionError: assert count_vowels('AEIOU') == 5" in info["feedback"]
    assert agentloop.make("code/mbpp-format-v0", path=MBPP, plus=False).unwrapped.get_task(0).answer["tests"] == \
        ["assert count_vowels('hello') == 2", "assert count_vowels('xyz') == 0"]


@needs_sandbox
def test_mbpp_plus_inputs_against_the_reference():
    env = agentloop.make("code/mbpp-format-v0", path=MBPP_PLUS)
    assert env.unwrapped.get_task(0).metadata["plus_tests"] == 3
    assert env.unwrapped.get_task(0).messages[0].content.startswith("Write a function to find the shared elements")
    assert verdict(env, "Mbpp/2", env.unwrapped.gold_reply(env.unwrapped.get_task(0)))[0] == 1.0
    # right on the base test, wrong (duplicates, unsorted) on the plus inputs
    reward, info = verdict(env, "Mbpp/2", "```python\ndef similar_elements(a, b):\n    return [x for x in a if x in b]\n```")
    assert reward == 0.0 and info["tests_passed"] == 3 and info["tests_total"] == 4


@needs_sandbox
def test_check_gold_command_reports_the_broken_task():
    from agentloop.cli import app

    result = CliRunner().invoke(app, ["envs", "check-gold", "code/humaneval-format-v0", f"path={HE}", "--json"])
    assert result.exit_code == 1, result.output
    report = json.loads(result.output)
    assert report["tasks"] == 5 and report["without_gold"] == ["T/nogold"]
    assert [f["task_id"] for f in report["failed"]] == ["T/broken"]
    assert "assert candidate(1) == 2" in report["failed"][0]["reason"] and "returned 3" in report["failed"][0]["reason"]
    ok = CliRunner().invoke(app, ["envs", "check-gold", "code/mbpp-format-v0", f"path={MBPP}", "limit=2"])
    assert ok.exit_code == 0, ok.output
    assert "2/2 gold solutions pass" in ok.output


@needs_sandbox
def test_evalplus_reference_runs_apart_and_its_failures_break_the_task(tmp_path):
    # An input whose repr does not round-trip (NaN) is bound by the setup; a reference that raises on an input
    # makes that test fail (check-gold shows the task), without showing the reference's source.
    path = tmp_path / "he.jsonl"
    path.write_text(json.dumps({
        "task_id": "N/0", "prompt": "def inv(x):\n    \"\"\"1 / x.\"\"\"\n", "entry_point": "inv",
        "canonical_solution": "    return 1 / x if x == x else x\n",
        "test": "def check(candidate):\n    assert candidate(2) == 0.5\n",
        "plus_input": [[float("nan")], [4], [0]]}) + "\n")
    env = agentloop.make("code/humaneval-format-v0", path=str(path))
    task = env.unwrapped.get_task(0)
    assert "_agentloop_inputs" in task.answer["setup"] and "return 1 / x" not in task.answer["setup"]
    assert [e.value for e in env.unwrapped.expected(task)][:2] == [pytest.approx(float("nan"), nan_ok=True), 0.25]
    reward, info = verdict(env, "N/0", env.unwrapped.gold_reply(task))
    assert reward == 0.0 and info["tests_passed"] == 3 and info["tests_total"] == 4
    reward, info = verdict(env, "N/0", "```python\ndef inv(x):\n    return 0.0 if x == 0 else 1 / x\n```")
    assert reward == 0.0 and info["tests_passed"] == 3
    assert "ReferenceFailed" in info["feedback"] and "ZeroDivisionError" in info["feedback"]
    assert "return 1 / x" not in info["feedback"]
