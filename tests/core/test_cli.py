import json

import pytest
from typer.testing import CliRunner

from agentloop.cli import app

runner = CliRunner()


def test_envs_list_shows_the_example_plugin():
    result = runner.invoke(app, ["envs", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["id"]: r for r in json.loads(result.output)}
    assert rows["countdown/Countdown-v0"]["source"] == "agentloop-countdown"


def test_envs_show_and_check():
    shown = runner.invoke(app, ["envs", "show", "countdown/Countdown-v0"])
    assert shown.exit_code == 0 and "Use the numbers" in shown.output
    checked = runner.invoke(app, ["envs", "check", "countdown/Countdown-2attempts-v0"])
    assert checked.exit_code == 0 and "ok" in checked.output


def test_envs_check_unknown_id_fails_with_a_hint():
    result = runner.invoke(app, ["envs", "check", "countdown/Countdwn-v0"])
    assert result.exit_code == 1 and "countdown/Countdown-v0" in result.output


def test_plugins_lists_distributions():
    result = runner.invoke(app, ["plugins", "--json"])
    assert result.exit_code == 0
    infos = json.loads(result.output)
    assert any(p["distribution"] == "agentloop-countdown" and p["status"] == "loaded" for p in infos)
    assert {p["group"] for p in infos} == {"agentloop.environments", "agentloop.policies", "agentloop.critics",
                                          "agentloop.algorithms"}
    assert any(p["group"] == "agentloop.algorithms" and "rise" in p["registered"] for p in infos)


def test_envs_check_takes_constructor_arguments_for_a_users_file(tmp_path):
    fixture = "tests/environments/fixtures/formats/qa.csv"
    ok = runner.invoke(app, ["envs", "check", "math/qa-format-v0", f"path={fixture}", "question_field=q",
                             "answer_field=a"])
    assert ok.exit_code == 0 and "ok" in ok.output, ok.output
    missing = runner.invoke(app, ["envs", "check", "math/qa-format-v0", f"path={tmp_path / 'nope.csv'}"])
    assert missing.exit_code == 1 and "nope.csv" in missing.output
    bad = runner.invoke(app, ["envs", "check", "math/qa-format-v0", "path"])
    assert bad.exit_code != 0 and "key=value" in bad.output


def test_error_messages_print_brackets_verbatim(capsys, monkeypatch):
    # "pip install 'agentloop[vllm]'" must not lose "[vllm]" to rich markup
    import agentloop.cli as cli
    from agentloop.errors import ConfigError

    def fail() -> None:
        raise ConfigError("run pip install 'agentloop[vllm]' or [red]x[/red]")

    monkeypatch.setattr(cli, "app", fail)
    monkeypatch.setattr(cli, "configure_logging", lambda *a, **k: None)  # the process-wide handler would outlive it
    monkeypatch.setattr(cli.err_console, "width", 200)
    import pytest

    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "pip install 'agentloop[vllm]' or [red]x[/red]" in err


def test_piped_plugins_output_is_plain_and_complete():
    """Through a pipe: tab-separated rows with full distribution names, then each plugin's ids, nothing cut."""
    infos = json.loads(runner.invoke(app, ["plugins", "--json"]).output)
    result = runner.invoke(app, ["plugins"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split("\t") == ["group", "name", "distribution", "version", "status", "ids / error"]
    rows = [line.split("\t") for line in lines[1:] if "\t" in line]
    assert [(r[2], r[4]) for r in rows] == [(p["distribution"], p["status"]) for p in infos]
    for p in infos:
        if p["status"] == "loaded" and p["registered"]:
            listed = next(line for line in lines if line.startswith(f"{p['group'].split('.')[-1]} {p['name']} ("))
            assert listed.split(": ", 1)[1].split(", ") == list(p["registered"])
    assert "…" not in result.output and "\x1b[" not in result.output


def test_print_table_is_a_rich_table_on_a_terminal_and_tab_separated_otherwise():
    import io

    from rich.console import Console

    from agentloop.commands import print_table

    rows = [("a-very-long-distribution-name-" * 3, "[red]not markup[/red]", "two\tfields")]
    plain = io.StringIO()
    print_table("t", ("x", "y", "z"), rows, Console(file=plain))
    assert plain.getvalue().splitlines() == ["x\ty\tz", f"{rows[0][0]}\t[red]not markup[/red]\ttwo fields"]
    term = io.StringIO()
    print_table("t", ("x", "y", "z"), rows, Console(file=term, force_terminal=True, width=60, color_system=None))
    shown = term.getvalue()
    assert "┃" in shown and "[red]not" in shown and "markup[/red]" in shown  # a table; data is not read as markup


def test_suites_and_envs_have_json():
    suites = json.loads(runner.invoke(app, ["suites", "--json"]).output)
    assert any(s["name"] == "arith" and s["envs"] for s in suites)
    envs = json.loads(runner.invoke(app, ["envs", "list", "--json"]).output)
    assert {"id", "max_attempts", "feedback", "source", "description"} <= set(envs[0])


def test_library_deprecation_warnings_are_hidden_unless_the_user_asks(monkeypatch):
    import sys
    import warnings

    from agentloop.cli import quiet_library_warnings

    monkeypatch.setenv("PYTHONWARNINGS", "")  # recorded, so the value quiet_library_warnings sets is undone after

    def shown(warnoptions: list[str], env: str | None) -> list[str]:
        monkeypatch.setattr(sys, "warnoptions", warnoptions)
        if env is None:
            monkeypatch.delenv("PYTHONWARNINGS", raising=False)
        else:
            monkeypatch.setenv("PYTHONWARNINGS", env)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            quiet_library_warnings()
            warnings.warn("`x` is deprecated", FutureWarning)  # what transformers prints on every run
            warnings.warn("old", DeprecationWarning)
            warnings.warn("real problem", UserWarning)
        return [str(w.message) for w in caught]

    assert shown([], None) == ["real problem"]
    import os

    assert "ignore::FutureWarning" in os.environ["PYTHONWARNINGS"]  # inherited by the processes a command starts
    assert shown(["default"], None) == ["`x` is deprecated", "old", "real problem"]


def test_missing_model_stack_names_the_extra_to_install(monkeypatch):
    """`pip install .` without the hf extra: improve says which pip command adds the model stack."""
    import importlib.util

    from agentloop.errors import ConfigError, require_modules
    from agentloop.registry import Spec

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "transformers" else real(name, *a))
    with pytest.raises(ConfigError, match=r"needs transformers.*pip install 'agentloop\[hf\]'"):
        require_modules("agentloop improve", ("torch", "transformers"))
    from agentloop.errors import RegistryError

    with pytest.raises(RegistryError, match=r"pip install 'agentloop\[vllm\]'"):
        Spec(id="x", entry_point="vllm.no_such_module:X").load()
