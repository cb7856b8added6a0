"""Tool-augmented math: a calculator and a sandboxed Python tool over a math task environment.

The tasks and their verifier come from another registered single-turn environment (``source``,
default ``math/arith-v0``; ``math/gsm8k-v0`` works the same): its prompt is shown with the tool
schemas, the policy may call

* ``calculator(expression)``: arithmetic on numbers with ``+ - * / // % **``, parentheses and
  ``sqrt, abs, round, floor, ceil, min, max`` (parsed with :mod:`ast`, never ``eval``; exponents
  and results are bounded so a call cannot hang the process);
* ``python(code)``: runs ``code`` in :func:`agentloop.sandbox.get_sandbox` (``sandbox="auto"``) with
  a time limit and returns its stdout (or the error);

and its final answer (a reply with no tool call) is judged by the source environment's ``verify``.
Not covered: tools other than these two; the Python tool is only as isolated as the chosen
sandbox backend (see ``agentloop.sandbox``).
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Sequence
from typing import Any, Literal

from langchain_core.tools import BaseTool, StructuredTool

from agentloop.env import Task, TaskEnv, Verdict
from agentloop.errors import ConfigError

from .env import ToolEnv

_BIN = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCS = {"sqrt": math.sqrt, "abs": abs, "round": round, "floor": math.floor, "ceil": math.ceil, "min": min, "max": max}
_LIMIT = 1e100


def _eval(node: ast.AST) -> float | int:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BIN:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow) and (abs(right) > 1000 or abs(left) > 1e6 and abs(right) > 10):
            raise ValueError("exponent too large for the calculator")
        out = _BIN[type(node.op)](left, right)
        if isinstance(out, complex) or abs(out) > _LIMIT:
            raise ValueError("result out of range")
        return out
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS and not node.keywords:
        return _FUNCS[node.func.id](*(_eval(a) for a in node.args))
    raise ValueError(f"unsupported expression element {type(node).__name__}; use numbers, + - * / // % **, "
                     f"parentheses and {', '.join(_FUNCS)}")


def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression and return the result.

    Args:
        expression: The expression, e.g. '(12.5 * 4) - 3 / 2' or 'sqrt(2) ** 2'.
    """
    try:
        tree = ast.parse(expression.replace("^", "**"), mode="eval")
    except SyntaxError as e:
        raise ValueError(f"not an arithmetic expression: {e.msg}") from e
    value = _eval(tree)
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        value = int(value)
    return str(value)


def python_tool(sandbox: Any, timeout_s: float) -> BaseTool:
    """The ``python`` tool bound to a sandbox (created by the caller, closed by the environment)."""

    def python(code: str) -> str:
        """Run Python code in a sandbox and return what it prints. Print the values you need.

        Args:
            code: A complete Python program; its stdout is returned.
        """
        result = sandbox.run(code, timeout_s=timeout_s)
        out = result.stdout.strip()
        if result.status != "ok":
            return f"[{result.status}] {result.stderr.strip()[-1500:] or 'no output'}" + (f"\nstdout: {out}" if out else "")
        return out[-4000:] or "(no output: print the result)"

    return StructuredTool.from_function(python, parse_docstring=True)


class CalcMathEnv(ToolEnv):
    """Math tasks of ``source`` solved with a calculator and a Python tool (see the module docstring)."""

    def __init__(self, source: str = "math/arith-v0", source_kwargs: dict[str, Any] | None = None,
                 max_replies: int = 6, python: bool = True, sandbox: str = "auto", timeout_s: float = 5.0,
                 tool_prompt: Literal["text", "native"] = "text"):
        super().__init__(max_replies=max_replies, system_prompt="Solve the problem. You may use the tools for arithmetic.",
                         tool_prompt=tool_prompt)
        from agentloop.registry import make

        inner = make(source, **(source_kwargs or {})).unwrapped
        if not isinstance(inner, TaskEnv):
            raise ConfigError(f"CalcMathEnv: source {source!r} must be a single-turn TaskEnv, got {type(inner).__name__}.")
        self.inner = inner
        self.use_python = python
        self.sandbox_kind = sandbox
        self.timeout_s = timeout_s
        self._sandbox: Any = None

    def num_tasks(self) -> int:
        return self.inner.num_tasks()

    def get_task(self, index: int) -> Task:
        return self.inner.get_task(index)

    def verify(self, task: Task, action: str) -> Verdict:
        return self.inner.verify(task, action)

    def _get_sandbox(self) -> Any:
        if self._sandbox is None:
            from agentloop.sandbox import get_sandbox  # lazy: the sandbox may not be installed/usable here

            self._sandbox = get_sandbox(self.sandbox_kind)
        return self._sandbox

    def tools_for(self, task: Task) -> Sequence[Any]:
        tools: list[Any] = [calculator]
        if self.use_python:
            tools.append(python_tool(_LazySandbox(self), self.timeout_s))
        return tools

    def close(self) -> None:
        if self._sandbox is not None:
            try:
                self._sandbox.close()
            finally:
                self._sandbox = None
        super().close()


class _LazySandbox:
    """Creates the sandbox on the first ``python`` call, so episodes that never run code need none."""

    def __init__(self, env: CalcMathEnv):
        self.env = env

    def run(self, code: str, *, timeout_s: float = 5.0) -> Any:
        return self.env._get_sandbox().run(code, timeout_s=timeout_s)


__all__ = ["CalcMathEnv", "calculator", "python_tool"]
