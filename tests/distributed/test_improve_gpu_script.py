"""benchmarks/device/improve_gpu.py: the GPU script runs end to end on a CPU (--device cpu --tiny)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "device" / "improve_gpu.py"

pytest.importorskip("torch")
pytest.importorskip("peft")


@pytest.mark.slow
def test_tiny_cpu_run_writes_the_report(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "run", "--device", "cpu", "--tiny", "--episodes", "4",
                           "--iterations", "1", "--train-steps", "1", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "improve_gpu.json").read_text())
    s = report["summary"]
    assert report["policy"] == "hf" and "random init" in report["weights"]
    assert s["episodes"] == 4 and s["episode_errors"] == 0
    assert s["generated_tokens"] > 0 and s["generation_tokens_per_s"] > 0 and s["samples_per_s"] > 0
    assert s["train_steps"] == 1 and s["train_tokens"] > 0
    assert abs(s["generation_share"] + s["training_share"] - 1) < 0.01


def test_wheels_are_unpacked_and_imported_first(tmp_path):
    """The dependency installer of the GPU machine, on the pure-python wheels that `prepare` downloaded."""
    wheels = ROOT / ".cache" / "device" / "whl"
    if not any(wheels.glob("gymnasium-*.whl")):
        pytest.skip("the GPU machine's wheel cache is not prepared: run 'python benchmarks/device/improve_gpu.py prepare' "
                    "first (needs a package index)")
    code = (
        "import sys, importlib.util as u\n"
        f"spec = u.spec_from_file_location('improve_gpu', {str(SCRIPT)!r}); m = u.module_from_spec(spec)\n"
        "spec.loader.exec_module(m)\n"
        "m.DEPS = [d for d in m.DEPS if d[0] in ('gymnasium', 'cloudpickle', 'farama_notifications')]\n"
        f"got = m.ensure_deps(site=__import__('pathlib').Path({str(tmp_path)!r}), force=True)\n"
        "import gymnasium\n"
        "print(got, gymnasium.__file__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True).stdout
    assert "['cloudpickle', 'farama_notifications', 'gymnasium']" in out
    assert str(tmp_path) in out  # imported from the unpacked wheel, ahead of the installed copy
