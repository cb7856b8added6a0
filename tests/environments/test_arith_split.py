"""The held-out split of math/arith-v0: canonical forms, disjoint and distinct splits, determinism, op tags."""

from __future__ import annotations

import re

import pytest

import agentloop
from agentloop.environments.math.arith import (
    EXHAUSTED_AFTER,
    LEVELS,
    _SplitStream,
    canonical,
    generate,
    operation,
    split_of,
    split_problems,
)
from agentloop.errors import ConfigError


@pytest.mark.parametrize(("a", "b"), [
    ("What is 3 + 4?", "What is 4 + 3?"),
    ("What is 2 x 3 + 5?", "What is 5 + 3 x 2?"),
    ("What is 1 + 2 - 3?", "What is 2 - 3 + 1?"),
    ("What is (4 - 1) x 7?", "What is 7 x (-1 + 4)?"),
    ("What is 9 - (2 + 3)?", "What is 9 - 3 - 2?"),
])
def test_commuted_and_regrouped_forms_share_a_canonical_form(a, b):
    assert canonical(a) == canonical(b)


@pytest.mark.parametrize(("a", "b"), [
    ("What is 3 - 4?", "What is 4 - 3?"),
    ("What is 12 / 3?", "What is 3 / 12?"),
    ("What is 2 x 3 + 5?", "What is 2 + 3 x 5?"),
])
def test_different_problems_keep_different_canonical_forms(a, b):
    assert canonical(a) != canonical(b)


def _whole_space(difficulty: int) -> list[tuple[str, str]]:
    """Every problem of a small level, enumerated by hand (not through the generator)."""
    if difficulty == 1:
        return [(f"What is {a} {op} {b}?", str(a + b if op == "+" else a - b))
                for a in range(1, 21) for b in range(1, 21) for op in "+-"]
    out = [(f"What is {a} {op} {b}?", str(a + b if op == "+" else a - b))
           for a in range(1, 31) for b in range(1, 31) for op in "+-"]
    out += [(f"What is {a} x {d}?", str(a * d)) for a in range(1, 31) for d in range(2, 10)]
    out += [(f"What is {d} x {a}?", str(a * d)) for a in range(1, 31) for d in range(2, 10)]
    return out


@pytest.mark.parametrize("difficulty", [1, 6])
def test_splits_partition_the_whole_space_and_hold_distinct_problems(difficulty):
    space = _whole_space(difficulty)
    train = split_problems(0, difficulty, "train", 10**6)
    test = split_problems(0, difficulty, "test", 10**6)
    train_forms, test_forms = {canonical(q) for q, _ in train}, {canonical(q) for q, _ in test}
    assert len(train_forms) == len(train) and len(test_forms) == len(test)  # distinct within each split
    assert not train_forms & test_forms  # no problem, commuted or not, in both
    # Every canonical problem of the level lands in exactly the split its hash says, and none is missed.
    space_forms = {canonical(q) for q, _ in space}
    assert train_forms | test_forms == space_forms
    assert all(split_of(q, 0.2) == "test" for q, _ in test) and all(split_of(q, 0.2) == "train" for q, _ in train)
    assert 0.1 < len(test_forms) / len(space_forms) < 0.3
    # Another seed orders the problems differently but deals each one into the same split.
    other = split_problems(3, difficulty, "test", 10**6)
    assert {canonical(q) for q, _ in other} == test_forms and other != test


def test_split_tasks_are_deterministic_and_correct():
    env = agentloop.make("math/arith-v0", difficulty=6, split="test", num_tasks=150, seed=2).unwrapped
    again = agentloop.make("math/arith-v0", difficulty=6, split="test", num_tasks=150, seed=2).unwrapped
    fresh = _SplitStream(2, 6, 0.2).fill("test", 150)  # a new stream, filled in one call: same sequence
    tasks = [env.get_task(i) for i in range(150)]
    assert [t.messages for t in tasks] == [again.get_task(i).messages for i in range(150)]
    assert [t.metadata["question"] for t in tasks] == [q for q, _ in fresh]
    for t in tasks:
        expr = re.fullmatch(r"What is (.*)\?", t.metadata["question"]).group(1).replace("x", "*")
        assert eval(expr) == int(t.answer)  # noqa: S307 - our own generated arithmetic
        assert t.id.startswith("arith-d6-test-s2-")


def test_train_env_never_sees_a_test_problem_across_seeds_and_levels():
    test = {canonical(q) for q, _ in split_problems(1, 6, "test", 300)}
    for seed in (0, 1, 5):
        train = agentloop.make("math/arith-v0", difficulty=6, split="train", num_tasks=1000, seed=seed).unwrapped
        assert not {canonical(train.get_task(i).metadata["question"]) for i in range(1000)} & test


def test_too_many_tasks_for_a_small_split_says_how_many_there_are():
    with pytest.raises(ConfigError, match=r"only 136 distinct problems.*num_tasks <= 136"):
        agentloop.make("math/arith-v0", difficulty=1, split="test", num_tasks=1000)
    with pytest.raises(ConfigError, match="'train' or 'test'"):
        agentloop.make("math/arith-v0", split="validation")
    with pytest.raises(ConfigError, match="test_fraction"):
        agentloop.make("math/arith-v0", split="test", test_fraction=1.0)
    assert EXHAUSTED_AFTER >= 10_000  # enough draws that a level-1 problem is never missed by chance


def test_no_split_keeps_the_plain_seeded_sequence():
    env = agentloop.make("math/arith-v0", difficulty=2, num_tasks=20, seed=7).unwrapped
    assert [env.get_task(i).metadata["question"] for i in range(20)] == [generate(7, 2, i)[0] for i in range(20)]


@pytest.mark.parametrize("difficulty", sorted(LEVELS))
@pytest.mark.parametrize("split", ["train", "test"])
def test_split_envs_pass_check_env(difficulty, split):
    agentloop.check_env(agentloop.make("math/arith-v0", difficulty=difficulty, split=split, num_tasks=100))


def test_operation_tags_reach_task_metadata_reset_and_step_info():
    assert [operation(*p) for p in [("What is 3 + 4?", "7"), ("What is 9 - 4?", "5"), ("What is 4 - 9?", "-5"),
                                    ("What is 3 x 4?", "12"), ("What is 1 + 2 x 3?", "7"), ("Ava has 3 cards.", "3")]] \
        == ["add", "sub", "sub_neg", "mul", "mixed", "word"]
    env = agentloop.make("math/arith-v0", difficulty=6, split="test", num_tasks=300)
    ops = set()
    for i in range(300):
        _, info = env.reset(options={"index": i})
        task = env.unwrapped.task
        _, _, _, _, step_info = env.step(f"Answer: {task.answer}")
        assert info["op"] == step_info["op"] == task.metadata["op"] and step_info["success"]
        ops.add(info["op"])
    assert ops == {"add", "sub", "sub_neg", "mul"}  # level 6 has every operation, negative results included


def test_level6_balances_operations_and_negative_results():
    ops = [operation(*generate(0, 6, i)) for i in range(3000)]
    for op in ("add", "mul"):
        assert 0.28 < ops.count(op) / len(ops) < 0.39
    assert 0.12 < ops.count("sub_neg") / len(ops) < 0.22
