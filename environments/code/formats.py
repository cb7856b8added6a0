"""Code tasks in the standard benchmark formats: HumanEval, MBPP and EvalPlus (HumanEval+/MBPP+).

* ``code/humaneval-format-v0 path=...``: one JSON object per line (``.jsonl``, ``.jsonl.gz``, or a
  JSON list) with ``prompt`` (signature and docstring), ``test`` (code defining ``check(candidate)``),
  ``entry_point`` (the function's name), optional ``task_id`` and ``canonical_solution`` (the body
  that continues ``prompt``). The policy sees the prompt and an instruction to complete the function.
* ``code/mbpp-format-v0 path=...``: MBPP's fields ``text`` (or ``prompt``), ``test_list``,
  ``test_setup_code``, optional ``task_id``, ``code`` (the reference solution) and
  ``challenge_test_list`` (extra tests, run with ``plus=True``).

**EvalPlus extra tests.** A record with ``base_input``/``plus_input`` (lists of argument lists, as in
EvalPlus's HumanEvalPlus/MbppPlus releases), a reference solution and an ``entry_point`` also gets one
test per input, ``assert f(args) == _agentloop_expected[i]``, that compares the candidate's output with
the reference's on that input, with EvalPlus's rule (:class:`Expected`): the same value and type, or
closeness within ``atol`` (the record's, or 1e-6). ``plus=False`` runs only the original tests;
``max_plus_inputs`` caps the count. EvalPlus's ``contract`` field is ignored. The Hugging Face copy of
HumanEval+ (``evalplus/humanevalplus``) instead folds the inputs and expected outputs into a large
``check``; that runs as one test. The reference's outputs are computed once per task, on its first
verify, in a sandbox run of their own (:func:`~agentloop.environments.code.execution.run_expressions`);
they come back as plain data and stay on the host (``env.expected(task)``), which compares them with the
candidate's reported outputs. The candidate's program contains neither the reference nor its outputs,
and nothing it does (patching builtins, ``copy.deepcopy``, ``os.write``, or defining
``_agentloop_expected`` itself) can reach the reference's run or the comparison. A reference that
raises on an input fails that test with ``ReferenceFailed`` (``agentloop envs check-gold`` lists the
task). Plus tests need the environment's ``run``/``verify`` (which hold the outputs): the batch helper
:func:`~agentloop.environments.code.envs.run_task_tests` does not know them.

**What the completion may be.** Either a body continuing the prompt (HumanEval's convention, with or
without its indentation), or a whole function, bare or in a fenced block; a whole function replaces
the prompt's stub and keeps what the prompt defines before it (imports, helpers).

Each ``check(candidate)`` whose body is only ``assert`` statements is split into one test per
assert, so the report says which case failed and what the call returned; any other ``check`` runs as
one test. Programs run through :func:`agentloop.environments.code.execution.run_tests` in the shared
sandbox. ``env.gold_reply(task)`` gives the reply the canonical solution makes, which ``agentloop envs
check-gold`` runs to find broken tasks.
"""

from __future__ import annotations

import ast
import builtins
import json
import re
import textwrap
from pathlib import Path
from typing import Any, Literal

from agentloop.env import Task, Verdict
from agentloop.environments.code.envs import MBPP_PROMPT, CodeTaskEnv, code_verdict
from agentloop.environments.code.execution import (FENCE_RE, TestReport, extract_code, reference_names, run_expressions,
                                                   run_tests)
from agentloop.environments.records import parse_json_records, read_text
from agentloop.errors import ConfigError
from agentloop.sandbox import shared_sandbox
from agentloop.types import user

HUMANEVAL_INSTRUCTION = ("Complete the following Python function. Reply with the whole function in a "
                         "```python code block.\n\n```python\n{prompt}```")
SandboxKind = Literal["auto", "local", "process", "docker"]

EXPECTED_NAME = "_agentloop_expected"  # the host-held reference outputs, as the plus tests name them


class ReferenceFailed(ValueError):
    """The reference solution gave no output for a plus input: the task is broken (``envs check-gold`` shows it)."""


def evalplus_close(out: object, exp: object, atol: float) -> bool:
    """EvalPlus's closeness for outputs with floats: within ``atol + 1e-7 * |exp|``, element-wise in lists/tuples."""
    if isinstance(exp, float) or isinstance(out, float):
        if isinstance(out, bool) or isinstance(exp, bool) or not isinstance(out, (int, float)) \
                or not isinstance(exp, (int, float)):
            return False
        if exp != exp:
            return out != out
        try:
            return out == exp or abs(out - exp) <= atol + 1e-07 * abs(exp)
        except OverflowError:  # an int too large for a float
            return False
    if isinstance(exp, (list, tuple)) and isinstance(out, (list, tuple)):
        return type(out) is type(exp) and len(out) == len(exp) and all(
            evalplus_close(o, e, atol) for o, e in zip(out, exp))
    return out == exp


