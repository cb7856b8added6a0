"""Reports: the HTML page parses and has the expected sections and embedded plots; comparisons pair runs."""

from __future__ import annotations

import json

from html.parser import HTMLParser

import pytest
from agentloop.policies.scripted import ScriptedPolicy
from typer.testing import CliRunner

from agentloop.errors import ConfigError
from agentloop.evaluation.evaluate import EvalConfig, evaluate
from agentloop.evaluation.report import build_report
from tests.helpers import answer_of


class Page(HTMLParser):
    """Collects section ids, headings, images and table cells."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.images: list[str] = []
        self.cells: list[str] = []
        self.external: list[str] = []
        self._in_cell = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section":
            self.sections.append(a["id"])
        if tag == "img":
            self.images.append(a["src"])
        if tag in ("link", "script") or (tag == "img" and not a["src"].startswith("data:")):
            self.external.append(tag)
        self._in_cell = tag in ("td", "th")

    def handle_data(self, data):
        if self._in_cell:
            self.cells.append(data)


def _parse(path) -> Page:
    page = Page()
    page.feed(path.read_text())
    return page


@pytest.fixture
def two_runs(tmp_path, echo_ids, fixer):
    cfg = EvalConfig(envs=list(echo_ids), max_attempts=2, n=2, compare=True, sampling={"temperature": 0.5})
    a = evaluate(cfg, tmp_path / "a", policy=fixer)
    a.run.log_metrics({"iteration": 0, "loss": 1.0})
    a.run.log_metrics({"iteration": 1, "loss": 0.5})
    b = evaluate(cfg, tmp_path / "b", policy=ScriptedPolicy(answer_of))
    return a.run.path, b.run.path


def test_single_run_report_sections_and_plots(two_runs):
    md, html = build_report([two_runs[0]])
    page = _parse(html)
    assert page.sections == ["summary", "accuracy-by-attempt", "transitions", "per-environment", "sampling",
                             "compute-matched", "training-curves"]
    assert len(page.images) == 4 and all(src.startswith("data:image/png;base64,iVBOR") for src in page.images)
    assert not page.external  # self-contained
    assert "test/EvalEcho-v0" in page.cells and "overall" in page.cells
    assert any(c.startswith("33.3 [") and c.endswith("(N=12)") for c in page.cells)  # Acc@t1 of EvalEcho: 4/12
    text = md.read_text()
    assert "## Accuracy by attempt" in text and "![transitions](plots/transitions.png)" in text
    assert (md.parent / "plots" / "accuracy_by_attempt.png").stat().st_size > 1000


def test_comparison_has_paired_differences(two_runs, tmp_path):
    _, html = build_report(list(two_runs), tmp_path / "cmp")
    page = _parse(html)
    assert page.sections[-1] == "comparison"
    # run b is always right: Acc@t1 1/3 -> 1 on EvalEcho and EvalEchoB, paired difference +66.7 points
    assert any(c.startswith("66.7 [") for c in page.cells)
    assert "diff Acc@tK" in page.cells


def test_mismatched_runs_are_refused(two_runs, tmp_path, echo_ids, fixer):
    other = evaluate(EvalConfig(envs=[echo_ids[0]], max_attempts=2), tmp_path / "c", policy=fixer)
    with pytest.raises(ConfigError, match="different environments"):
        build_report([two_runs[0], other.run.path], tmp_path / "x")
    with pytest.raises(ConfigError, match="cannot report on"):
        build_report([tmp_path / "missing"])


def test_cli_eval_and_report(tmp_path, echo_ids):
    from agentloop.cli import app

    runner = CliRunner()
    out = tmp_path / "run"
    r = runner.invoke(app, ["eval", "--policy", "scripted", "-p", "replies=[nope, word0]", "--env", echo_ids[1],
                            "--max-attempts", "2", "--feedback", "binary", "--out", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    assert "Acc@t2" in r.output and (out / "report" / "report.html").exists()
    r = runner.invoke(app, ["report", str(out), "--out", str(tmp_path / "rep")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "rep" / "report.md").exists()
    r = runner.invoke(app, ["eval", "--env", echo_ids[1], "--set", "max_attempts=0", "--out", str(tmp_path / "bad")])
    assert r.exit_code != 0 and "max_attempts: Input should be greater than or equal to 1" in str(r.exception)
    r = runner.invoke(app, ["suites"])
    assert r.exit_code == 0 and "mbpp-test" in r.output
    # --json: the metrics alone on stdout (the run directory and report paths go to stderr)
    r = runner.invoke(app, ["eval", "--policy", "scripted", "-p", "replies=[nope, word0]", "--env", echo_ids[1],
                            "--max-attempts", "2", "--feedback", "binary", "--out", str(tmp_path / "j"), "--quiet",
                            "--no-report", "--json"])
    assert r.exit_code == 0, r.output
    metrics = json.loads(r.stdout)
    assert metrics["max_attempts"] == 2 and len(metrics["overall"]["acc_by_attempt"]) == 2


def test_improve_style_run_shows_metrics_and_curves(tmp_path):
    from agentloop.runs import RunDir

    from agentloop.evaluation.selfcorrection import self_correction
    from agentloop.types import Episode, Turn

    def held_out(verdicts: list[tuple[bool, bool]]) -> dict:
        """The SelfCorrection improve logs: episodes of two attempts with the given verdicts."""
        eps = [Episode(env_id="math/arith-v0", turns=tuple(
            Turn(index=i, observation=(), action="a", reward=float(ok), terminated=i == 1, truncated=False,
                 success=ok, attempt=i) for i, ok in enumerate(v))) for v in verdicts]
        return self_correction(eps, 2).as_json()

    run = RunDir.create(tmp_path / "imp", {"env": {"id": "math/arith-v0"}, "method": {"name": "rise"}}, kind="improve")
    outcomes = [[(False, True), (False, False)], [(True, True), (False, True)], [(True, True), (True, True)]]
    for it, (verdicts, loss) in enumerate(zip(outcomes, [None, 1.2, 0.9])):
        run.log_metrics({"iteration": it, "held_out": held_out(verdicts), **({"loss": loss} if loss else {}),
                         "phase": "eval"})
    run.write_metrics({"method": "rise", "before": 0.2, "after": 0.35, "n": 20, "iterations": []})
    _, html = build_report([run.path])
    page = _parse(html)
    assert page.sections == ["summary", "held-out", "run-metrics", "training-curves"]
    assert "math/arith-v0" in page.cells and "0.35" in page.cells and len(page.images) == 1
    # the held-out table is read from the typed records: Acc@t1 0% -> 50% -> 100%, Acc@t2 50% -> 100%
    assert "0.0 [0.0, 65.8] (N=2)" in page.cells and "100.0 [34.2, 100.0] (N=2)" in page.cells
