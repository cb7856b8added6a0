"""CI's skip policy (tests/conftest.py): a skip that does not name an allowed optional extra fails the run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SUITE = '''
import pytest

def test_runs():
    assert True

def test_needs_vllm():
    pytest.importorskip("vllm_not_installed_here", reason="vLLM is not installed (optional extra agentloop[vllm])")

@pytest.mark.skipif(True, reason="needs a CUDA GPU")
def test_needs_gpu():
    pass
'''


def _pytest(tmp_path: Path, body: str, strict: bool) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_sample.py").write_text(body)
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "AGENTLOOP_STRICT_SKIPS")}
    env["PYTHONPATH"] = str(ROOT)
    if strict:
        env["AGENTLOOP_STRICT_SKIPS"] = "1"
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "tests.conftest", "-p", "no:cacheprovider",
                           "--rootdir", str(tmp_path), str(tmp_path / "test_sample.py")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)


def test_allowed_skips_pass_under_the_strict_policy(tmp_path):
    out = _pytest(tmp_path, SUITE, strict=True)
    assert out.returncode == 0, out.stdout
    assert "2 skip(s) for allowed optional extras" in out.stdout


def test_other_skips_fail_the_run_and_print_their_reason(tmp_path):
    body = SUITE + '''
def test_needs_bubblewrap():
    pytest.skip("bubblewrap unavailable: bwrap not found")
'''
    strict = _pytest(tmp_path, body, strict=True)
    assert strict.returncode == 1, strict.stdout
    assert "skips not on the allow-list" in strict.stdout
    assert "test_sample.py::test_needs_bubblewrap: bubblewrap unavailable: bwrap not found" in strict.stdout
    assert _pytest(tmp_path, body, strict=False).returncode == 0  # a developer's local run is not strict


def test_a_module_skipped_at_collection_counts_too(tmp_path):
    body = 'import pytest\npytest.importorskip("ray_missing_module_xyz")\n\ndef test_x():\n    pass\n'
    strict = _pytest(tmp_path, body, strict=True)
    assert strict.returncode == 1 and "ray_missing_module_xyz" in strict.stdout