class Expected:
    """A reference output held by the host, equal to an output when EvalPlus would accept it: the same value and
    type, or close within ``atol`` (1e-6 when the record gives none). Its repr hides the value from feedback."""

    __slots__ = ("value", "atol", "error")
    __hash__ = None  # type: ignore[assignment]

    def __init__(self, value: object, atol: float = 0.0, error: str = ""):
        self.value, self.atol, self.error = value, atol, error

    def __eq__(self, out: object) -> bool:
        if self.error:
            raise ReferenceFailed(f"the reference solution gave no output for this input ({self.error})")
        if self.atol == 0 and type(out) is type(self.value) and out == self.value:
            return True
        return evalplus_close(out, self.value, self.atol if self.atol else 1e-06)

    def __repr__(self) -> str:
        return "<the reference output>"


# -- reading files -------------------------------------------------------------------------------
def read_records(path: str | Path, fmt: str) -> list[dict[str, Any]]:
    """Records of a ``.jsonl``/``.jsonl.gz`` file (one object per line) or a ``.json`` list."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{fmt}: file {str(p)!r} does not exist; pass path= a JSONL file of {fmt} records.")
    rows = parse_json_records(read_text(p), p)
    if not rows:
        raise ConfigError(f"{fmt}: {p} holds no records.")
    for n, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise ConfigError(f"{p}: record {n} is not a JSON object.")
    return rows


def _require(row: dict[str, Any], fields: tuple[str, ...], where: str, fmt: str) -> None:
    missing = [f for f in fields if not isinstance(row.get(f), str) or not row[f].strip()]
    if missing:
        raise ConfigError(f"{where}: a {fmt} record needs non-empty string field(s) {missing}; "
                          f"it has {sorted(row)}.")


# -- completions ---------------------------------------------------------------------------------
def defines(code: str, name: str) -> bool:
    """Whether ``code`` defines a top-level function ``name`` (a regex when it does not parse)."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return re.search(rf"^(async\s+)?def\s+{re.escape(name)}\s*\(", code, re.MULTILINE) is not None
    return any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == name for n in tree.body)


def prompt_prefix(prompt: str, entry_point: str) -> str:
    """What the prompt defines before the entry point's ``def`` (imports, helpers)."""
    m = re.search(rf"^(async\s+)?def\s+{re.escape(entry_point)}\s*\(", prompt, re.MULTILINE)
    if m is None:
        return ""
    start = m.start()
    lines = prompt[:start].splitlines(keepends=True)
    while lines and lines[-1].lstrip().startswith("@"):  # keep decorators with their function
        start -= len(lines.pop())
    return prompt[:start]


def assemble_solution(prompt: str, completion: str, entry_point: str) -> str | None:
    """The program a completion stands for: a whole function, or the prompt continued by a body.

    >>> assemble_solution("def f(x):\\n", "    return x\\n", "f")
    'def f(x):\\n    return x\\n'
    """
    blocks = [body for lang, body in FENCE_RE.findall(completion) if lang.lower() in ("python", "py", "python3", "")]
    code = next((b for b in blocks if defines(b, entry_point)), blocks[0] if blocks else completion)
    if not code.strip():
        return None
    if defines(code, entry_point):
        return prompt_prefix(prompt, entry_point) + code.strip("\n") + "\n"
    code = code.strip("\n")
    first = next(line for line in code.splitlines() if line.strip())
    if not first[:1].isspace():  # a body written flush left: indent it under the signature
        code = textwrap.indent(code, "    ")
    head = prompt if prompt.endswith("\n") else prompt + "\n"
    return head + code + "\n"


