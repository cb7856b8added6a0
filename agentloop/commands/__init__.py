"""CLI command modules. Each module here defines ``register(app: typer.Typer)`` and is picked up by
``agentloop.cli``; modules must import heavy libraries inside their command functions, not at the top.

:func:`print_table` is how every command prints a table: a rich table on a terminal, plain
tab-separated lines when stdout is a pipe or a file (nothing truncated to 80 columns, no markup),
so ``agentloop plugins | cat`` and ``agentloop envs list > envs.tsv`` keep every character.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

Cell = Any  # str, or a rich Text (styled on a terminal, its plain text otherwise)


def _plain(cell: Cell) -> str:
    text = getattr(cell, "plain", None)
    text = str(cell) if text is None else text
    return " ".join(text.split())  # a tab or newline inside a cell would break the row


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Cell]], console: Any = None) -> None:
    """``rows`` under ``columns``: a rich table titled ``title`` on a terminal, else a header line and tab-separated rows."""
    from rich.console import Console

    console = console or Console()
    if not console.is_terminal:
        out = console.file if console.file is not None else sys.stdout
        out.write("\t".join(columns) + "\n")
        for row in rows:
            out.write("\t".join(_plain(c) for c in row) + "\n")
        out.flush()
        return
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title)
    for col in columns:
        table.add_column(col, overflow="fold")  # long words fold onto the next line, never cut to "…"
    for row in rows:
        table.add_row(*(c if isinstance(c, Text) else Text(str(c)) for c in row))  # no markup parsing of data
    console.print(table)
