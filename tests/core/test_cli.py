import json

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
