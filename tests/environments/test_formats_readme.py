"""The README's format examples run as written and print what the README says they print."""

import re
from pathlib import Path

import pytest

from agentloop.sandbox.local import bwrap_status

README = Path(__file__).resolve().parents[2] / "README.md"


def _section() -> str:
    text = README.read_text()
    return text[text.index("## Bring your own data"):text.index("## Layout")]


@pytest.mark.skipif(not bwrap_status()[0], reason=f"bubblewrap unavailable: {bwrap_status()[1]}")
@pytest.mark.parametrize("index", [0, 1])
def test_readme_format_examples(index, capsys, monkeypatch):
    monkeypatch.chdir(README.parent)
    block = re.findall(r"```python\n(.*?)```", _section(), re.S)[index]
    exec(compile(block, f"README block {index}", "exec"), {})
    expected = [line[2:] for line in block.splitlines() if line.startswith("# ")]
    assert capsys.readouterr().out.splitlines() == expected
