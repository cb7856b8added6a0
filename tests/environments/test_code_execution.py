"""Code extraction and the test harness (environments/code/execution.py), run in the real local sandbox."""

from __future__ import annotations

import pytest

from agentloop.environments.code.execution import (build_program, extract_code, plan_tests, run_expressions, run_tests,
                                                   run_tests_many)
from agentloop.sandbox import get_sandbox
from agentloop.sandbox.local import bwrap_status

needs_bwrap = pytest.mark.skipif(not bwrap_status()[0], reason=f"bubblewrap unavailable: {bwrap_status()[1]}")
TESTS = ["assert add(1, 2) == 3", "assert add(0, 0) == 0", "assert add(-1, -1) == -2"]


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        ("Here:\n```python\ndef f():\n    return 1\n```\nDone.", "def f():\n    return 1"),
        ("```py\nx = 1\n```", "x = 1"),
        ("```\ny = 2\n```", "y = 2"),
        ("```bash\nls\n```\n```python\nz = 3\n```", "z = 3"),
        ("```python\ndef g():\n    return 2\n", "def g():\n    return 2"),  # cut by a stop string
        ("def h(x):\n    return x", "def h(x):\n    return x"),  # bare code
        ("import math", "import math"),
        ("The answer is 42.", None),
        ("hello", None),
        ("", None),
        ("```bash\nrm -rf /\n```", None),
        ("```python\n\n```", None),
    ],
)
def test_extract_code(reply, code):
    assert extract_code(reply) == code


@pytest.fixture(scope="module")
def sb():
    if not bwrap_status()[0]:
        pytest.skip("bubblewrap unavailable")
    sandbox = get_sandbox("local", workers=2, memory_mb=256)
    yield sandbox
    sandbox.close()


@needs_bwrap
def test_all_tests_pass(sb):
    r = run_tests("def add(a, b):\n    return a + b", TESTS, sb)
    assert (r.passed, r.tests_passed, r.fraction, r.stage) == (True, 3, 1.0, "ok")
    assert r.feedback == "All 3 tests passed."


@needs_bwrap
def test_partial_pass_reports_fraction_and_the_failing_assert(sb):
    r = run_tests("def add(a, b):\n    return abs(a) + abs(b)", TESTS, sb)
    assert (r.passed, r.tests_passed, r.stage) == (False, 2, "test")
    assert r.fraction == pytest.approx(2 / 3)
    assert r.feedback == "AssertionError: assert add(-1, -1) == -2 (add(-1, -1) returned 2)"
    assert [o.passed for o in r.outcomes] == [True, True, False]


@needs_bwrap
def test_syntax_error_no_code_and_runtime_error(sb):
    r = run_tests("def add(a, b)\n    return a + b", TESTS, sb)
    assert r.stage == "syntax" and "SyntaxError" in r.feedback and "<solution>" in r.feedback
    assert "_main" not in r.feedback and "_load" not in r.feedback  # harness frames are hidden
    r = run_tests(None, TESTS, sb)
    assert r.stage == "no_code" and "```python" in r.feedback and r.result is None
    r = run_tests("def add(a, b):\n    return a + undefined_name", TESTS, sb)
    assert r.stage == "test" and "NameError: name 'undefined_name' is not defined" in r.feedback
    assert r.feedback.startswith("Traceback") and 'File "<solution>", line 2, in add' in r.feedback
    r = run_tests("import numpy_that_does_not_exist\ndef add(a, b): return a + b", TESTS, sb)
    assert r.stage == "load" and "ModuleNotFoundError" in r.feedback


@needs_bwrap
def test_timeout_and_early_exit_fail(sb):
    r = run_tests("def add(a, b):\n    while True: pass", TESTS, sb, timeout_s=1)
    assert r.stage == "timeout" and r.feedback.startswith("Timeout") and r.tests_passed == 0
    r = run_tests("def add(a, b):\n    return a + b\nimport sys\nsys.exit(0)", TESTS, sb)
    assert not r.passed and "exit()" in r.feedback
    r = run_tests("def add(a, b):\n    return a + b\nimport os\nos._exit(0)", TESTS, sb)
    assert not r.passed and r.stage == "crash"