# -- tests ---------------------------------------------------------------------------------------
def split_check(test: str, entry_point: str) -> tuple[list[str], str]:
    """``(tests, setup)`` for a HumanEval ``test``: one test per assert of ``check`` when it is only
    asserts (with ``candidate`` bound to the entry point in the setup), else ``check(entry_point)``."""
    whole = [f"check({entry_point})"], test
    try:
        tree = ast.parse(test)
    except SyntaxError:
        return whole
    check = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "check"), None)
    if check is None or len(check.args.args) != 1:
        return whole
    body = [s for s in check.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
    if not body or not all(isinstance(s, ast.Assert) for s in body):
        return whole
    arg = check.args.args[0].arg
    return [ast.unparse(s) for s in body], f"{test}\n{arg} = {entry_point}\n"


def _literal(args: Any) -> str | None:
    """Python source for ``args`` when repr round-trips (JSON-decoded inputs almost always do)."""
    text = repr(args)
    try:
        return text if ast.literal_eval(text) == args else None
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None


def plus_tests(row: dict[str, Any], entry_point: str, max_inputs: int | None) -> dict[str, Any] | None:
    """EvalPlus tests for a record, or None without inputs: ``{"tests", "setup", "calls", "atol"}``.

    ``tests[i]`` is ``assert f(args) == _agentloop_expected[i]``; ``calls[i]`` is its ``f(args)``, which the
    reference solution's own run evaluates to give the host ``_agentloop_expected[i]``; ``setup`` binds the
    inputs whose repr does not round-trip (empty when all do). Plain data: it goes into ``Task.answer``.
    """
    inputs = [*(row.get("base_input") or []), *(row.get("plus_input") or [])]
    if not inputs:
        return None
    inputs = [list(a) if isinstance(a, (list, tuple)) else [a] for a in inputs[:max_inputs]]
    calls = []
    for i, args in enumerate(inputs):
        literals = [_literal(a) for a in args]
        call = ", ".join(literals) if all(x is not None for x in literals) \
            else f"*_agentloop_copy.deepcopy(_agentloop_inputs[{i}])"  # type: ignore[arg-type]
        calls.append(f"{entry_point}({call})")
    setup = ""
    if any("_agentloop_inputs" in c for c in calls):
        setup = (f"import copy as _agentloop_copy, json as _agentloop_json\n"
                 f"_agentloop_inputs = _agentloop_json.loads({json.dumps(inputs)!r})\n")
    return {"tests": [f"assert {c} == {EXPECTED_NAME}[{i}]" for i, c in enumerate(calls)], "setup": setup,
            "calls": calls, "atol": float(row.get("atol") or 0)}


# -- environments --------------------------------------------------------------------------------
class _FormatEnv(CodeTaskEnv):
    """Shared verify for the format environments: ``answer`` holds tests, setup, prompt, entry point."""

    def __init__(self, sandbox: SandboxKind, timeout_s: float, limit: int | None):
        super().__init__(sandbox=sandbox, timeout_s=timeout_s)
        if limit is not None and limit < 1:
            raise ConfigError(f"limit must be >= 1 (or None for every record), got {limit}.")
        self._tasks: list[Task] = []
        self._expected: dict[tuple[str, str], list[Expected]] = {}  # (task id, reference) -> its plus outputs

    def num_tasks(self) -> int:
        return len(self._tasks)

    def get_task(self, index: int) -> Task:
        return self._tasks[index]

    def solution(self, task: Task, action: str) -> str | None:
        a = task.answer
        assert isinstance(a, dict)
        return assemble_solution(str(a["stub"]), action, str(a["entry_point"]))

    def gold_reply(self, task: Task) -> str | None:
        """The reply made of the task's reference solution (None when the record has none)."""
        a = task.answer
        if not isinstance(a, dict) or not a.get("reference"):
            return None
        return "```python\n" + str(a["reference"]).rstrip("\n") + "\n```"

    def expected(self, task: Task) -> list[Expected]:
        """The reference's outputs on the task's plus inputs, computed in their own sandbox run on first use and
        kept on the host (never in a program's reach); empty for a task without plus tests."""
        a = task.answer
        plus = a.get("plus") if isinstance(a, dict) else None
        if not plus:
            return []
        key = (task.id, str(a["reference"]))
        cached = self._expected.get(key)  # threads verifying the same task at once may both compute it: harmless
        if cached is not None:
            return cached
        values, result = run_expressions(str(a["reference"]), list(plus["calls"]), shared_sandbox(self.sandbox_kind),
                                         setup=str(a["setup"]), timeout_s=self.timeout_s)
        expected = [Expected(v.value, plus["atol"]) if v.ok else Expected(None, error=v.message) for v in values]
        if result.status in ("ok", "error"):  # a timeout, kill or sandbox failure (maybe load) is retried next time
            self._expected[key] = expected
        return expected

    def run(self, task: Task, solution: str | None) -> TestReport:
        a = task.answer
        assert isinstance(a, dict)
        host = {EXPECTED_NAME: self.expected(task)} if a.get("plus") and solution is not None else None
        names = a.get("names")
        names = frozenset(names) if names is not None else reference_names(a.get("reference"), a["tests"], a["setup"])
        return run_tests(solution, list(a["tests"]), shared_sandbox(self.sandbox_kind), setup=str(a["setup"]),
                         timeout_s=self.timeout_s, host=host, program_names=names)

    def verify(self, task: Task, action: str) -> Verdict:
        a = task.answer
        assert isinstance(a, dict)
        code = self.solution(task, action)
        return code_verdict(self.run(task, code), code, a["tests"][:20], a.get("reference"))


class HumanEvalFormatEnv(_FormatEnv):
    """``make("code/humaneval-format-v0", path="HumanEval.jsonl")``."""

    def __init__(self, path: str, plus: bool = True, max_plus_inputs: int | None = None, limit: int | None = None,
                 sandbox: SandboxKind = "auto", timeout_s: float = 10.0):
        super().__init__(sandbox, timeout_s, limit)
        self.path = str(path)
        for n, row in enumerate(read_records(path, "code/humaneval-format-v0")[:limit], start=1):
            where = f"{path} record {n}"
            _require(row, ("prompt", "test", "entry_point"), where, "HumanEval")
            prompt, entry = row["prompt"], row["entry_point"]
            tests, setup = split_check(row["test"], entry)
            # What the prompt defines besides the entry point (helpers such as encode_cyclic) is the test's own: the
            # tests use the prompt's version, whatever the candidate redefines; only the entry point is the program's.
            setup = prompt_prefix(prompt, entry) + "\n" + setup
            canonical = row.get("canonical_solution")
            reference = assemble_solution(prompt, canonical, entry) if isinstance(canonical, str) and canonical.strip() \
                else None
            extra = plus_tests(row, entry, max_plus_inputs) if plus and reference else None
            if extra is not None:
                tests, setup = [*tests, *extra["tests"]], f"{setup}\n{extra['setup']}"
            self._tasks.append(Task(
                id=str(row.get("task_id", n)), messages=(user(HUMANEVAL_INSTRUCTION.format(prompt=prompt)),),
                answer={"tests": tests, "setup": setup, "stub": prompt, "entry_point": entry, "reference": reference,
                        "plus": _plus_answer(extra), "names": [entry]},
                metadata={"plus_tests": len(extra["tests"]) if extra else 0}))


class MBPPFormatEnv(_FormatEnv):
    """``make("code/mbpp-format-v0", path="mbpp.jsonl")`` (MBPP or MBPP+ records)."""

    def __init__(self, path: str, plus: bool = True, max_plus_inputs: int | None = None, limit: int | None = None,
                 sandbox: SandboxKind = "auto", timeout_s: float = 10.0):
        super().__init__(sandbox, timeout_s, limit)
        self.path = str(path)
        for n, row in enumerate(read_records(path, "code/mbpp-format-v0")[:limit], start=1):
            where = f"{path} record {n}"
            text = row.get("text") if isinstance(row.get("text"), str) else row.get("prompt")
            if isinstance(text, str):  # MBPP+ wraps its prompt in a docstring
                text = text.strip().removeprefix('"""').removesuffix('"""').strip()
            tests = row.get("test_list")
            if not isinstance(text, str) or not text.strip():
                raise ConfigError(f"{where}: an MBPP record needs a non-empty 'text' (or 'prompt') string.")
            if not isinstance(tests, list) or not tests or not all(isinstance(t, str) for t in tests):
                raise ConfigError(f"{where}: 'test_list' must be a non-empty list of Python statements (strings).")
            setup = str(row.get("test_setup_code") or "")
            reference = row.get("code") if isinstance(row.get("code"), str) and row["code"].strip() else None
            reference = reference.replace("\r\n", "\n") if reference else None
            entry = row.get("entry_point") or _called_name(tests[0])
            all_tests = list(tests)
            if plus:
                all_tests += [t for t in row.get("challenge_test_list") or [] if isinstance(t, str)]
            extra = plus_tests(row, entry, max_plus_inputs) if plus and reference and entry else None
            if extra is not None:
                all_tests, setup = [*all_tests, *extra["tests"]], f"{setup}\n{extra['setup']}"
            self._tasks.append(Task(
                id=str(row.get("task_id", n)), messages=(user(MBPP_PROMPT.format(text=text.strip(), test=tests[0])),),
                answer={"tests": all_tests, "setup": setup, "stub": "", "entry_point": entry or "",
                        "reference": reference, "plus": _plus_answer(extra)},
                metadata={"plus_tests": len(extra["tests"]) if extra else 0}))

    def solution(self, task: Task, action: str) -> str | None:
        return extract_code(action)


def _plus_answer(extra: dict[str, Any] | None) -> dict[str, Any] | None:
    """What ``Task.answer["plus"]`` keeps of :func:`plus_tests`: the calls the reference evaluates, and ``atol``."""
    return {"calls": extra["calls"], "atol": extra["atol"]} if extra else None


def _called_name(test: str) -> str | None:
    """The function an MBPP test calls (``assert f(...) == ...`` -> ``f``)."""
    try:
        node = ast.parse(test).body[0]
    except (SyntaxError, IndexError):
        return None
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name) and not hasattr(builtins, sub.func.id):
            return sub.func.id
    return None


__all__ = ["Expected", "HumanEvalFormatEnv", "MBPPFormatEnv", "ReferenceFailed", "assemble_solution", "defines",
           "evalplus_close", "plus_tests", "prompt_prefix", "read_records", "split_check"]
