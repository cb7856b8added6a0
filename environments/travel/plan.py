"""Travel plans: the day record, parsing from JSON (or a Python literal) and from the paper's text form.

A plan is a list of days with the keys ``days, current_city, transportation, breakfast, attraction,
lunch, dinner, accommodation`` (docs/methods.md section 6). Entities are written ``"Name, City"``; several
attractions are separated by ``;``; ``"-"`` means none; a travel day's current city is ``"from A to
B"``. Two input forms are accepted:

* JSON (or the Python literal the gold plans use): a list of day objects, or ``{"plan": [...]}``,
  optionally inside a Markdown code fence. Key spellings ``"Current City"``/``current_city`` and
  ``"Day"``/``days`` are both accepted; empty ``{}`` padding days are dropped.
* The paper's text form: ``Day 1:`` headers followed by ``Current City: ...``,
  ``Transportation: ...``, ``Breakfast: ...``, ``Attraction: ...``, ``Lunch: ...``, ``Dinner: ...``,
  ``Accommodation: ...`` lines.

Anything else raises :class:`PlanParseError`, whose message is shown to the model as feedback (the
plan then counts as not delivered). A key missing from a day is kept as ``""`` so the evaluator
can tell "absent" from the explicit ``"-"``.
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict

from agentloop.errors import AgentLoopError

FIELDS = ("current_city", "transportation", "breakfast", "attraction", "lunch", "dinner", "accommodation")
MEALS = ("breakfast", "lunch", "dinner")
_KEY_ALIASES = {
    "day": "days", "days": "days", "current city": "current_city", "current_city": "current_city",
    "transportation": "transportation", "transport": "transportation", "breakfast": "breakfast",
    "attraction": "attraction", "attractions": "attraction", "lunch": "lunch", "dinner": "dinner",
    "accommodation": "accommodation", "accommodations": "accommodation",
}


class PlanParseError(AgentLoopError):
    """The text is not a plan in either accepted form; the message says what to write instead."""


class DayPlan(BaseModel):
    """One day of a plan. Empty string = the key was absent; ``"-"`` = explicitly nothing."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    days: int
    current_city: str = ""
    transportation: str = ""
    breakfast: str = ""
    attraction: str = ""
    lunch: str = ""
    dinner: str = ""
    accommodation: str = ""

    def filled(self, key: str) -> bool:
        value = getattr(self, key)
        return bool(value) and value.strip() not in ("-", "")

    @property
    def is_travel_day(self) -> bool:
        return "from " in self.current_city

    def cities(self) -> list[str]:
        """['A', 'B'] for 'from A to B', else ['A'] (spellings kept; compare through city_key)."""
        pair = from_to(self.current_city)
        return list(pair) if pair else [self.current_city.strip()]

    def attractions(self) -> list[str]:
        return [a.strip() for a in self.attraction.split(";") if a.strip() and a.strip() != "-"]


Plan = tuple[DayPlan, ...]

_FROM_TO = re.compile(r"from\s+(.+?)\s+to\s+([^,]+?)\s*(?:,|$)")


def from_to(text: str) -> tuple[str, str] | None:
    """('A', 'B') from '... from A to B, ...' (first occurrence), else None."""
    m = _FROM_TO.search(text)
    return (m.group(1).strip(), m.group(2).strip()) if m else None


def split_name_city(entity: str) -> tuple[str, str]:
    """'Coco Bambu, Rockford' -> ('Coco Bambu', 'Rockford'); the city is after the last comma."""
    name, sep, city = entity.strip().rpartition(",")
    return (name.strip(), city.strip()) if sep else (entity.strip(), "")


def flight_number(transportation: str) -> str | None:
    m = re.search(r"Flight Number:\s*([A-Za-z0-9]+)", transportation)
    return m.group(1) if m else None


# -- parsing ----------------------------------------------------------------------------------------
def parse_plan(text: str) -> Plan:
    """Parse a plan from JSON/Python-literal or text form; raise PlanParseError saying what is wrong.

    Raises nothing else, whatever the text (deep nesting, huge numbers included).
    """
    try:
        return _parse(text)
    except (RecursionError, MemoryError, OverflowError, ValueError, TypeError) as e:
        if isinstance(e, PlanParseError):
            raise
        raise PlanParseError(f"The plan could not be read ({type(e).__name__}: it is nested too deeply or holds "
                             "values too large); write a flat JSON list of day objects.") from e


