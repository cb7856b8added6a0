"""The TravelPlanner evaluator (Xie et al. 2024; docs/methods.md section 6): 8 commonsense checks, 5 hard
checks, the six metrics, and the FAFT feedback lines.

Every check is a pure function ``(query, plan, reference) -> CheckResult(name, passed, reason)``
named as in the paper's evaluation script, so feedback reads like FAFT's
(``is_valid_accommodation: fail, reason:The accommodation X do not obey the minumum nights rule.``).

Commonsense (always evaluated on a delivered plan):
``is_valid_information_in_sandbox`` (every flight, restaurant, attraction, accommodation and
self-driving/taxi route exists in the query's reference information), ``is_not_absent`` (complete
information), ``is_valid_information_in_current_city``, ``is_reasonable_visiting_city`` (closed loop
from the origin, destination cities in the destination, no city revisited),
``is_valid_restaurants`` (no restaurant twice), ``is_valid_attractions`` (no attraction twice),
``is_valid_transportation`` (no flight or taxi together with self-driving),
``is_valid_accommodation`` (minimum nights).

Hard (``valid_cost``, ``valid_room_rule``, ``valid_room_type``, ``valid_cuisine``,
``valid_transportation``): ``valid_cost`` applies to every query, the others only when the query has
that constraint (otherwise ``passed is None``, "not applicable"). As in the paper they are only
evaluated when the plan is delivered, complete and within the sandbox; otherwise every applicable
hard check counts as failed with that reason. Costs come from the reference data, never from the
plan's own text: flights x people, self-driving x ceil(people/5), taxi x ceil(people/4), meals x
people, accommodation price x ceil(people / maximum occupancy) per night.

Where this differs from the released script, on purpose (each keeps one edit = one failing check):

* ``is_not_absent`` does not also fail when the sandbox check fails (the script nests them);
  ``is_valid_information_in_sandbox`` reports that.
* ``is_valid_information_in_current_city`` compares whole city names; the script iterates over
  the characters of a single-city day's name, so on non-travel days it effectively never fails.
* A plan with fewer days than the query fails ``is_not_absent`` (the script only reads
  ``min(days, len(plan))`` days).
* Flights must exist in this query's reference information, not anywhere in the full database.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from pydantic import BaseModel, ConfigDict, Field

from .plan import MEALS, DayPlan, Plan, PlanParseError, flight_number, from_to, parse_plan, split_name_city
from .query import TravelQuery
from .reference import ReferenceDB, city_key

COMMONSENSE = (
    "is_valid_information_in_sandbox", "is_not_absent", "is_valid_information_in_current_city",
    "is_reasonable_visiting_city", "is_valid_restaurants", "is_valid_attractions", "is_valid_transportation",
    "is_valid_accommodation",
)
HARD = ("valid_cost", "valid_room_rule", "valid_room_type", "valid_cuisine", "valid_transportation")
_RULE_TEXT = {"parties": "No parties", "smoking": "No smoking", "children under 10": "No children under 10",
              "pets": "No pets", "visitors": "No visitors"}
_ROOM_OK: dict[str, Callable[[str], bool]] = {
    "entire room": lambda t: t == "Entire home/apt", "private room": lambda t: t == "Private room",
    "shared room": lambda t: t == "Shared room", "not shared room": lambda t: t != "Shared room",
}
PASS_REASON = {
    "is_valid_information_in_sandbox": "All information is within the sandbox.",
    "is_not_absent": "No information is absent.",
    "is_valid_information_in_current_city": "All activities are in the current city.",
    "is_reasonable_visiting_city": "The city route is a reasonable closed loop.",
    "is_valid_restaurants": "No restaurant is repeated.",
    "is_valid_attractions": "No attraction is repeated.",
    "is_valid_transportation": "The transportation is not conflicting.",
    "is_valid_accommodation": "Every accommodation obeys its minimum nights rule.",
    "valid_cost": "The total cost is within the budget.",
    "valid_room_rule": "Every accommodation allows what the query needs.",
    "valid_room_type": "Every accommodation has the requested room type.",
    "valid_cuisine": "Every requested cuisine is served.",
    "valid_transportation": "The transportation respects the query's rule.",
}


class CheckResult(BaseModel):
    """One check on one plan: passed True/False, or None when the check does not apply to the query."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    passed: bool | None
    reason: str = ""

    def line(self) -> str:
        """The FAFT feedback line: ``name: pass|fail, reason:...``."""
        status = "pass" if self.passed else "fail"
        return f"{self.name}: {status}, reason:{self.reason}"


