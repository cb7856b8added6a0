"""Code environments: MBPP and user task files, verified by running tests in the sandbox.

* ``code/mbpp-v0``: MBPP (Austin et al. 2021; CC BY 4.0, see ``data/mbpp/SOURCE.md``), 974 tasks
  with the standard splits by task id: ``prompt`` 1-10, ``test`` 11-510, ``validation`` 511-600,
  ``train`` 601-974. The prompt is the task text, the first test, and an instruction to answer
  in a ```python block (the format measured to work best for the default model).
* ``code/tasks-v0``: tasks from a JSONL file, one object per line::

      {"id": "add", "prompt": "Write add(a, b) ...", "tests": ["assert add(1, 2) == 3"],
       "setup": "import math", "reference": "def add(a, b):\\n    return a + b"}

  ``prompt`` (shown verbatim) and ``tests`` (a non-empty list of Python statements, usually asserts)
  are required; ``id`` defaults to the line number; ``setup`` runs after the solution and before the
  tests (MBPP's convention: imports or fixtures the tests need);
  ``reference`` (a known-good solution) is only used in oracle feedback. Without ``path`` the
  environment serves the three examples in ``data/example_tasks.jsonl``.

Reward 1 when every test passes; ``info`` carries ``tests_passed``, ``tests_total``,
``pass_fraction`` and ``stage`` (ok, no_code, syntax, load, test, timeout, crash, sandbox). The
feedback is LeTI's: the failing assert, the traceback, or "timeout". Programs run in
:func:`agentloop.sandbox.shared_sandbox` (one worker pool per process, shared by every instance).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from agentloop.env import Task, TaskEnv, Verdict
from agentloop.environments.code.execution import (TestReport, extract_code, reference_names, run_tests,
                                                   run_tests_many)
from agentloop.errors import ConfigError
from agentloop.sandbox import Sandbox, shared_sandbox
from agentloop.types import user

MBPP_FILE = Path(__file__).parent / "data" / "mbpp" / "mbpp.jsonl"
EXAMPLE_TASKS = Path(__file__).parent / "data" / "example_tasks.jsonl"
MBPP_SPLITS = {"prompt": (1, 10), "test": (11, 510), "validation": (511, 600), "train": (601, 974)}
MBPP_PROMPT = "{text}\nYour code should pass this test:\n{test}\nWrite the Python function in a ```python code block."
CODE_RETRY_INSTRUCTION = (
    "There might be an error in the solution above because of lack of understanding of the question. "
    "Please correct the error, if any, and rewrite the solution. Only output the final correct Python program!"
)


@lru_cache(maxsize=1)
def load_mbpp() -> tuple[dict, ...]:
    """All 974 MBPP rows (revision 30adf0ec), ordered by task_id."""
    with open(MBPP_FILE, encoding="utf-8") as f:
        return tuple(sorted((json.loads(line) for line in f), key=lambda r: r["task_id"]))


class CodeTaskEnv(TaskEnv):
    """Base of code environments: tasks carry ``answer = {"tests": [...], "setup": str}``."""

    retry_instruction = CODE_RETRY_INSTRUCTION

    def __init__(self, sandbox: Literal["auto", "local", "process", "docker"] = "auto", timeout_s: float = 5.0):
        super().__init__()
        if not timeout_s > 0:
            raise ConfigError(f"timeout_s must be > 0 seconds, got {timeout_s}.")
        self.sandbox_kind = sandbox
        self.timeout_s = timeout_s

    def run(self, task: Task, solution: str | None) -> TestReport:
        answer = task.answer if isinstance(task.answer, dict) else {}
        tests, setup = list(answer.get("tests", [])), str(answer.get("setup") or "")
        return run_tests(solution, tests, shared_sandbox(self.sandbox_kind), setup=setup, timeout_s=self.timeout_s,
                         program_names=reference_names(answer.get("reference"), tests, setup))

    @staticmethod
    def feedback_uptake(previous: Mapping[str, Any], action: str, current: Mapping[str, Any]) -> bool | None:
        """After a ``NameError: name 'f' is not defined``, the next attempt defines ``f`` (:func:`defines_named`);
        None after any other feedback (a failing assert names no single fix one can check)."""
        return defines_named(str(previous.get("feedback") or ""), action)

    def verify(self, task: Task, action: str) -> Verdict:
        code = extract_code(action)
        report = self.run(task, code)
        reference = task.answer.get("reference") if isinstance(task.answer, dict) else None
        return code_verdict(report, code, task.answer["tests"], reference)  # type: ignore[index]


NAME_ERROR_RE = re.compile(r"NameError: name '([A-Za-z_][A-Za-z0-9_]*)' is not defined")


def defines_named(feedback: str, reply: str) -> bool | None:
    """Whether ``reply``'s code binds, at its top level, the name the last ``NameError`` of ``feedback`` says
    is not defined (a ``def``, a ``class``, an assignment or an import); None when ``feedback`` has no
    ``NameError``. Code that does not parse binds nothing.

    >>> defines_named("NameError: name 'fn_04d616' is not defined", "def fn_04d616(x): return x")
    True
    """
    import ast

    found = NAME_ERROR_RE.findall(feedback)
    if not found:
        return None
    try:
        tree = ast.parse(extract_code(reply) or "")
    except (SyntaxError, ValueError):
        return False
    bound: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            bound |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return found[-1] in bound


def code_verdict(report: TestReport, code: str | None, tests: Sequence[str], reference: str | None) -> Verdict:
    """The verdict of a code task: passed iff every test passed; ``oracle_feedback`` adds ``tests`` and the
    reference solution, the plain feedback never does."""
    oracle = None
    if not report.passed:
        oracle = report.feedback + "\nAll tests:\n" + "\n".join(tests)
        if reference:
            oracle += f"\nA correct solution:\n```python\n{reference}\n```"
    return Verdict(
        reward=float(report.passed), success=report.passed, feedback=report.feedback, oracle_feedback=oracle,
        parse_error="no code found" if code is None else None,
        info={"tests_passed": report.tests_passed, "tests_total": report.tests_total,
              "pass_fraction": report.fraction, "stage": report.stage,
              "exec_status": report.result.status if report.result else None},
    )


def run_task_tests(tasks: Sequence[Task], replies: Sequence[str], sandbox: Sandbox | None = None,
                   timeout_s: float = 5.0) -> list[TestReport]:
    """Batch check: extract the code of each reply and run it against its task's tests, in parallel.

    The algorithms' entry point (e.g. LeTI executes many samples per step)::

        reports = run_task_tests([env.get_task(i) for i in idx], replies)
        rewards = [float(r.passed) for r in reports]; feedback = [r.feedback for r in reports]
    """
    if len(tasks) != len(replies):
        raise ConfigError(f"run_task_tests: got {len(tasks)} tasks but {len(replies)} replies; pass one reply per task.")
    items, names = [], []
    for task, reply in zip(tasks, replies):
        answer = task.answer if isinstance(task.answer, dict) else {}
        tests, setup = list(answer.get("tests", [])), str(answer.get("setup") or "")
        items.append((extract_code(reply), tests, setup))
        names.append(reference_names(answer.get("reference"), tests, setup))
    return run_tests_many(items, sandbox or shared_sandbox("auto"), timeout_s, program_names=names)


class MBPPEnv(CodeTaskEnv):
    """``make("code/mbpp-v0", split="test")``."""

    def __init__(self, split: Literal["prompt", "test", "validation", "train"] = "test",
                 sandbox: Literal["auto", "local", "process", "docker"] = "auto", timeout_s: float = 5.0,
                 limit: int | None = None):
        super().__init__(sandbox=sandbox, timeout_s=timeout_s)
        if split not in MBPP_SPLITS:
            raise ConfigError(f"code/mbpp-v0: split must be one of {', '.join(MBPP_SPLITS)}, got {split!r}.")
        lo, hi = MBPP_SPLITS[split]
        self.split = split
        self._rows = [r for r in load_mbpp() if lo <= r["task_id"] <= hi][:limit]

    def num_tasks(self) -> int:
        return len(self._rows)

    def get_task(self, index: int) -> Task:
        row = self._rows[index]
        prompt = MBPP_PROMPT.format(text=row["text"], test=row["test_list"][0])
        return Task(id=f"mbpp-{row['task_id']}", messages=(user(prompt),),
                    answer={"tests": row["test_list"], "setup": row["test_setup_code"],
                            "reference": row["code"].replace("\r\n", "\n")},
                    metadata={"task_id": row["task_id"], "split": self.split})


def load_task_file(path: str | Path) -> list[dict]:
    """Read and validate a JSONL task file (see the module docstring for the format)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"code/tasks-v0: task file {str(p)!r} does not exist; pass path= a JSONL file.")
    tasks, seen = [], set()
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{p}:{n}: not valid JSON ({e}).") from e
        if not isinstance(row, dict) or not isinstance(row.get("prompt"), str) or not row["prompt"].strip():
            raise ConfigError(f"{p}:{n}: each line must be an object with a non-empty 'prompt' string.")
        tests = row.get("tests")
        if not isinstance(tests, list) or not tests or not all(isinstance(t, str) for t in tests):
            raise ConfigError(f"{p}:{n}: 'tests' must be a non-empty list of Python statements (strings).")
        unknown = set(row) - {"id", "prompt", "tests", "setup", "reference"}
        if unknown:
            raise ConfigError(f"{p}:{n}: unknown field(s) {sorted(unknown)}; allowed: id, prompt, tests, setup, reference.")
        tid = str(row.get("id", n))
        if tid in seen:
            raise ConfigError(f"{p}:{n}: duplicate task id {tid!r}; ids must be unique.")
        seen.add(tid)
        tasks.append({"id": tid, "prompt": row["prompt"], "tests": tests, "setup": str(row.get("setup") or ""),
                      "reference": row.get("reference")})
    if not tasks:
        raise ConfigError(f"code/tasks-v0: {p} holds no tasks.")
    return tasks


class CodeTasksEnv(CodeTaskEnv):
    """``make("code/tasks-v0", path="my_tasks.jsonl")``: user tasks, no code needed."""

    def __init__(self, path: str = str(EXAMPLE_TASKS), sandbox: Literal["auto", "local", "process", "docker"] = "auto",
                 timeout_s: float = 5.0):
        super().__init__(sandbox=sandbox, timeout_s=timeout_s)
        self.path = str(path)
        self._tasks = load_task_file(path)

    def num_tasks(self) -> int:
        return len(self._tasks)

    def get_task(self, index: int) -> Task:
        t = self._tasks[index]
        return Task(id=t["id"], messages=(user(t["prompt"]),),
                    answer={"tests": t["tests"], "setup": t["setup"], "reference": t["reference"]})


__all__ = ["CODE_RETRY_INSTRUCTION", "CodeTaskEnv", "CodeTasksEnv", "MBPPEnv", "MBPP_SPLITS", "defines_named",
           "load_mbpp", "load_task_file", "run_task_tests"]
