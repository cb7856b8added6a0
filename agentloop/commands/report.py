"""``agentloop report RUN_DIR [RUN_DIR...]``: markdown and self-contained HTML reports, side-by-side comparison."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("report")
    def report_cmd(
        runs: list[str] = typer.Argument(..., help="One or more run directories (the first is the baseline)."),
        out: str = typer.Option(None, "--out", "-o", help="Output folder (default: RUN/report for one run, "
                                "./report for a comparison)."),
    ) -> None:
        """Write report.md, plots/ and report.html for one run, or a paired comparison of several."""
        from rich.console import Console

        from agentloop.evaluation.report import build_report

        md, page = build_report(list(runs), out)
        Console().print(f"markdown: {md}\nhtml:     {page}")
