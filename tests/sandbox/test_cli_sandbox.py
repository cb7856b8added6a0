"""``agentloop sandbox``: availability report and containment smoke test."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from agentloop.cli import app
from agentloop.sandbox.local import bwrap_status


@pytest.mark.skipif(not bwrap_status()[0], reason=f"bubblewrap unavailable: {bwrap_status()[1]}")
def test_sandbox_command_reports_and_smoke_tests_local():
    result = CliRunner().invoke(app, ["sandbox", "--kind", "local"])
    assert result.exit_code == 0, result.output
    assert "available" in result.output and "FAILED" not in result.output
    for check in ("runs code", "no network", "timeout", "memory limit", "repository hidden"):
        assert check in result.output
    assert "fastest compatible" in result.output  # the interpreter the sandbox chose, and each candidate's probe


def test_sandbox_command_rejects_unknown_kind():
    result = CliRunner().invoke(app, ["sandbox", "--kind", "bogus"])
    assert result.exit_code != 0
