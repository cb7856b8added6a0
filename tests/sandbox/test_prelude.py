"""Preludes: module sources the workers load once before their template forks (issue 26, item 4)."""

from __future__ import annotations

import pytest

from agentloop.environments.code.execution import (PRELUDE_NAME, build_program, has_prelude, parse_report,
                                                   run_tests)
from agentloop.sandbox import get_sandbox
from agentloop.sandbox.local import bwrap_status
from agentloop.sandbox.pool import PRELUDES

pytestmark = pytest.mark.skipif(not bwrap_status()[0], reason=f"bubblewrap unavailable: {bwrap_status()[1]}")


@pytest.fixture
def registered():
    PRELUDES["_test_prelude_ok"] = "VALUE = 41\ndef bump():\n    global VALUE\n    VALUE += 1\n    return VALUE\n"
    PRELUDES["_test_prelude_broken"] = "raise RuntimeError('no')\n"
    yield
    del PRELUDES["_test_prelude_ok"], PRELUDES["_test_prelude_broken"]


def test_workers_load_registered_preludes_and_runs_do_not_share_them(registered):
    with get_sandbox("local", workers=1) as sb:
        assert "_test_prelude_ok" in sb.preludes and "_test_prelude_broken" not in sb.preludes
        assert PRELUDE_NAME in sb.preludes and has_prelude(sb)
        code = "import sys\nprint(sys.modules['_test_prelude_ok'].bump())"
        # each run starts from the template's copy: a change made by one run is gone in the next
        assert [sb.run(code).stdout for _ in range(3)] == ["42\n"] * 3


def test_programs_with_and_without_the_prelude_judge_alike():
    tests = ["assert add(1, 2) == 3", "for a in range(3):\n    assert add(a, a) == 2 * a", "assert add(0, 0) == 1"]
    with get_sandbox("local", workers=1) as sb:
        for prelude in (True, False):
            program, harness = build_program("def add(a, b):\n    return a + b\n", tests, prelude=prelude,
                                             program_names={"add"})
            assert (PRELUDE_NAME in program) == prelude and (len(program) < 2000) == prelude
            report = parse_report(sb.run(program), harness)
            assert [o.passed for o in report.outcomes] == [True, True, False]
        assert run_tests("def add(a, b):\n    return a + b\n", tests[:2], sb, program_names={"add"}).passed