@needs_bwrap
def test_printed_markers_cannot_forge_results(sb):
    program, harness = build_program("def add(a, b): return 0", TESTS)
    fake = "print('" + harness.marker.split("-")[0] + "-0000 [\"test\", 0, true, \"\"]')\n"
    r = run_tests(fake + "import os\nos.write(1, b'@@agentloop-deadbeef [\"test\", 1, true, \"\"]\\n')\n"
                  "def add(a, b): return 0", TESTS, sb)
    assert not r.passed and r.tests_passed == 1  # only add(0, 0) == 0 really passes


@needs_bwrap
def test_feedback_is_trimmed(sb):
    r = run_tests("def add(a, b):\n    return add(a, b)", TESTS, sb)
    assert "RecursionError" in r.feedback and len(r.feedback) <= 1200


@needs_bwrap
def test_run_tests_many_keeps_order(sb):
    items = [("def add(a, b): return a + b", TESTS, ""), (None, TESTS, ""), ("def add(a, b): return a - b", TESTS, "")]
    reports = run_tests_many(items, sb)
    assert [r.stage for r in reports] == ["ok", "no_code", "test"]


# -- values the host holds (expected outputs computed elsewhere) and run_expressions ---------------------------------
def test_host_names_are_never_holes_and_never_reach_the_program():
    # ``E`` is the host's, even when the program binds the same name: a program cannot swap in its own E.
    for solution in ("def add(a, b): return a + b", "def add(a, b): return a + b\nE = [None]"):
        holes, checks = plan_tests(solution, ["assert add(1, 2) == E[0]"], host_names={"E"})
        assert [src for _, _, src in holes] == ["add(1, 2)"] and checks[0].left == ("add(1, 2)", 0)
    program, harness = build_program("def add(a, b): return a + b", ["assert add(1, 2) == E[0]"],
                                     host={"E": ["SECRET-EXPECTED"]})
    assert "SECRET-EXPECTED" not in program and harness.host == {"E": ["SECRET-EXPECTED"]}


@needs_bwrap
def test_run_tests_judges_against_host_values(sb):
    tests = ["assert add(1, 2) == E[0]", "assert add(2, 2) == E[1]"]
    r = run_tests("def add(a, b): return a + b\nE = [0, 0]", tests, sb, host={"E": [3, 4]})
    assert r.passed, r.feedback
    r = run_tests("def add(a, b): return a * b\nclass _A:\n    def __eq__(self, o): return True\nE = [_A(), _A()]",
                  tests, sb, host={"E": [3, 4]})
    assert not r.passed and r.tests_passed == 1 and "add(1, 2) returned 2" in r.feedback
    reports = run_tests_many([("def add(a, b): return a + b", tests, "")] * 2, sb, hosts=[{"E": [3, 4]}, {"E": [0, 0]}])
    assert [x.passed for x in reports] == [True, False]


@needs_bwrap
def test_run_expressions_reports_values_and_failures(sb):
    values, result = run_expressions("def f(x):\n    return [x / 2, {x}]", ["f(3)", "f(0)[0]", "f([])", "f"], sb)
    assert result.status == "ok"
    assert [v.ok for v in values] == [True, True, False, False]
    assert values[0].value == [1.5, {3}] and values[1].value == 0.0
    assert "TypeError" in values[2].message and "cannot be checked" in values[3].message
    assert "return" not in values[2].message  # only the error's last line: no source of the program
    values, _ = run_expressions("def f(:", ["f(1)", "f(2)"], sb)
    assert not any(v.ok for v in values) and "SyntaxError" in values[0].message
    values, result = run_expressions("def f(x):\n    while x: pass\n    return x", ["f(0)", "f(1)", "f(0)"], sb,
                                     timeout_s=1)
    assert [v.ok for v in values] == [True, False, False] and "timed out" in values[1].message
