"""`agentloop generate` with the scripted policy (the command is backend-agnostic)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from agentloop.cli import app
from agentloop.errors import ConfigError

runner = CliRunner()
SCRIPT = json.dumps({"replies": {"ping": "pong\nmore", "hi": "hello"}, "default": "?"})


def test_one_prompt_prints_the_text() -> None:
    result = runner.invoke(app, ["generate", "ping", "--policy", "scripted", "--kwargs", SCRIPT, "--stop", "\n"])
    assert result.exit_code == 0, result.output
    assert result.output == "pong\n"


def test_jsonl_file_of_prompts(tmp_path) -> None:
    src = tmp_path / "prompts.jsonl"
    src.write_text(json.dumps({"id": "a", "prompt": "hi"}) + "\n\n"
                   + json.dumps({"messages": [{"role": "user", "content": "ping"}]}) + "\n")
    out = tmp_path / "out.jsonl"
    result = runner.invoke(app, ["generate", "--jsonl", str(src), "--policy", "scripted", "--kwargs", SCRIPT,
                                 "--n", "2", "-o", str(out)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["id"], r["sample"], r["text"]) for r in rows] == [
        ("a", 0, "hello"), ("a", 1, "hello"), (1, 0, "pong\nmore"), (1, 1, "pong\nmore")]


def test_bad_input_is_explained(tmp_path) -> None:
    result = runner.invoke(app, ["generate", "x", "--policy", "scripted", "--kwargs", "[1]"])
    assert isinstance(result.exception, ConfigError) and "JSON object" in str(result.exception)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "no prompt"}\n')
    result = runner.invoke(app, ["generate", "--jsonl", str(bad), "--policy", "scripted"])
    assert isinstance(result.exception, ConfigError) and "bad.jsonl:1" in str(result.exception)
    assert runner.invoke(app, ["generate", "--policy", "scripted"]).exit_code != 0
