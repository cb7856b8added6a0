"""The 45 TravelPlanner training queries shipped with the package (see DATA.md for the source).

:func:`load_train` joins the two files row by row (they are aligned: row i of
``std_travelplanner.jsonl`` has exactly the descriptions of row i of ``train_ref_info.jsonl``) into
:class:`TravelExample` records: parsed query, reference information, gold plan and the paper's
sole-planning system prompt.
"""

from __future__ import annotations

import ast
import functools
import gzip
import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from .plan import Plan, parse_plan
from .query import TravelQuery, parse_query
from .reference import ReferenceDB

HERE = Path(__file__).parent
REF_FILE = HERE / "train_ref_info.jsonl.gz"
SFT_FILE = HERE / "std_travelplanner.jsonl.gz"


class TravelExample(BaseModel):
    """One query with everything needed to plan and to evaluate it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    query: TravelQuery
    reference: ReferenceDB
    gold: Plan | None = None


def _rows(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@functools.lru_cache(maxsize=1)
def raw_train_rows() -> tuple[list[dict], list[dict]]:
    """(train_ref_info rows, std_travelplanner rows) as shipped."""
    return _rows(REF_FILE), _rows(SFT_FILE)


def query_text(sft_row: dict) -> str:
    user = sft_row["messages"][1]["content"]
    return user[user.rindex("Query:") + len("Query:"):].strip()


@functools.lru_cache(maxsize=1)
def paper_system_prompt() -> str:
    """The sole-planning instruction of the shipped SFT data (identical for all 45 rows)."""
    return raw_train_rows()[1][0]["messages"][0]["content"]


@functools.lru_cache(maxsize=1)
def load_train() -> tuple[TravelExample, ...]:
    """The 45 training examples, in file order, ids ``train-0`` .. ``train-44``."""
    refs, sft = raw_train_rows()
    out = []
    for i, (ref, row) in enumerate(zip(refs, sft, strict=True)):
        gold_literal = ast.literal_eval(row["messages"][2]["content"])
        out.append(TravelExample(id=f"train-{i}", query=parse_query(query_text(row)),
                                 reference=ReferenceDB.from_row(ref),
                                 gold=parse_plan(json.dumps(gold_literal))))
    return tuple(out)


__all__ = ["TravelExample", "load_train", "paper_system_prompt", "query_text", "raw_train_rows"]
