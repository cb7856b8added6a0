"""Procedural arithmetic and word problems with difficulty levels, so that small models get a signal.

Task ``i`` is generated from ``numpy.random.default_rng([seed, difficulty, i])``: the same
``(seed, difficulty, i)`` always gives the same problem, on any machine.

Levels:

1. one addition or subtraction of numbers up to 20;
2. two operations (+, -, x) on numbers up to 50, evaluated with the usual precedence;
3. three operations with parentheses and an exact division, numbers up to 100, negative results allowed;
4. one- or two-step word problems (shopping, sharing, speed, ages);
5. multi-step word problems with fractions, percentages and change;
6. one operation, balanced across the operations: an addition of numbers up to 30, a subtraction of
   numbers up to 30 whose result is negative half of the time, or a product of a number up to 30 and
   a digit. Made for the self-correction benchmark (``benchmarks/efficacy.py``): small enough that the
   135M model is sometimes right, with the negative-result subtractions it gets wrong at level 1.

Every answer is an integer (levels 1-4, 6) or an integer or exact decimal (level 5).

Held-out split (``split="train"|"test"``): every problem has a *canonical form*
(:func:`canonical`): the expression parsed, sums flattened into signed terms and products into
factors, both sorted, so ``3 + 4``, ``4 + 3`` and ``(4 + 3)`` are one problem, as are
``2 x 3 + 5`` and ``5 + 3 x 2`` (word problems: their text). A problem belongs to the test split
when a hash of its canonical form falls below ``test_fraction``, whatever the seed or difficulty, so
the two splits are disjoint by construction: no training problem is a commuted twin of a test
problem. Within a split, tasks are distinct canonical problems, in the order the seeded generator
first produces them (``split=None``, the default, keeps the plain seeded sequence, repeats
included). Each task carries its operation tag in ``metadata["op"]`` and in the step ``info``
(``add``, ``sub``, ``sub_neg`` for a negative result, ``mul``, ``mixed`` for several operations,
``word`` for word problems), so reports can break accuracy down per operation.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from agentloop.env import Task, TaskEnv, Verdict
from agentloop.environments.math.checking import ANSWER_FORMAT, direction_followed, judge
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


def _level6(rng: np.random.Generator) -> Problem:
    op = int(rng.integers(3))
    a, b = int(rng.integers(1, 31)), int(rng.integers(1, 31))
    if op == 0:
        return f"What is {a} + {b}?", str(a + b)
    if op == 1:
        small, large = sorted((a, b))
        a, b = (small, large) if rng.integers(2) else (large, small)  # a negative result half of the time
        return f"What is {a} - {b}?", str(a - b)
    d = int(rng.integers(2, 10))
    a, d = (a, d) if rng.integers(2) else (d, a)
    return f"What is {a} x {d}?", str(a * d)


LEVELS: dict[int, Callable[[np.random.Generator], Problem]] = {
    1: lambda rng: _ops_expr(rng, 1, 20, "+-"),
    2: lambda rng: _ops_expr(rng, 2, 50, "+-x"),
    3: _level3,
    4: _level4,
    5: _level5,
    6: _level6,
}

Split = Literal["train", "test"]
EXPRESSION_PREFIX, EXPRESSION_SUFFIX = "What is ", "?"
#: A split is given up as exhausted after this many generated problems in a row that were new to neither split.
EXHAUSTED_AFTER = 20_000
DEFAULT_NUM_TASKS = 1000


def generate(seed: int, difficulty: int, index: int) -> Problem:
    """The problem ``index`` of level ``difficulty`` for ``seed`` (question, answer)."""
    return LEVELS[difficulty](np.random.default_rng([seed, difficulty, index]))


# -- canonical forms and the held-out split ------------------------------------------------------------
def _expression(question: str) -> str | None:
    if question.startswith(EXPRESSION_PREFIX) and question.endswith(EXPRESSION_SUFFIX):
        return question[len(EXPRESSION_PREFIX):-len(EXPRESSION_SUFFIX)]
    return None


def _terms(node: ast.expr, sign: int) -> list[tuple[int, str]]:
    """A sum flattened into (sign, canonical term) pairs: ``a - (b - c)`` -> +a, -b, +c."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)):
        right_sign = sign if isinstance(node.op, ast.Add) else -sign
        return _terms(node.left, sign) + _terms(node.right, right_sign)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return _terms(node.operand, -sign)
    return [(sign, _canon(node))]