class PlanEvaluation(BaseModel):
    """All checks of one plan (or why it was not delivered)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    delivered: bool
    parse_error: str | None = None
    commonsense: tuple[CheckResult, ...] = ()
    hard: tuple[CheckResult, ...] = Field(default=(), description="Applicable hard checks only.")
    total_cost: float | None = None

    @property
    def commonsense_pass(self) -> bool:
        return self.delivered and all(c.passed for c in self.commonsense)

    @property
    def hard_pass(self) -> bool:
        return self.delivered and all(c.passed for c in self.hard)

    @property
    def final_pass(self) -> bool:
        return self.commonsense_pass and self.hard_pass

    def check(self, name: str) -> CheckResult | None:
        return next((c for c in (*self.commonsense, *self.hard) if c.name == name), None)

    def failed(self) -> set[str]:
        return {c.name for c in (*self.commonsense, *self.hard) if c.passed is False}

    def feedback(self, include_hard: bool = False) -> str:
        """FAFT feedback: one line per commonsense check (and per applicable hard check if asked)."""
        if not self.delivered:
            return f"plan_delivered: fail, reason:{self.parse_error or 'No plan was delivered.'}"
        return "\n".join(c.line() for c in (*self.commonsense, *(self.hard if include_hard else ())))


def success_feedback(include_hard: bool = False) -> str:
    """The all-success lines FAFT puts in the feedback slot at inference."""
    names = COMMONSENSE + (HARD if include_hard else ())
    return "\n".join(CheckResult(name=n, passed=True, reason=PASS_REASON[n]).line() for n in names)


def _ok(name: str) -> CheckResult:
    return CheckResult(name=name, passed=True, reason=PASS_REASON[name])


def _bad(name: str, reason: str) -> CheckResult:
    return CheckResult(name=name, passed=False, reason=reason)


def _days(query: TravelQuery, plan: Plan) -> Sequence[DayPlan]:
    return plan[: query.days]


# -- commonsense ------------------------------------------------------------------------------------
def check_sandbox(query: TravelQuery, plan: Plan, ref: ReferenceDB) -> CheckResult:
    name = "is_valid_information_in_sandbox"
    for d in _days(query, plan):
        t = d.transportation
        if d.filled("transportation"):
            number = flight_number(t)
            if "flight" in t.lower() and (number is None or ref.flight(number) is None):
                return _bad(name, f"The flight in day {d.days} ({number or t}) is invalid in the sandbox.")
            for mode in ("self-driving", "taxi"):
                if mode in t.lower():
                    pair = from_to(t)
                    if pair is None or ref.route(mode, *pair) is None:
                        return _bad(name, f"The {mode} in day {d.days} is invalid in the sandbox.")
        for meal in MEALS:
            if d.filled(meal) and ref.restaurant(*split_name_city(getattr(d, meal))) is None:
                return _bad(name, f"The {meal} in day {d.days} ({getattr(d, meal)}) is invalid in the sandbox.")
        for a in d.attractions():
            if ref.attraction(*split_name_city(a)) is None:
                return _bad(name, f"The attraction in day {d.days} ({a}) is invalid in the sandbox.")
        if d.filled("accommodation") and ref.accommodation(*split_name_city(d.accommodation)) is None:
            return _bad(name, f"The accommodation in day {d.days} ({d.accommodation}) is invalid in the sandbox.")
    return _ok(name)


def check_not_absent(query: TravelQuery, plan: Plan, ref: ReferenceDB) -> CheckResult:
    name = "is_not_absent"
    if len(plan) < query.days:
        return _bad(name, f"The plan covers {len(plan)} days but the trip lasts {query.days}.")
    filled = 0
    for i, d in enumerate(_days(query, plan)):
        if d.is_travel_day and not d.filled("transportation"):
            return _bad(name, f"No transportation in day {d.days} is not allowed.")
        if not d.is_travel_day and not d.filled("attraction"):
            return _bad(name, f"No attaction in day {d.days} is not allowed.")
        if i != query.days - 1 and not d.filled("accommodation"):
            return _bad(name, f"No accommodation in day {d.days} is not allowed.")
        if not d.is_travel_day and not all(d.filled(m) for m in MEALS):
            return _bad(name, f"No meal in day {d.days} is not allowed.")
        filled += 1 + sum(d.filled(k) for k in ("current_city", "transportation", "breakfast", "attraction",
                                                  "lunch", "dinner", "accommodation"))
    if filled / (6 * query.days) < 0.5:
        return _bad(name, "The absent information is more than 50%.")
    return _ok(name)


def check_current_city(query: TravelQuery, plan: Plan, ref: ReferenceDB) -> CheckResult:
    name = "is_valid_information_in_current_city"
    for d in _days(query, plan):
        cities = {city_key(c) for c in d.cities()}
        if d.filled("transportation"):
            for c in cities:
                if c not in d.transportation:
                    return _bad(name, f"The transportation in day {d.days} is invalid city choice.")
        for key in ("breakfast", "lunch", "dinner"):
            if d.filled(key) and city_key(split_name_city(getattr(d, key))[1]) not in cities:
                return _bad(name, f"The {key} in day {d.days} is invalid city choice.")
        for a in d.attractions():
            if city_key(split_name_city(a)[1]) not in cities:
                return _bad(name, f"The attraction in day {d.days} is invalid city choice.")
        if d.filled("accommodation") and city_key(split_name_city(d.accommodation)[1]) != city_key(d.cities()[-1]):
            return _bad(name, f"The accommodation in day {d.days} is invalid city choice.")
    return _ok(name)


def check_city_route(query: TravelQuery, plan: Plan, ref: ReferenceDB) -> CheckResult:
    name = "is_reasonable_visiting_city"
    route: list[str] = []
    for d in _days(query, plan):
        for c in d.cities():
            c = city_key(c)
            if c and (not route or route[-1] != c):
                route.append(c)
    org = city_key(query.org)
    if not route or route[0] != org:
        return _bad(name, f"The first day's city should be {query.org}.")
    if route[-1] != org:
        return _bad(name, "The trip should be a closed circle.")
    middle = route[1:-1]
    if not middle:
        return _bad(name, "The trip never leaves the origin.")
    if len(set(middle)) != len(middle) or org in middle:
        return _bad(name, "The city sequence is invalid: a city is visited twice.")
    allowed = set(ref.cities) or None
    for c in middle:
        if allowed is not None and c not in allowed:
            return _bad(name, f"{c} is not a destination city of this trip ({query.dest}).")
    return _ok(name)


def _repeats(items: list[tuple[int, str]], what: str, name: str) -> CheckResult:
    seen: set[str] = set()
    for day, item in items:
        if item in seen:
            return _bad(name, f"The {what} in day {day} ({item}) is repeated.")
        seen.add(item)
    return _ok(name)


def check_restaurants(query: TravelQuery, plan: Plan, ref: ReferenceDB) -> CheckResult:
    items = [(d.days, getattr(d, m).strip()) for d in _days(query, plan) for m in MEALS if d.filled(m)]
    return _repeats(items, "restaurant", "is_valid_restaurants")


def check_attractions(query: TravelQuery, plan: Plan, ref: ReferenceDB) -> CheckResult:
    items = [(d.days, a) for d in _days(query, plan) for a in d.attractions()]
    return _repeats(items, "attraction", "is_valid_attractions")


def check_transportation(query: TravelQuery, plan: Plan, ref: ReferenceDB) -> CheckResult:
    name = "is_valid_transportation"
    modes = set()
    for d in _days(query, plan):
        t = d.transportation.lower()
        modes |= {m for m in ("flight", "self-driving", "taxi") if d.filled("transportation") and m in t}
    if "self-driving" in modes and "flight" in modes:
        return _bad(name, "The transportation is conflicting: flight and self-driving.")
    if "self-driving" in modes and "taxi" in modes:
        return _bad(name, "The transportation is conflicting: taxi and self-driving.")
    return _ok(name)


def _stays(query: TravelQuery, plan: Plan) -> list[tuple[str, int]]:
    """Consecutive runs of the same accommodation: (entity, nights)."""
    runs: list[tuple[str, int]] = []
    for d in _days(query, plan):
        acc = d.accommodation.strip()
        if runs and runs[-1][0] == acc:
            runs[-1] = (acc, runs[-1][1] + 1)
        else:
            runs.append((acc, 1))
    return [(a, n) for a, n in runs if a not in ("", "-")]


def check_min_nights(query: TravelQuery, plan: Plan, ref: ReferenceDB) -> CheckResult:
    name = "is_valid_accommodation"
    for acc, nights in _stays(query, plan):
        rec = ref.accommodation(*split_name_city(acc))
        if rec is not None and nights < rec.min_nights:
            return _bad(name, f"The accommodation {acc} do not obey the minumum nights rule.")
    return _ok(name)


COMMONSENSE_CHECKS = (check_sandbox, check_not_absent, check_current_city, check_city_route, check_restaurants,
                      check_attractions, check_transportation, check_min_nights)


# -- hard -------------------------------------------------------------------------------------------
def total_cost(query: TravelQuery, plan: Plan, ref: ReferenceDB) -> float:
    """The plan's cost from the reference data (entities not found cost nothing: sandbox reports them)."""
    people = query.people_number
    cost = 0.0
    for d in _days(query, plan):
        t = d.transportation
        if d.filled("transportation"):
            number = flight_number(t)
            pair = from_to(t)
            if "flight" in t.lower() and number and ref.flight(number):
                cost += ref.flight(number).price * people  # type: ignore[union-attr]
            elif "self-driving" in t.lower() and pair and ref.route("self-driving", *pair):
                cost += ref.route("self-driving", *pair).cost * math.ceil(people / 5)  # type: ignore[union-attr]
            elif "taxi" in t.lower() and pair and ref.route("taxi", *pair):
                cost += ref.route("taxi", *pair).cost * math.ceil(people / 4)  # type: ignore[union-attr]
        for meal in MEALS:
            r = ref.restaurant(*split_name_city(getattr(d, meal))) if d.filled(meal) else None
            cost += r.avg_cost * people if r else 0.0
        a = ref.accommodation(*split_name_city(d.accommodation)) if d.filled("accommodation") else None
        cost += a.price * math.ceil(people / a.max_occupancy) if a else 0.0
    return cost


