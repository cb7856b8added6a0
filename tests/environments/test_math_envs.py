"""GSM8K and procedural arithmetic environments: data, determinism, check_env, MultiAttempt feedback modes."""

from __future__ import annotations

import re

import pytest

import agentloop
from agentloop.environments.math.arith import LEVELS, generate
from agentloop.environments.math.gsm8k import load_gsm8k
from agentloop.errors import ConfigError


@pytest.mark.parametrize("kwargs", [{"split": "test"}, {"split": "train", "limit": 50}])
def test_gsm8k_passes_check_env(kwargs):
    agentloop.check_env(agentloop.make("math/gsm8k-v0", **kwargs))


def test_gsm8k_data_and_gold_solutions():
    assert len(load_gsm8k("train")) == 7473 and len(load_gsm8k("test")) == 1319
    env = agentloop.make("math/gsm8k-v0", split="test").unwrapped
    task = env.get_task(0)
    assert task.id == "gsm8k-test-0" and task.answer == "18" and "Janet" in task.messages[0].content
    assert "Answer: <number>" in task.messages[0].content
    # Every worked solution of the first 200 test rows is judged correct against its own gold answer.
    assert all(env.verify(env.get_task(i), str(env.get_task(i).metadata["solution"])).success for i in range(200))
    with pytest.raises(ConfigError, match="split"):
        agentloop.make("math/gsm8k-v0", split="dev")


@pytest.mark.parametrize("difficulty", sorted(LEVELS))
def test_arith_passes_check_env_at_every_level(difficulty):
    agentloop.check_env(agentloop.make("math/arith-v0", difficulty=difficulty))


def test_arith_is_seeded_and_correct():
    assert generate(0, 3, 5) == generate(0, 3, 5)
    assert [generate(0, 2, i) for i in range(20)] != [generate(1, 2, i) for i in range(20)]
    for difficulty in (1, 2, 3):
        for i in range(100):
            question, answer = generate(7, difficulty, i)
            expr = re.fullmatch(r"What is (.*)\?", question).group(1).replace("x", "*").replace("/", "//")
            assert eval(expr) == int(answer), question  # noqa: S307 - our own generated arithmetic
    for difficulty in (4, 5):
        answers = [generate(7, difficulty, i)[1] for i in range(100)]
        assert all(re.fullmatch(r"-?\d+(\.\d+)?", a) for a in answers)
        assert len({generate(7, difficulty, i)[0] for i in range(100)}) > 50  # varied problems
    env = agentloop.make("math/arith-v0", difficulty=4, num_tasks=10, seed=3)
    obs1, _ = env.reset(seed=11)
    obs2, _ = env.reset(seed=11)
    assert obs1 == obs2 and env.unwrapped.num_tasks() == 10
    with pytest.raises(ConfigError, match="difficulty"):
        agentloop.make("math/arith-v0", difficulty=9)


def _two_attempts(mode: str, first: str, second: str):
    env = agentloop.make("math/arith-v0", difficulty=1, max_attempts=2, feedback=mode)
    env.reset(seed=0, options={"index": 0})
    gold = env.unwrapped.task.answer
    obs, r1, term1, _, info1 = env.step(first.format(gold=gold, wrong=int(gold) + 1))
    feedback = obs[-1].content
    obs, r2, term2, _, info2 = env.step(second.format(gold=gold, wrong=int(gold) + 1))
    return gold, feedback, (r1, term1, info1), (r2, term2, info2)


@pytest.mark.parametrize("mode", ["none", "binary", "retry", "env", "oracle"])
def test_multiattempt_feedback_modes(mode):
    gold, feedback, (r1, term1, _), (r2, term2, info2) = _two_attempts(mode, "Answer: {wrong}", "Answer: {gold}")
    assert (r1, term1, r2, term2, info2["success"]) == (0.0, False, 1.0, True, True)
    wrong = str(int(gold) + 1)
    if mode == "oracle":
        assert f"The correct answer is {gold}" in feedback
    else:
        assert f"answer is {gold}" not in feedback
    if mode == "env":
        assert f"Your final answer {wrong} is incorrect" in feedback
    if mode == "retry":
        assert "There might be an error in the solution above" in feedback and "incorrect" not in feedback
    if mode == "binary":
        assert feedback == "Your answer is incorrect. Please try again."
