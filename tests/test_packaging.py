"""Installed outside a checkout: the shipped configs travel in the wheel, `agentloop improve` finds them from any
directory, and validating a config needs no model stack (torch stays unimported)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from agentloop.config import find_config, shipped_configs
from agentloop.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "peft", "accelerate", "vllm", "ray", "datasets")


def test_find_config_takes_a_path_or_a_shipped_name(tmp_path):
    assert find_config("default") == shipped_configs() / "default.yaml"
    assert find_config("score-arith-cpu.yaml").read_text() == (ROOT / "configs" / "score-arith-cpu.yaml").read_text()
    own = tmp_path / "default"  # a file of that name wins over the shipped config
    own.write_text("iterations: 1\n")
    assert find_config(own) == own
    with pytest.raises(ConfigError, match="shipped configs: .*default.*score-arith-cpu"):
        find_config("no-such-config")


def test_validating_every_shipped_config_and_a_dry_run_import_no_model_stack():
    code = textwrap.dedent(f"""
        import json, sys
        from pathlib import Path
        from typer.testing import CliRunner
        from agentloop.cli import app
        from agentloop.config import load_config, shipped_configs
        from agentloop.improve_config import ImproveConfig
        for path in sorted(shipped_configs().glob("*.yaml")):
            load_config(ImproveConfig, path)
        result = CliRunner().invoke(app, ["improve", "--dry-run", "iterations=1"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["iterations"] == 1
        print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         check=False)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


@pytest.mark.slow  # builds a wheel (a few seconds)
def test_the_wheel_ships_the_configs_and_improve_runs_from_another_directory(tmp_path):
    src = tmp_path / "src"  # a copy, so that the build leaves nothing in the checkout
    for name in ("agentloop", "environments", "critics", "policies", "configs"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, src / name)
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                            str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=300, check=False)
    assert build.returncode == 0, build.stderr
    wheel = next((tmp_path / "dist").glob("agentloop-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    shipped = sorted(p.name for p in (ROOT / "configs").glob("*.yaml"))
    assert sorted(n.split("/")[-1] for n in names if n.startswith("agentloop/configs/") and n.count("/") == 2) == shipped
    assert "agentloop/configs/efficacy/data/code-tasks-train.jsonl" in names
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = ("import agentloop, sys; from agentloop.cli import main; print(agentloop.__file__); "
            "sys.argv = ['agentloop', 'improve', '--dry-run', 'iterations=1']; main()")
    out = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(site)}, check=False)
    assert out.returncode == 0, out.stderr
    first, _, rest = out.stdout.partition("\n")
    assert first.startswith(str(site))  # the installed copy ran, not the checkout
    assert json.loads(rest)["method"]["name"] == "rise"  # the packaged default config