def _factors(node: ast.expr) -> list[str]:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
        return _factors(node.left) + _factors(node.right)
    return [_canon(node)]


def _canon(node: ast.expr) -> str:
    if isinstance(node, ast.Constant):
        return str(node.value)
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)) \
            or isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        terms = sorted(_terms(node, 1), key=lambda x: (x[1], x[0]))
        return "(" + " ".join(("+" if s > 0 else "-") + t for s, t in terms) + ")"
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
        return "[" + "*".join(sorted(_factors(node))) + "]"
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        return f"({_canon(node.left)}/{_canon(node.right)})"
    raise ValueError(f"not an arithmetic expression node: {ast.dump(node)}")


def canonical(question: str) -> str:
    """The canonical form of a problem: equal for problems that differ only by commuting or regrouping.

    >>> canonical("What is 3 + 4?") == canonical("What is 4 + 3?")
    True
    >>> canonical("What is 2 x 3 + 5?") == canonical("What is 5 + 3 x 2?")
    True
    >>> canonical("What is 3 - 4?") == canonical("What is 4 - 3?")
    False
    """
    expr = _expression(question)
    if expr is None:
        return "text:" + " ".join(question.split())
    try:
        tree = ast.parse(expr.replace("x", "*"), mode="eval")
        return "expr:" + _canon(tree.body)
    except (SyntaxError, ValueError):
        return "text:" + " ".join(question.split())


def split_of(question: str, test_fraction: float) -> Split:
    """``test`` when the hash of the canonical form falls below ``test_fraction`` (seed- and level-free)."""
    digest = hashlib.sha256(canonical(question).encode()).digest()
    return "test" if int.from_bytes(digest[:8], "big") / 2**64 < test_fraction else "train"


def operation(question: str, answer: str) -> str:
    """The operation tag of a problem: add, sub, sub_neg (negative result), mul, div, mixed or word."""
    expr = _expression(question)
    if expr is None:
        return "word"
    ops = [t for t in expr.split() if t in {"+", "-", "x", "/"}]
    if len(ops) != 1:
        return "mixed"
    if ops[0] == "-":
        return "sub_neg" if answer.startswith("-") else "sub"
    return {"+": "add", "x": "mul", "/": "div"}[ops[0]]


@dataclass
class _SplitStream:
    """The seeded problem sequence of one (seed, difficulty, test_fraction), dealt into distinct train/test lists."""

    seed: int
    difficulty: int
    test_fraction: float
    next_index: int = 0
    misses: int = 0  # consecutive repeats so far (kept across calls, so the result never depends on call history)
    seen: set[str] = field(default_factory=set)
    problems: dict[str, list[Problem]] = field(default_factory=lambda: {"train": [], "test": []})
    exhausted: bool = False

    def fill(self, split: Split, count: int) -> list[Problem]:
        """At least ``count`` distinct problems of ``split`` (fewer only when the level's space has no more)."""
        while len(self.problems[split]) < count and not self.exhausted:
            question, answer = generate(self.seed, self.difficulty, self.next_index)
            self.next_index += 1
            key = canonical(question)
            if key in self.seen:
                self.misses += 1
                self.exhausted = self.misses >= EXHAUSTED_AFTER
                continue
            self.misses = 0
            self.seen.add(key)
            self.problems[split_of(question, self.test_fraction)].append((question, answer))
        return self.problems[split]


_STREAMS: dict[tuple[int, int, float], _SplitStream] = {}