def _accommodations(query: TravelQuery, plan: Plan, ref: ReferenceDB):
    for d in _days(query, plan):
        if d.filled("accommodation"):
            rec = ref.accommodation(*split_name_city(d.accommodation))
            if rec is not None:
                yield d, rec


def check_cost(query: TravelQuery, plan: Plan, ref: ReferenceDB) -> CheckResult:
    cost = total_cost(query, plan, ref)
    if cost > query.budget:
        return _bad("valid_cost", f"The total cost {cost:g} exceeds the budget of {query.budget:g}.")
    return _ok("valid_cost")


def check_room_rule(query: TravelQuery, plan: Plan, ref: ReferenceDB) -> CheckResult:
    rule = query.local_constraint.house_rule
    if rule is None:
        return CheckResult(name="valid_room_rule", passed=None, reason="Not applicable.")
    for d, rec in _accommodations(query, plan, ref):
        if _RULE_TEXT[rule] in rec.house_rules:
            return _bad("valid_room_rule", f"The house rule should be {rule}: {rec.name} says '{rec.house_rules}'.")
    return _ok("valid_room_rule")


def check_room_type(query: TravelQuery, plan: Plan, ref: ReferenceDB) -> CheckResult:
    want = query.local_constraint.room_type
    if want is None:
        return CheckResult(name="valid_room_type", passed=None, reason="Not applicable.")
    for d, rec in _accommodations(query, plan, ref):
        if not _ROOM_OK[want](rec.room_type):
            return _bad("valid_room_type", f"The room type should be {want}: {rec.name} is a {rec.room_type}.")
    return _ok("valid_room_type")


