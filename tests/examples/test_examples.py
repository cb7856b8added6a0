"""Every script in examples/ runs as written on the tiny model, and the README's quickstart is examples/quickstart.py."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

# script -> lines its output must contain (on the tiny random model the accuracies are whatever they are)
EXPECTED = {
    "quickstart.py": [r"Your answer is incorrect\.", r"\[\(True,\), \(False, False\)", r"held-out Acc@t1 .* \(N = 4\)",
                      r"Acc@t1, Acc@t2: \[[0-9.]+, [0-9.]+\]"],
    "custom_env.py": [r"attempts: \(False, True\) feedback: .*", r"'agnet' is not 'agent' reversed\.",
                      r"Acc@t1, Acc@t2: \[[0-9.]+, [0-9.]+\]"],
    "custom_method.py": [r"first_try: held-out Acc@t1 .* \(N = 4\)"],
    "evaluate_endpoint.py": [r"http://127\.0\.0\.1:\d+/v1: N = 8, Acc@t1, Acc@t2 = \[[0-9.]+, [0-9.]+\]"],
    "improve_own_data.py": [r"math/qa-format-v0: held-out Acc@t1 .* \(N = 4\); checkpoints in runs/example-own-data"],
}


def test_every_example_is_tested():
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_example_runs_on_the_tiny_model(script, tmp_path, tiny_model_dir):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "AGENTLOOP_PLUGINS": ""}
    out = subprocess.run([sys.executable, str(EXAMPLES / script), tiny_model_dir], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    for pattern in EXPECTED[script]:
        assert re.search(pattern, out.stdout), f"{script}: no line matches {pattern!r} in:\n{out.stdout}"
    assert (tmp_path / "runs").is_dir()  # everything it wrote went under ./runs


def test_readme_quickstart_is_the_quickstart_example():
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    quickstart = (EXAMPLES / "quickstart.py").read_text()
    assert quickstart in blocks, "README's quickstart block must equal examples/quickstart.py (the test runs that file)"


def test_readme_is_a_short_front_door_whose_links_resolve():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    for target in re.findall(r"\]\(((?:docs|examples)/[^)#]+)", text) + re.findall(r"`(examples/\w+\.py)`", text):
        assert (ROOT / target).exists(), target


def test_readme_plug_point_example_runs_as_written(capsys):
    blocks = [b for b in re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
              if b.startswith("# plug points")]
    assert len(blocks) == 1, "README lost its plug-point example"
    from agentloop.registry import critics, policies

    try:
        exec(compile(blocks[0], "README.md", "exec"), {})
    finally:
        policies.unregister("shout")
        critics.unregister("strict")
    expected = [line[2:] for line in blocks[0].splitlines() if line.startswith("# ") and not line.startswith("# plug")]
    assert capsys.readouterr().out.splitlines() == expected
