"""The README's "write your own environment" guide works as written."""

import re
from pathlib import Path

import agentloop
from agentloop.registry import EnvRegistry
from agentloop.rollout import Job, rollout
from agentloop.policies.scripted import ScriptedPolicy

README = Path(__file__).resolve().parents[2] / "README.md"


def _block(marker: str) -> str:
    text = README.read_text()
    for block in re.findall(r"```(?:python|toml)\n(.*?)```", text, flags=re.S):
        lines = [line[3:] if line.startswith("   ") else line for line in block.splitlines()]
        if lines and lines[0].strip() == marker:
            return "\n".join(lines) + "\n"
    raise AssertionError(f"README has no code block starting with {marker!r}")


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
