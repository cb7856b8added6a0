"""Code extraction and test execution for code environments (importable helpers for the algorithms).

* :func:`extract_code`: the program in a model reply: the first fenced block tagged ``python``/``py``
  (or untagged), a block left open by a stop string, or the whole reply when it parses as Python.
* :func:`build_program`: the test harness. The solution, then the setup code (MBPP's
  ``test_setup_code`` builds fixtures from the solution's classes, so it runs after it), then each
  test run in one namespace inside one sandboxed program; each test's outcome is reported on stdout on a line that
  starts with a per-run random marker, so that printing by the solution cannot forge or hide results
  (a solution would have to introspect the harness's frames to find the marker; not defended).
  A solution that calls ``exit()`` fails every test instead of skipping them.
* :func:`run_tests` / :func:`run_tests_many`: build, run in the sandbox, parse into a
  :class:`TestReport` with the fraction of tests passed and LeTI-style feedback: the failing assert
  (with the value the call returned when the test is ``assert f(...) == expected``), or the
  traceback, or "timeout", trimmed to :data:`FEEDBACK_CHARS`.
"""

from __future__ import annotations

import ast
import json
import re
import secrets
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from agentloop.sandbox import ExecResult, Sandbox

FEEDBACK_CHARS = 1200
FENCE_RE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)


def extract_code(text: str) -> str | None:
    """The Python program in a reply, or None when there is none."""
    if not text or not text.strip():
        return None
    blocks = [(lang.lower(), body) for lang, body in FENCE_RE.findall(text)]
    for wanted in (("python", "py", "python3"), ("",)):
        for lang, body in blocks:
            if lang in wanted and body.strip():
                return body.strip("\n")
    if blocks:
        return None  # only blocks in other languages
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return None
    # Prose that happens to parse (a bare name or number) is not code.
    if any(isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom, ast.Assign)) for n in tree.body):
        return text.strip("\n")
    return None


class TestOutcome(BaseModel):
    """One test's result inside the harness."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    index: int
    passed: bool
    message: str = ""


class TestReport(BaseModel):
    """What running a solution against its tests gave."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    passed: bool = Field(description="Every test passed.")
    tests_passed: int
    tests_total: int
    outcomes: tuple[TestOutcome, ...] = ()
    feedback: str = Field(description="LeTI-style feedback: failing assert, traceback or 'timeout' (trimmed).")
    stage: str = Field(description="ok | no_code | syntax | load | test | timeout | crash | sandbox")
    result: ExecResult | None = None

    @property
    def fraction(self) -> float:
        return self.tests_passed / self.tests_total if self.tests_total else 0.0


HARNESS = r'''
import io as _io, json as _json, os as _os, sys as _sys, traceback as _tb, linecache as _lc, ast as _ast
_M = {marker!r}
_SETUP = {setup!r}
_SOLUTION = {solution!r}
_TESTS = {tests!r}
def _emit(kind, i, ok, msg):
    line = _M + " " + _json.dumps([kind, i, ok, msg[-4000:]]) + "\n"
    try:
        _os.write(1, line.encode("utf-8", "replace"))
    except OSError:
        pass
def _trace(e, name):
    if isinstance(e, SyntaxError):
        return "".join(_tb.format_exception_only(type(e), e))
    tb = e.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != name:
        tb = tb.tb_next
    return "".join(_tb.format_exception(type(e), e, tb if tb is not None else e.__traceback__))
def _load(name, src, g):
    _lc.cache[name] = (len(src), None, src.splitlines(True), name)
    exec(compile(src, name, "exec"), g)
def _actual(test, g):
    try:
        node = _ast.parse(test).body[0]
        if isinstance(node, _ast.Assert) and isinstance(node.test, _ast.Compare) and len(node.test.ops) == 1 \
                and isinstance(node.test.ops[0], _ast.Eq):
            call = _ast.get_source_segment(test, node.test.left)
            return " (" + call + " returned " + repr(eval(call, g))[:300] + ")"
    except BaseException:
        pass
    return ""
def _main():
    g = {{"__name__": "__main__"}}
    _sys.stdout = _io.StringIO()  # the solution's prints are not part of the protocol
    for kind, name, src in (("load", "<solution>", _SOLUTION), ("setup", "<setup>", _SETUP)):
        try:
            _load(name, src, g)
        except SystemExit:
            _emit(kind, -1, False, "The program called exit() before the tests ran."); return
        except BaseException as e:
            _emit(kind, -1, False, _trace(e, name)); return
    for i, test in enumerate(_TESTS):
        name = "<test %d>" % i
        try:
            _load(name, test, g)
            _emit("test", i, True, "")
        except AssertionError as e:
            _emit("test", i, False, "AssertionError: " + test.strip() + _actual(test, g))
        except SystemExit:
            _emit("test", i, False, "The program called exit() during the test: " + test.strip())
        except BaseException as e:
            _emit("test", i, False, _trace(e, name))
_main()
'''


