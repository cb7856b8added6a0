"""The sandbox's default interpreter: the fastest compatible build of this Python (issue 26, item 3)."""

from __future__ import annotations

import os
import sys

from agentloop.sandbox.base import SandboxConfig
from agentloop.sandbox.pool import (_is_binary, candidate_interpreters, fastest_interpreter, interpreter,
                                    interpreter_timings, probe_interpreter)


def test_candidates_are_binaries_of_this_python():
    found = candidate_interpreters()
    assert os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable) in found
    assert all(os.path.isabs(p) and _is_binary(p) for p in found)
    assert len(found) == len(set(found))


def test_incompatible_interpreters_are_refused(tmp_path):
    other = tmp_path / "python-other"
    other.write_text("#!/bin/sh\necho 2.7\n")
    other.chmod(0o755)
    assert not _is_binary(str(other))  # a wrapper script is never a candidate
    assert probe_interpreter(str(other), runs=1) is None  # another version
    assert probe_interpreter(str(tmp_path / "missing"), runs=1) is None


def test_the_default_is_the_fastest_compatible_one():
    timings = interpreter_timings()
    ok = {p: t for p, t in timings.items() if t is not None}
    assert ok, timings  # this Python's own base interpreter at least
    assert fastest_interpreter() == min(ok, key=ok.get)
    assert interpreter(SandboxConfig()) == fastest_interpreter()
    assert interpreter(SandboxConfig(python="/usr/bin/python3")) == "/usr/bin/python3"  # an explicit choice wins