def check_cuisine(query: TravelQuery, plan: Plan, ref: ReferenceDB) -> CheckResult:
    wanted = query.local_constraint.cuisine
    if not wanted:
        return CheckResult(name="valid_cuisine", passed=None, reason="Not applicable.")
    served: set[str] = set()
    for d in _days(query, plan):
        for meal in MEALS:
            if not d.filled(meal):
                continue
            name, city = split_name_city(getattr(d, meal))
            rec = ref.restaurant(name, city)
            if rec is not None and city_key(city) != city_key(query.org):
                served |= {c for c in wanted if c in rec.cuisines}
    missing = [c for c in wanted if c not in served]
    if missing:
        return _bad("valid_cuisine", f"The cuisine {', '.join(missing)} is not satisfied.")
    return _ok("valid_cuisine")


def check_transport_rule(query: TravelQuery, plan: Plan, ref: ReferenceDB) -> CheckResult:
    rule = query.local_constraint.transportation
    if rule is None:
        return CheckResult(name="valid_transportation", passed=None, reason="Not applicable.")
    word = "flight" if rule == "no flight" else "self-driving"
    for d in _days(query, plan):
        if d.filled("transportation") and word in d.transportation.lower():
            return _bad("valid_transportation", f"The transportation should not be {word} (day {d.days}).")
    return _ok("valid_transportation")