def split_problems(seed: int, difficulty: int, split: Split, count: int, test_fraction: float = 0.2) -> list[Problem]:
    """The first ``count`` distinct problems of ``split`` (cached per process; fewer if the space runs out)."""
    key = (seed, difficulty, test_fraction)
    stream = _STREAMS.setdefault(key, _SplitStream(seed, difficulty, test_fraction))
    return stream.fill(split, count)[:count]


class ArithEnv(TaskEnv):
    """``make("math/arith-v0", difficulty=2, num_tasks=500, seed=0)``: procedural problems.

    ``split="train"`` / ``split="test"`` deal distinct problems into two disjoint splits by their
    canonical form (module docstring): ``make("math/arith-v0", difficulty=6, split="test",
    num_tasks=200)`` never shares a problem, commuted or not, with any ``split="train"`` env.
    ``num_tasks`` unset means 1000, or with a split as many as it has up to 1000 (level 1 test: 136,
    level 6 test: 322); an explicit ``num_tasks`` larger than the split is an error.
    """

    def __init__(self, difficulty: int = 1, num_tasks: int | None = None, seed: int = 0, split: Split | None = None,
                 test_fraction: float = 0.2):
        super().__init__()
        if difficulty not in LEVELS:
            raise ConfigError(f"math/arith-v0: difficulty must be one of {sorted(LEVELS)}, got {difficulty}.")
        explicit = num_tasks is not None
        num_tasks = DEFAULT_NUM_TASKS if num_tasks is None else num_tasks
        if num_tasks < 1:
            raise ConfigError(f"math/arith-v0: num_tasks must be >= 1, got {num_tasks}.")
        if seed < 0:
            raise ConfigError(f"math/arith-v0: seed must be >= 0 (numpy seeds are non-negative), got {seed}.")
        if split not in (None, "train", "test"):
            raise ConfigError(f"math/arith-v0: split must be 'train', 'test' or null (no split), got {split!r}.")
        if not 0.0 < test_fraction < 1.0:
            raise ConfigError(f"math/arith-v0: test_fraction must be between 0 and 1 (exclusive), got {test_fraction}.")
        self.difficulty, self._n, self.seed = difficulty, num_tasks, seed
        self.split, self.test_fraction = split, test_fraction
        self._problems: list[Problem] = []
        if split is not None:
            self._problems = split_problems(seed, difficulty, split, num_tasks, test_fraction)
            if not explicit:  # the default: as many as the split has, up to DEFAULT_NUM_TASKS
                self._n = len(self._problems)
            elif len(self._problems) < num_tasks:
                raise ConfigError(
                    f"math/arith-v0: the {split} split of difficulty {difficulty} has only {len(self._problems)} "
                    f"distinct problems (test_fraction {test_fraction}); set num_tasks <= {len(self._problems)}, "
                    "or leave num_tasks unset (all of them), or pick a larger level (2-5).")

    def num_tasks(self) -> int:
        return self._n

    def get_task(self, index: int) -> Task:
        if self.split is None:
            question, answer = generate(self.seed, self.difficulty, index)
            task_id = f"arith-d{self.difficulty}-s{self.seed}-{index}"
        else:
            question, answer = self._problems[index]
            task_id = f"arith-d{self.difficulty}-{self.split}-s{self.seed}-{index}"
        return Task(id=task_id, messages=(user(PROMPT.format(fmt=ANSWER_FORMAT, question=question)),), answer=answer,
                    metadata={"difficulty": self.difficulty, "op": operation(question, answer),
                              "question": question})

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = super().reset(seed=seed, options=options)
        return obs, {**info, "op": self.task.metadata["op"]}

    @staticmethod
    def feedback_uptake(previous: Mapping[str, Any], action: str, current: Mapping[str, Any]) -> bool | None:
        """The checker's direction taken (:func:`~agentloop.environments.math.checking.direction_followed`)."""
        return direction_followed(previous, current)

    def verify(self, task: Task, action: str) -> Verdict:
        verdict = judge(action, str(task.answer))
        return verdict.model_copy(update={"info": {**verdict.info, "op": task.metadata["op"]}})


__all__ = ["LEVELS", "ArithEnv", "canonical", "generate", "operation", "split_of", "split_problems"]