def _parse(text: str) -> Plan:
    stripped = _unfence(text).strip()
    if not stripped:
        raise PlanParseError("The reply is empty: write the plan as a JSON list of day objects or in the "
                             "'Day 1:' text form.")
    if stripped[0] in "[{":
        return _from_structured(_load_structured(stripped))
    if re.search(r"^\s*\**\s*Day\s*1\b", stripped, re.I | re.M):
        return _from_text(stripped)
    found = _find_json_list(stripped)
    if found is not None:
        return _from_structured(found)
    raise PlanParseError("No plan found: write a JSON list of day objects with keys days, current_city, "
                         "transportation, breakfast, attraction, lunch, dinner, accommodation, or the text form "
                         "starting with 'Day 1:'.")


def _unfence(text: str) -> str:
    m = re.search(r"```(?:json|python|text)?\s*\n(.*?)```", text, re.S)
    return m.group(1) if m else text


def _load_structured(s: str) -> Any:
    try:
        return json.loads(s)
    except (ValueError, RecursionError) as e:  # JSONDecodeError, a huge integer, nesting deeper than the stack
        try:
            return ast.literal_eval(s)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            where = f"{e.msg} at line {e.lineno} column {e.colno}" if isinstance(e, json.JSONDecodeError) else \
                "nested too deeply or a number too large"
            raise PlanParseError(f"The plan is not valid JSON: {where}.") from e


def _find_json_list(s: str) -> Any:
    start, end = s.find("["), s.rfind("]")
    if 0 <= start < end:
        try:
            return _load_structured(s[start:end + 1])
        except PlanParseError:
            return None
    return None


def _from_structured(obj: Any) -> Plan:
    if isinstance(obj, dict):
        obj = obj.get("plan", obj.get("Plan"))
    if not isinstance(obj, list):
        raise PlanParseError("The plan must be a JSON list of day objects (or {\"plan\": [...]}).")
    days = []
    for i, item in enumerate(obj):
        if not isinstance(item, dict):
            raise PlanParseError(f"Day entry {i + 1} is a {type(item).__name__}, not an object with the plan keys.")
        if item:
            days.append(_day(item, len(days) + 1))
    if not days:
        raise PlanParseError("The plan has no days.")
    return tuple(days)


def _day(raw: dict[str, Any], position: int) -> DayPlan:
    values: dict[str, Any] = {}
    for key, value in raw.items():
        norm = _KEY_ALIASES.get(str(key).strip().lower())
        if norm is None:
            continue
        values[norm] = value
    try:
        day = int(values.pop("days", position))
    except (TypeError, ValueError, OverflowError):  # not a number, NaN, or infinity
        day = position
    clean = {k: ("-" if v is None else str(v).strip()) for k, v in values.items()}
    return DayPlan(days=day, **clean)


_DAY_HEADER = re.compile(r"^\s*\**\s*Day\s*(\d+)\s*\**\s*:?\s*\**\s*$", re.I | re.M)
_LINE = re.compile(r"^\s*[-*]*\s*\**([A-Za-z ]+?)\**\s*:\s*(.*)$")


def _from_text(text: str) -> Plan:
    heads = list(_DAY_HEADER.finditer(text))
    if not heads:
        raise PlanParseError("Found 'Day 1' but no line of its own like 'Day 1:' to start each day.")
    days = []
    for j, head in enumerate(heads):
        block = text[head.end(): heads[j + 1].start() if j + 1 < len(heads) else len(text)]
        raw: dict[str, str] = {"days": head.group(1)}
        for line in block.splitlines():
            m = _LINE.match(line)
            if m and m.group(1).strip().lower() in _KEY_ALIASES:
                raw[m.group(1).strip()] = m.group(2).strip()
        if len(raw) == 1:
            raise PlanParseError(f"Day {head.group(1)} has no 'Key: value' lines (Current City, Transportation, ...).")
        days.append(_day(raw, j + 1))
    return tuple(days)


# -- rendering --------------------------------------------------------------------------------------
def plan_to_text(plan: Plan) -> str:
    """The paper's text form (what `parse_plan` reads back)."""
    out = []
    for d in plan:
        out.append(f"Day {d.days}:")
        out += [f"Current City: {d.current_city}", f"Transportation: {d.transportation}",
                f"Breakfast: {d.breakfast}", f"Attraction: {d.attraction}", f"Lunch: {d.lunch}",
                f"Dinner: {d.dinner}", f"Accommodation: {d.accommodation}", ""]
    return "\n".join(out).strip()


def plan_to_json(plan: Plan) -> str:
    return json.dumps([d.model_dump() for d in plan], ensure_ascii=False)


__all__ = ["FIELDS", "MEALS", "DayPlan", "Plan", "PlanParseError", "flight_number", "from_to", "parse_plan",
           "plan_to_json", "plan_to_text", "split_name_city"]
