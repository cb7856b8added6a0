"""The format examples of docs/formats.md run as written and print what the page says they print."""

import re
from pathlib import Path

import pytest

from agentloop.sandbox.local import bwrap_status

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "formats.md"


def _section() -> str:
    return PAGE.read_text()


@pytest.mark.skipif(not bwrap_status()[0], reason=f"bubblewrap unavailable: {bwrap_status()[1]}")
@pytest.mark.parametrize("index", [0, 1])
def test_readme_format_examples(index, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    block = re.findall(r"```python\n(.*?)```", _section(), re.S)[index]
    exec(compile(block, f"docs/formats.md block {index}", "exec"), {})
    expected = [line[2:] for line in block.splitlines() if line.startswith("# ")]
    assert capsys.readouterr().out.splitlines() == expected
