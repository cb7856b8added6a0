"""``agentloop improve [CONFIG] [dotted.field=value ...]``: run the self-improvement loop.

With no CONFIG it runs the shipped ``configs/default.yaml`` (the embedded model on CPU); CONFIG is a file
or the name of a shipped config (``score-arith-cpu``: see
:func:`agentloop.config.find_config`), so it works from any directory after ``pip install``. ``--resume --out RUN``
continues a killed run without losing finished episodes (with no CONFIG it reuses the run's own
resolved config). Unknown or conflicting fields fail
before any work starts, naming the field and the rule.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

DEFAULT_CONFIG = "default"  # the shipped configs/default.yaml


def _split(config: str | None, overrides: list[str]) -> tuple[str | None, list[str]]:
    """A first argument with '=' that is not a file is an override, not a config path."""
    if config is not None and "=" in config and not Path(config).exists():
        return None, [config, *overrides]
    return config, list(overrides)


class PhaseBars:
    """Rich progress bars for improve's phases: one bar per label, the previous one stopped when a new label starts.

    Called as ``improve``'s ``progress(label, done, total, info)`` callback.
    """

    def __init__(self, console: Any):
        self.console = console
        self._progress: Any = None
        self._task: Any = None
        self._label = ""

    def __call__(self, label: str, done: int, total: int | None, info: str = "") -> None:
        if label != self._label:
            self.close()
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TimeElapsedColumn(), TextColumn("{task.fields[info]}"), console=self.console)
            self._progress.start()
            self._task = self._progress.add_task(label, total=None, info="")
            self._label = label
        self._progress.update(self._task, completed=done, total=total, info=info)
        if total is not None and done >= total:  # the phase is over: the bar stays above the next log line
            self.close()

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress, self._label = None, ""


def register(app: typer.Typer) -> None:
    @app.command("improve")
    def improve_cmd(
        config: str = typer.Argument(None, help="YAML/TOML config file (fields of ImproveConfig) or a shipped "
                                     "config's name, e.g. score-arith-cpu; default: the shipped default.yaml."),
        overrides: list[str] = typer.Argument(None, help="dotted.field=value overrides, e.g. iterations=3 train.lr=1e-5."),
        out: str = typer.Option(None, "--out", "-o", help="Run directory (default: the config's out, else runs/improve-...)."),
        resume: bool = typer.Option(False, "--resume", help="Continue the run in --out, skipping recorded episodes."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Validate and print the resolved config, then exit."),
    ) -> None:
        """Collect -> train -> evaluate on held-out tasks -> checkpoint, for N iterations."""
        import json

        from rich.console import Console

        from agentloop.config import find_config, load_config
        from agentloop.errors import ConfigError
        from agentloop.improve import ImproveConfig, default_out, improve
        from agentloop.improve_report import format_result

        path, sets = _split(config, overrides or [])
        if path is None and resume and out and (Path(out) / "config.json").exists():
            path = str(Path(out) / "config.json")  # resume with the run's own resolved config
        cfg = load_config(ImproveConfig, find_config(path or DEFAULT_CONFIG), sets)
        console = Console()
        if dry_run:
            console.print_json(json.dumps(cfg.model_dump(mode="json")))
            return
        target = Path(out) if out else default_out(cfg)
        if resume and not target.exists():
            raise ConfigError(f"--resume: {target} does not exist; give the run directory with --out.")
        console.print(f"agentloop improve: {cfg.method.name} on {cfg.env.id}, {cfg.iterations} iterations -> {target}")
        bars = PhaseBars(console)
        try:
            result = improve(cfg, out=target, resume=resume, progress=bars)
        finally:
            bars.close()
        console.print(format_result(result))
