"""Question/answer data from any file: ``math/qa-format-v0 path=... question_field=... answer_field=...``.

``path`` is a ``.jsonl`` file (one object per line), a ``.json`` list of objects, a ``.csv`` file with a
header row, a ``.parquet`` file, or a folder written by Hugging Face ``datasets``'
``save_to_disk`` (a ``Dataset``, or a ``DatasetDict`` with ``split=`` choosing the split). The two
field names map the columns (defaults ``question`` and ``answer``); ``answer_delimiter="####"``
keeps only what follows the last delimiter (GSM8K's worked solutions). Replies are checked with
:func:`agentloop.environments.math.checking.judge` (exact numbers first, then math-verify), whose
feedback never contains the gold answer (``oracle_feedback`` does).

Parquet and ``datasets`` folders need the ``formats`` extra (``pip install agentloop[formats]``).

Example::

    make("math/qa-format-v0", path="problems.csv", question_field="problem", answer_field="solution")
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from agentloop.env import Task, TaskEnv, Verdict
from agentloop.environments.math.checking import ANSWER_FORMAT, judge
from agentloop.environments.records import parse_json_records
from agentloop.errors import ConfigError
from agentloop.types import user

PROMPT = "Solve the following problem step by step. {fmt}\n\n{question}"


def _need(module: str, what: str) -> Any:
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as e:
        raise ConfigError(f"math/qa-format-v0: reading {what} needs {module}; "
                          "install the extra with `pip install agentloop[formats]`.") from e


def read_rows(path: str | Path, split: str | None = None) -> list[dict[str, Any]]:
    """The rows of a JSONL/JSON/CSV/parquet file or a ``save_to_disk`` folder, as dicts."""
    p = Path(path)
    if p.is_dir():
        datasets = _need("datasets", "a Hugging Face datasets folder")
        ds = datasets.load_from_disk(str(p))
        if isinstance(ds, datasets.DatasetDict):
            if split is None:
                split = "test" if "test" in ds else next(iter(ds))
            if split not in ds:
                raise ConfigError(f"math/qa-format-v0: {p} has splits {sorted(ds)}, not {split!r}; pass split=.")
            ds = ds[split]
        return [dict(r) for r in ds]
    if not p.is_file():
        raise ConfigError(f"math/qa-format-v0: {str(p)!r} does not exist; pass path= a JSONL/JSON/CSV/parquet file "
                          "or a datasets save_to_disk folder.")
    suffix = p.suffix.lower()
    if suffix == ".parquet":
        pq = _need("pyarrow.parquet", "parquet")
        return pq.read_table(str(p)).to_pylist()
    if suffix == ".csv":
        with open(p, encoding="utf-8", newline="") as f:
            return list(csv.DictReader(f))
    text = p.read_text(encoding="utf-8")
    if suffix not in (".json", ".jsonl", ".ndjson"):
        raise ConfigError(f"math/qa-format-v0: unknown file type {suffix!r}; use .jsonl, .json, .csv or .parquet.")
    return parse_json_records(text, p)


class QAFormatEnv(TaskEnv):
    """``make("math/qa-format-v0", path="qa.jsonl", question_field="question", answer_field="answer")``."""

    def __init__(self, path: str, question_field: str = "question", answer_field: str = "answer",
                 id_field: str | None = None, split: str | None = None, answer_delimiter: str | None = None,
                 prompt: str = PROMPT, limit: int | None = None):
        super().__init__()
        if "{question}" not in prompt:
            raise ConfigError("math/qa-format-v0: prompt must contain '{question}' (and may contain '{fmt}').")
        if limit is not None and limit < 1:
            raise ConfigError(f"math/qa-format-v0: limit must be >= 1 (or None for every row), got {limit}.")
        rows = read_rows(path, split)[:limit]
        if not rows:
            raise ConfigError(f"math/qa-format-v0: {path} holds no rows.")
        self.prompt = prompt
        self._tasks: list[tuple[str, str, str]] = []
        for n, row in enumerate(rows):
            missing = [f for f in (question_field, answer_field) if row.get(f) in (None, "")]
            if missing:
                raise ConfigError(f"math/qa-format-v0: row {n} of {path} has no {missing} (its fields: "
                                  f"{sorted(row)}); set question_field= and answer_field= to the right columns.")
            answer = str(row[answer_field])
            if answer_delimiter:
                answer = answer.rsplit(answer_delimiter, 1)[-1]
            tid = str(row[id_field]) if id_field and row.get(id_field) is not None else str(n)
            self._tasks.append((tid, str(row[question_field]), answer.strip().replace(",", "")
                                if answer_delimiter else answer.strip()))

    def num_tasks(self) -> int:
        return len(self._tasks)

    def get_task(self, index: int) -> Task:
        tid, question, answer = self._tasks[index]
        return Task(id=tid, messages=(user(self.prompt.format(fmt=ANSWER_FORMAT, question=question)),), answer=answer)

    def gold_reply(self, task: Task) -> str:
        """The gold answer as a reply (for ``envs check-gold``: answers math-verify cannot read show up)."""
        return f"Answer: {task.answer}"

    def verify(self, task: Task, action: str) -> Verdict:
        return judge(action, str(task.answer))


__all__ = ["QAFormatEnv", "read_rows"]
