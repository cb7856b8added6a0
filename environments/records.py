"""Reading task records from user files: a JSON list or JSON lines (one object per line), gzip allowed.

Shared by the standard-format environments (``code/*-format-v0``, ``tools/bfcl-format-v0``,
``math/qa-format-v0``), so a bad line is reported the same way everywhere: ``file:line: not valid JSON``.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

from agentloop.errors import ConfigError

__all__ = ["parse_json_records", "read_text"]


def read_text(path: Path) -> str:
    """The file's text (``.gz`` files decompressed)."""
    if path.suffix == ".gz":
        with gzip.open(path, "rt", encoding="utf-8") as f:
            return f.read()
    return path.read_text(encoding="utf-8")


def parse_json_records(text: str, where: Path | str) -> list[Any]:
    """The records of a JSON list or of JSON lines (blank lines skipped); errors name ``where`` and the line."""
    if text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{where}: not valid JSON ({e}).") from e
        if not isinstance(rows, list):
            raise ConfigError(f"{where}: must hold a JSON list of objects or one JSON object per line.")
        return rows
    rows = []
    for n, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ConfigError(f"{where}:{n}: not valid JSON ({e}).") from e
    return rows
