"""The plugin guide (docs/plugins.md: an environment, a method, a command) works as written."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import agentloop
from agentloop.registry import EnvRegistry
from agentloop.rollout import Job, rollout
from agentloop.policies.scripted import ScriptedPolicy

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "plugins.md"


def _block(marker: str) -> str:
    text = GUIDE.read_text()
    for block in re.findall(r"```(?:python|toml)\n(.*?)```", text, flags=re.S):
        lines = [line[3:] if line.startswith("   ") else line for line in block.splitlines()]
        if lines and lines[0].strip() == marker:
            return "\n".join(lines) + "\n"
    raise AssertionError(f"docs/plugins.md has no code block starting with {marker!r}")


def test_guide_plugin_installs_registers_and_passes_the_checker(tmp_path, monkeypatch):
    pkg = tmp_path / "my_envs"
    pkg.mkdir()
    (pkg / "reverse.py").write_text(_block("# my_envs/reverse.py"))
    (pkg / "__init__.py").write_text(_block("# my_envs/__init__.py"))
    info = tmp_path / "my_envs-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-envs\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text('[agentloop.environments]\nmy_envs = my_envs:register\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("AGENTLOOP_PLUGINS", "my_envs")

    reg = EnvRegistry()
    assert "mine/Reverse-v0" in reg.ids()
    env = reg.make("mine/Reverse-v0")
    agentloop.check_env(env)

    episodes = rollout([Job(env=lambda: reg.make("mine/Reverse-v0"), seed=0, options={"index": 0})],
                       ScriptedPolicy(["agnet", "tnega"]))
    assert episodes[0].attempt_success == (False, True)
    assert "'agnet' is not the reversed word" in episodes[0].turns[0].feedback.text


def _install(tmp_path: Path, name: str, group: str, value: str) -> None:
    """A dist-info on ``tmp_path`` declaring one entry point: how an installed third-party distribution looks."""
    info = tmp_path / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{group}]\n{value}\n")


def test_guide_method_plugin_registers_through_its_entry_point_and_runs_in_improve(tmp_path, monkeypatch,
                                                                                   tiny_model_dir):
    from agentloop.improve import ImproveConfig, improve
    from agentloop.registry import Registry, AlgorithmSpec
    import agentloop.registry as registry
    from tests.helpers import improve_config

    pkg = tmp_path / "my_method"
    pkg.mkdir()
    (pkg / "method.py").write_text(_block("# my_method/method.py"))
    (pkg / "__init__.py").write_text(_block("# my_method/__init__.py"))
    assert 'my_method = "my_method:register"' in GUIDE.read_text()
    _install(tmp_path, "my-method", "agentloop.algorithms", "my_method = my_method:register")
    monkeypatch.syspath_prepend(str(tmp_path))
    # a fresh algorithm registry discovers the plugin next to the built-ins, as on a first use
    monkeypatch.setattr(registry, "algorithms", Registry("algorithms", AlgorithmSpec))
    assert {"first_try", "rise", "score"} <= set(registry.algorithms.ids())
    info = next(p for p in registry.algorithms.plugins if p.name == "my_method")
    assert info.status == "loaded" and info.distribution == "my-method" and info.registered == ("first_try",)

    cfg = ImproveConfig.model_validate(improve_config(tiny_model_dir, iterations=1,
                                                      method={"name": "first_try", "samples_per_task": 1}))
    assert type(cfg.method).__name__ == "FirstTryConfig"
    assert json.loads(cfg.model_dump_json())["method"] == {**cfg.method.model_dump(), "name": "first_try"}
    result = improve(cfg, out=tmp_path / "run")
    assert result.method == "first_try" and [r["iteration"] for r in result.iterations] == [0, 1]
    with pytest.raises(ValueError, match="method.bogus: unknown field"):
        ImproveConfig.model_validate(improve_config(tiny_model_dir, method={"name": "first_try", "bogus": 1}))


def test_guide_command_plugin_adds_a_cli_command(tmp_path):
    (tmp_path / "my_commands.py").write_text(_block("# my_commands.py"))
    _install(tmp_path, "my-commands", "agentloop.commands", "my_commands = my_commands:register")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    out = subprocess.run([sys.executable, "-m", "agentloop.cli", "hello", "--name", "you"], env=env,
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "hello you"
    limited = subprocess.run([sys.executable, "-m", "agentloop.cli", "hello"], capture_output=True, text=True,
                             env={**env, "AGENTLOOP_PLUGINS": "something_else"}, timeout=120, check=False)
    assert limited.returncode != 0  # AGENTLOOP_PLUGINS leaves the command out