HARD_CHECKS = (check_cost, check_room_rule, check_room_type, check_cuisine, check_transport_rule)


def applicable_hard(query: TravelQuery) -> tuple[str, ...]:
    lc = query.local_constraint
    flags = (True, lc.house_rule is not None, lc.room_type is not None, bool(lc.cuisine), lc.transportation is not None)
    return tuple(n for n, f in zip(HARD, flags) if f)


# -- one plan ---------------------------------------------------------------------------------------
def evaluate_plan(query: TravelQuery, plan: Plan | str | None, ref: ReferenceDB, *,
                  gate_hard: bool = True) -> PlanEvaluation:
    """Run every check. ``plan`` may be parsed, raw text (parsed here), or None (not delivered).

    ``gate_hard=False`` runs the hard checks even on incomplete or out-of-sandbox plans (for
    diagnostics; the paper's metrics use the default).
    """
    if plan is None:
        return PlanEvaluation(delivered=False, parse_error="No plan was delivered.")
    if isinstance(plan, str):
        try:
            plan = parse_plan(plan)
        except PlanParseError as e:
            return PlanEvaluation(delivered=False, parse_error=str(e))
    common = tuple(check(query, plan, ref) for check in COMMONSENSE_CHECKS)
    gate = {c.name: c.passed for c in common}
    names = applicable_hard(query)
    if not gate_hard or (gate["is_not_absent"] and gate["is_valid_information_in_sandbox"]):
        hard = tuple(r for r in (check(query, plan, ref) for check in HARD_CHECKS) if r.name in names)
        cost = total_cost(query, plan, ref)
    else:
        reason = "Not evaluated: the plan is incomplete or uses information outside the sandbox."
        hard = tuple(CheckResult(name=n, passed=False, reason=reason) for n in names)
        cost = None
    return PlanEvaluation(delivered=True, commonsense=common, hard=hard, total_cost=cost)


# -- the six metrics --------------------------------------------------------------------------------
class TravelMetrics(BaseModel):
    """The paper's six metrics (fractions in [0, 1]) over ``n`` queries."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    n: int
    delivery_rate: float
    commonsense_micro: float
    commonsense_macro: float
    hard_micro: float
    hard_macro: float
    final_pass_rate: float


def metrics(evaluations: Sequence[PlanEvaluation], queries: Sequence[TravelQuery]) -> TravelMetrics:
    """Aggregate per-plan evaluations; undelivered plans fail every check (applicable ones for hard)."""
    if len(evaluations) != len(queries) or not evaluations:
        raise ValueError(f"metrics needs one evaluation per query and at least one (got {len(evaluations)} "
                         f"evaluations for {len(queries)} queries).")
    n = len(evaluations)
    cs_passed = sum(sum(bool(c.passed) for c in e.commonsense) for e in evaluations if e.delivered)
    hard_total = sum(len(applicable_hard(q)) for q in queries)
    hard_passed = sum(sum(bool(c.passed) for c in e.hard) for e in evaluations if e.delivered)
    return TravelMetrics(
        n=n,
        delivery_rate=sum(e.delivered for e in evaluations) / n,
        commonsense_micro=cs_passed / (len(COMMONSENSE) * n),
        commonsense_macro=sum(e.commonsense_pass for e in evaluations) / n,
        hard_micro=hard_passed / hard_total if hard_total else 0.0,
        hard_macro=sum(e.hard_pass for e in evaluations) / n,
        final_pass_rate=sum(e.final_pass for e in evaluations) / n,
    )


__all__ = ["COMMONSENSE", "HARD", "CheckResult", "PlanEvaluation", "TravelMetrics", "applicable_hard",
           "evaluate_plan", "metrics", "success_feedback", "total_cost"]
