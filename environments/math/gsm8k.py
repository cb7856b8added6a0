"""GSM8K (Cobbe et al. 2021): grade-school word problems with one numeric answer.

Ships the train (7473) and test (1319) splits from openai/grade-school-math (MIT license; see
``data/gsm8k/SOURCE.md``). The gold answer is the number after ``####`` in the worked solution;
replies are checked with :func:`~agentloop.environments.math.checking.judge`.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from agentloop.env import Task, TaskEnv, Verdict
from agentloop.environments.math.checking import ANSWER_FORMAT, direction_followed, judge
from agentloop.errors import ConfigError
from agentloop.types import user

DATA = Path(__file__).parent / "data" / "gsm8k"
PROMPT = "Solve the following math problem step by step. {fmt}\n\n{question}"


@lru_cache(maxsize=2)
def load_gsm8k(split: str) -> tuple[dict, ...]:
    """Rows of a split: ``question``, ``answer`` (worked solution) and ``gold`` (the final number)."""
    plain, packed = DATA / f"{split}.jsonl", DATA / f"{split}.jsonl.gz"
    opener = (lambda: gzip.open(packed, "rt", encoding="utf-8")) if packed.exists() else \
        (lambda: open(plain, encoding="utf-8"))
    rows = []
    with opener() as f:
        for line in f:
            row = json.loads(line)
            row["gold"] = row["answer"].rsplit("####", 1)[1].strip().replace(",", "")
            rows.append(row)
    return tuple(rows)


class GSM8KEnv(TaskEnv):
    """``make("math/gsm8k-v0", split="test")``: one GSM8K problem per episode."""

    def __init__(self, split: Literal["train", "test"] = "test", limit: int | None = None):
        super().__init__()
        if split not in ("train", "test"):
            raise ConfigError(f"math/gsm8k-v0: split must be 'train' or 'test', got {split!r}.")
        if limit is not None and limit < 1:
            raise ConfigError(f"math/gsm8k-v0: limit must be >= 1 (or None for the whole split), got {limit}.")
        self.split = split
        self._rows = load_gsm8k(split)[:limit]

    def num_tasks(self) -> int:
        return len(self._rows)

    def get_task(self, index: int) -> Task:
        row = self._rows[index]
        return Task(id=f"gsm8k-{self.split}-{index}",
                    messages=(user(PROMPT.format(fmt=ANSWER_FORMAT, question=row["question"])),),
                    answer=row["gold"], metadata={"solution": row["answer"]})

    @staticmethod
    def feedback_uptake(previous: Mapping[str, Any], action: str, current: Mapping[str, Any]) -> bool | None:
        """The checker's direction taken (:func:`~agentloop.environments.math.checking.direction_followed`)."""
        return direction_followed(previous, current)

    def verify(self, task: Task, action: str) -> Verdict:
        return judge(action, str(task.answer))


__all__ = ["GSM8KEnv", "load_gsm8k"]
