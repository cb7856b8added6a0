"""The Countdown numbers game: combine the given numbers with + - * / to reach the target.

Each task gives ``n_numbers`` numbers (each usable at most once) and a target that is reachable by
construction. The answer is the last arithmetic expression in the reply (or the one after
"Answer:"). Feedback says what is wrong without revealing a solution: unusable expression, a
number not given or used too often, or the value reached.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from fractions import Fraction

import numpy as np

from agentloop.env import Task, TaskEnv, Verdict
from agentloop.types import system, user

_OPS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b}
_EXPR = re.compile(r"[\d\s+\-*/()]+")


def evaluate(expr: str) -> tuple[Fraction, list[int]]:
    """Exact value of an arithmetic expression and the integer literals it uses. Raises ValueError."""
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError as e:
        raise ValueError(f"not a valid expression ({e.msg})") from e
    numbers: list[int] = []

    def walk(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
            numbers.append(node.value)
            return Fraction(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            right = walk(node.right)
            if right == 0:
                raise ValueError("division by zero")
            return walk(node.left) / right
        raise ValueError(f"only integers, + - * / and parentheses are allowed, found {type(node).__name__}")

    return walk(tree), numbers


def extract_expression(reply: str) -> str | None:
    """The expression after 'Answer:' if present, else the last line that is a pure arithmetic expression."""
    m = re.search(r"answer\s*:\s*(.+)", reply, flags=re.IGNORECASE)
    candidates = [m.group(1)] if m else []
    candidates += list(reversed(reply.splitlines()))
    for cand in candidates:
        cand = cand.strip().strip("`$").split("=")[0].strip()
        if cand and _EXPR.fullmatch(cand) and any(ch.isdigit() for ch in cand):
            return cand
    return None


class CountdownEnv(TaskEnv):
    """Countdown tasks generated from a seed; ``n_tasks`` fixed tasks per ``task_seed``."""

    retry_instruction = "Check your expression: does it use only the given numbers and reach the target? Rewrite it."

    def __init__(self, n_numbers: int = 4, max_number: int = 25, n_tasks: int = 1000, task_seed: int = 0):
        super().__init__()
        if not 2 <= n_numbers <= 6:
            raise ValueError(f"n_numbers must be between 2 and 6, got {n_numbers}")
        self.n_numbers, self.max_number, self.n_tasks, self.task_seed = n_numbers, max_number, n_tasks, task_seed

    def num_tasks(self) -> int:
        return self.n_tasks

    def get_task(self, index: int) -> Task:
        rng = np.random.default_rng([self.task_seed, index])
        numbers = [int(x) for x in rng.integers(1, self.max_number + 1, size=self.n_numbers)]
        # Build a reachable target by combining the numbers in a random order with + - *.
        order = rng.permutation(self.n_numbers)
        value, expr = numbers[order[0]], str(numbers[order[0]])
        for i in order[1:]:
            op = "+-*"[int(rng.integers(3))]
            value = value + numbers[i] if op == "+" else value - numbers[i] if op == "-" else value * numbers[i]
            expr = f"({expr} {op} {numbers[i]})"
        prompt = (f"Use the numbers {numbers} (each at most once) with + - * / and parentheses to make {value}. "
                  "Give the expression on the last line as 'Answer: <expression>'.")
        return Task(id=f"countdown-{self.task_seed}-{index}",
                    messages=(system("You are good at arithmetic puzzles."), user(prompt)),
                    answer={"numbers": numbers, "target": value, "example": expr})

    def verify(self, task: Task, action: str) -> Verdict:
        numbers, target = task.answer["numbers"], task.answer["target"]  # type: ignore[index]
        expr = extract_expression(action)
        if expr is None:
            msg = "No arithmetic expression found. End your reply with 'Answer: <expression>'."
            return Verdict(reward=0.0, success=False, feedback=msg, parse_error=msg)
        try:
            value, used = evaluate(expr)
        except ValueError as e:
            return Verdict(reward=0.0, success=False, feedback=f"The expression {expr!r} cannot be used: {e}.")
        extra = Counter(used) - Counter(numbers)
        if extra:
            bad = ", ".join(str(n) for n in sorted(extra))
            return Verdict(reward=0.0, success=False,
                           feedback=f"The expression uses {bad}, which is not among the given numbers (or is used too often).")
        if value != target:
            shown = str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"
            return Verdict(reward=0.0, success=False, feedback=f"The expression {expr} equals {shown}, not {target}.",
                           oracle_feedback=f"The expression {expr} equals {shown}, not {target}. "
                                           f"One solution: {task.answer['example']}.")  # type: ignore[index]
        return Verdict(reward=1.0, success=True, feedback=f"Correct: {expr} = {target}.")