def build_program(solution: str, tests: Sequence[str], setup: str = "", marker: str | None = None) -> tuple[str, str]:
    """The harness program and its marker (random when not given)."""
    marker = marker or "@@agentloop-" + secrets.token_hex(8)
    return HARNESS.format(marker=marker, setup=setup, solution=solution, tests=list(tests)), marker


def trim(text: str, limit: int = FEEDBACK_CHARS) -> str:
    """Keep the end of long feedback (where the error is), marking the cut."""
    text = text.strip()
    return text if len(text) <= limit else "...\n" + text[-(limit - 4):]


def parse_report(result: ExecResult, marker: str, n_tests: int) -> TestReport:
    """Turn the harness's output into a TestReport."""
    events = []
    for line in result.stdout.splitlines():
        if line.startswith(marker + " "):
            try:
                events.append(json.loads(line[len(marker) + 1:]))
            except json.JSONDecodeError:
                continue
    outcomes = tuple(TestOutcome(index=i, passed=bool(ok), message=msg) for kind, i, ok, msg in events if kind == "test")
    n_ok = sum(o.passed for o in outcomes)
    failed = next((e for e in events if not e[2]), None)
    if failed is not None and failed[0] in ("setup", "load"):
        stage = "syntax" if "SyntaxError" in failed[3] or "IndentationError" in failed[3] else failed[0]
        feedback = failed[3]
    elif failed is not None:
        stage, feedback = "test", failed[3]
    elif len(outcomes) == n_tests:
        stage, feedback = "ok", f"All {n_tests} tests passed."
    elif result.status == "timeout":
        stage, feedback = "timeout", f"Timeout: the program did not finish within the time limit (while running test {len(outcomes) + 1})."
    elif result.status == "sandbox_error":
        stage, feedback = "sandbox", "The sandbox failed to run the program: " + result.stderr
    else:
        stage = "crash"
        feedback = (f"The program exited before the tests finished (exit code {result.exit_code}).\n"
                    + trim(result.stderr)).strip()
        if result.status == "killed":
            feedback = f"The program was killed (signal {-(result.exit_code or 0)}): it may have exceeded the memory limit. " + feedback
    if result.status == "timeout" and stage == "test" and failed is None:
        stage = "timeout"
    return TestReport(passed=stage == "ok", tests_passed=n_ok, tests_total=n_tests, outcomes=outcomes,
                      feedback=trim(feedback), stage=stage, result=result)


def no_code_report(n_tests: int) -> TestReport:
    return TestReport(passed=False, tests_passed=0, tests_total=n_tests, stage="no_code",
                      feedback="No Python code found in your reply. Write the complete function in a ```python code block.")


def run_tests_many(items: Sequence[tuple[str | None, Sequence[str], str]], sandbox: Sandbox,
                   timeout_s: float = 5.0) -> list[TestReport]:
    """Run many ``(solution or None, tests, setup)`` items in parallel; None means no code was found."""
    programs, markers, where = [], [], []
    for i, (solution, tests, setup) in enumerate(items):
        if solution is not None:
            program, marker = build_program(solution, tests, setup)
            programs.append(program)
            markers.append(marker)
            where.append(i)
    results = sandbox.run_many(programs, timeout_s=timeout_s) if programs else []
    reports: list[TestReport | None] = [None] * len(items)
    for i, result, marker in zip(where, results, markers):
        reports[i] = parse_report(result, marker, len(items[i][1]))
    return [r if r is not None else no_code_report(len(items[i][1])) for i, r in enumerate(reports)]


def run_tests(solution: str | None, tests: Sequence[str], sandbox: Sandbox, setup: str = "",
              timeout_s: float = 5.0) -> TestReport:
    """Run one solution against its tests in the sandbox."""
    return run_tests_many([(solution, tests, setup)], sandbox, timeout_s)[0]


__all__ = ["FEEDBACK_CHARS", "TestOutcome", "TestReport", "build_program", "extract_code", "parse_report",
           "run_tests", "run_tests_many", "trim"]
