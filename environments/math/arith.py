"""Procedural arithmetic and word problems with difficulty levels, so that small models get a signal.

Task ``i`` is generated from ``numpy.random.default_rng([seed, difficulty, i])``: the same
``(seed, difficulty, i)`` always gives the same problem, on any machine.

Levels:

1. one addition or subtraction of numbers up to 20;
2. two operations (+, -, x) on numbers up to 50, evaluated with the usual precedence;
3. three operations with parentheses and an exact division, numbers up to 100, negative results allowed;
4. one- or two-step word problems (shopping, sharing, speed, ages);
5. multi-step word problems with fractions, percentages and change.

Every answer is an integer (levels 1-4) or an integer or exact decimal (level 5).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from agentloop.env import Task, TaskEnv, Verdict
from agentloop.environments.math.checking import ANSWER_FORMAT, judge
from agentloop.errors import ConfigError
from agentloop.types import user

NAMES = ("Ava", "Ben", "Chloe", "Dev", "Emma", "Farid", "Grace", "Hugo", "Iris", "Jon", "Kemi", "Liam")
ITEMS = ("apples", "pencils", "stickers", "marbles", "cookies", "books", "cards", "shells")
PROMPT = "Solve the following problem. {fmt}\n\n{question}"

Problem = tuple[str, str]  # (question, answer)


def _ops_expr(rng: np.random.Generator, n_ops: int, hi: int, ops: str) -> Problem:
    nums = [int(rng.integers(1, hi + 1)) for _ in range(n_ops + 1)]
    chosen = [ops[int(rng.integers(len(ops)))] for _ in range(n_ops)]
    expr = str(nums[0])
    for op, n in zip(chosen, nums[1:]):
        expr += f" {op} {n}"
    value = eval(expr.replace("x", "*"))  # noqa: S307 - our own digits and operators only
    return f"What is {expr}?", str(value)


def _level3(rng: np.random.Generator) -> Problem:
    a, b, c = (int(rng.integers(2, 101)) for _ in range(3))
    d = int(rng.integers(2, 13))
    q = int(rng.integers(2, 21))
    form = int(rng.integers(3))
    if form == 0:
        expr, value = f"({a} - {b}) x {d} + {q * d} / {d}", (a - b) * d + q
    elif form == 1:
        expr, value = f"{a} - ({b} + {c}) + {q * d} / {d}", a - (b + c) + q
    else:
        expr, value = f"({q * d} / {d} - {b}) x ({c} - {a})", (q - b) * (c - a)
    return f"What is {expr}?", str(value)


def _level4(rng: np.random.Generator) -> Problem:
    name, item = NAMES[int(rng.integers(len(NAMES)))], ITEMS[int(rng.integers(len(ITEMS)))]
    a, b, c = (int(rng.integers(2, 13)) for _ in range(3))
    form = int(rng.integers(4))
    if form == 0:
        return (f"{name} has {a * 3} {item}. {name} buys {b} packs with {c} {item} in each pack. "
                f"How many {item} does {name} have now?", str(a * 3 + b * c))
    if form == 1:
        return (f"{name} shares {a * b} {item} equally among {b} friends. How many {item} does each friend get?",
                str(a))
    if form == 2:
        return (f"A train travels at {a * 10} km per hour for {b} hours. How many kilometres does it travel?",
                str(a * 10 * b))
    return (f"{name} is {a + 10} years old. {name}'s mother is {c + 20} years older. "
            f"How old will the mother be in {b} years?", str(a + 10 + c + 20 + b))


def _level5(rng: np.random.Generator) -> Problem:
    name, item = NAMES[int(rng.integers(len(NAMES)))], ITEMS[int(rng.integers(len(ITEMS)))]
    a, b = int(rng.integers(2, 10)), int(rng.integers(2, 10))
    form = int(rng.integers(4))
    if form == 0:
        price = int(rng.integers(2, 20)) * 25  # cents, so that the change is exact
        bill = 20 if a * price <= 2000 else 50 if a * price <= 5000 else 100
        change = (bill * 100 - a * price) / 100
        return (f"{name} buys {a} {item} at ${price / 100:.2f} each and pays with a ${bill} bill. "
                f"How many dollars of change does {name} get?", f"{change:g}")
    if form == 1:
        total = a * b * 8  # a multiple of 8: a quarter, then half of the rest, stay whole
        return (f"A box holds {total} {item}. {name} gives away 1/4 of them and then uses half of the rest. "
                f"How many {item} are left?", str(total * 3 // 8))
    if form == 2:
        base = a * 100
        pct = int(rng.integers(1, 10)) * 5
        return (f"A jacket costs ${base}. It is on sale for {pct}% off. What is the sale price in dollars?",
                f"{base * (100 - pct) / 100:g}")
    per_day, days, extra = a * 3, b + 2, int(rng.integers(5, 40))
    return (f"{name} reads {per_day} pages a day for {days} days and then {extra} more pages on the last day. "
            f"The book has {per_day * days + extra + a * b} pages. How many pages are still unread?", str(a * b))


LEVELS: dict[int, Callable[[np.random.Generator], Problem]] = {
    1: lambda rng: _ops_expr(rng, 1, 20, "+-"),
    2: lambda rng: _ops_expr(rng, 2, 50, "+-x"),
    3: _level3,
    4: _level4,
    5: _level5,
}


def generate(seed: int, difficulty: int, index: int) -> Problem:
    """The problem ``index`` of level ``difficulty`` for ``seed`` (question, answer)."""
    return LEVELS[difficulty](np.random.default_rng([seed, difficulty, index]))


class ArithEnv(TaskEnv):
    """``make("math/arith-v0", difficulty=2, num_tasks=500, seed=0)``: procedural problems."""

    def __init__(self, difficulty: int = 1, num_tasks: int = 1000, seed: int = 0):
        super().__init__()
        if difficulty not in LEVELS:
            raise ConfigError(f"math/arith-v0: difficulty must be one of {sorted(LEVELS)}, got {difficulty}.")
        if num_tasks < 1:
            raise ConfigError(f"math/arith-v0: num_tasks must be >= 1, got {num_tasks}.")
        if seed < 0:
            raise ConfigError(f"math/arith-v0: seed must be >= 0 (numpy seeds are non-negative), got {seed}.")
        self.difficulty, self._n, self.seed = difficulty, num_tasks, seed

    def num_tasks(self) -> int:
        return self._n

    def get_task(self, index: int) -> Task:
        question, answer = generate(self.seed, self.difficulty, index)
        return Task(id=f"arith-d{self.difficulty}-s{self.seed}-{index}",
                    messages=(user(PROMPT.format(fmt=ANSWER_FORMAT, question=question)),), answer=answer,
                    metadata={"difficulty": self.difficulty})

    def verify(self, task: Task, action: str) -> Verdict:
        return judge(action, str(task.answer))


__all__ = ["ArithEnv", "generate"]
