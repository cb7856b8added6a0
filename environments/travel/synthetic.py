"""A procedural generator of travel queries with a seeded synthetic database, at easy/medium/hard.

Training on it never touches the evaluation queries: cities, restaurants, attractions,
accommodations, flights and routes are invented (city names are made of syllables; states are real
US state names so queries read naturally and parse with the same :func:`parse_query`).

One example = ``generate_example(level, seed)``:

* levels ``easy``/``medium``/``hard`` (below) and ``short``: an easy query (one person, no local
  constraint) of 3 days in one city over a database cut to what such a plan needs (5 restaurants,
  2-3 attractions, 2-3 accommodations, one flight per leg at most), so the whole prompt stays under
  1k tokens of the default model's tokenizer (tested): the level a small model can be trained on;
* days 3, 5 or 7 visiting 1, 2 or 3 cities (a city, or cities of a state); dates in 2022-2025;
* people: 1 at easy, 2-8 at medium and hard; local constraints: none at easy, one at medium, three
  at hard, drawn from house rule, cuisine (2-4 cuisines), room type and transportation;
* a database for the trip: 10-14 restaurants (costs 10-100, 2-5 cuisines), 6-9 attractions and 8-12
  accommodations (price, room type, house rules, minimum nights 1-4, maximum occupancy 1-8) per
  destination city; 0-4 flights per leg on its date (times, prices); self-driving and taxi routes
  for every pair of trip cities (taxi costs about 1/km, self-driving 1/20 of that);
* a feasible reference plan built with the evaluator's rules (one transport mode for every leg, two
  nights per city at an accommodation that satisfies the constraints, distinct restaurants and
  attractions, every requested cuisine served); the budget is that plan's cost times 1.15-1.6,
  rounded up to $100. The plan is the example's ``gold`` and passes every check (tested).

The query text is generated from the structured query, and ``parse_query`` reads it back (tested).
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import random
from typing import Literal

from agentloop.env import Task
from agentloop.errors import ConfigError

from .data import TravelExample
from .evaluator import total_cost
from .plan import DayPlan, Plan, plan_to_json
from .query import CUISINES, LocalConstraint, TravelQuery, US_STATES
from .reference import Accommodation, Attraction, Flight, ReferenceDB, Restaurant, Route
from .sole import SolePlanningEnv

Level = Literal["short", "easy", "medium", "hard"]
LEVELS: tuple[str, ...] = ("short", "easy", "medium", "hard")
_PRE = ("Ash", "Bel", "Cor", "Dun", "El", "Fair", "Glen", "Har", "Iron", "Kel", "Lyn", "Mar", "Nor", "Oak", "Pine",
        "Quen", "Rav", "Sil", "Thorn", "Ul", "Val", "Wyn", "Yar", "Zel")
_SUF = ("ford", "ton", "ville", "field", "port", "burg", "dale", "wood", "haven", "ridge", "mont", "brook")
_ADJ = ("Golden", "Blue", "Little", "Happy", "Rustic", "Urban", "Silver", "Green", "Royal", "Sunny", "Old", "Spicy",
        "Lucky", "Quiet", "Bright", "Velvet")
_NOUN = ("Spoon", "Table", "Kitchen", "Bistro", "Grill", "Garden", "Corner", "Lantern", "Oven", "Harbor", "Plate",
         "Fork", "Cellar", "Terrace")
_SIGHTS = ("Museum", "Botanical Garden", "Art Gallery", "Zoo", "Riverside Park", "Historic Square", "Science Center",
           "Old Lighthouse", "Aquarium", "Observatory", "Sculpture Walk")
_STAYS = ("Loft", "Cottage", "Studio", "Suite", "Apartment", "Townhouse", "Guest Room", "Bungalow")
_EXTRA_CUISINES = ("Cafe", "Bakery", "Pizza", "Seafood", "BBQ", "Desserts", "Fast Food", "Tea")
_RULES = ("parties", "smoking", "children under 10", "pets", "visitors")
_ROOMS = ("Entire home/apt", "Private room", "Shared room")
_ROOM_WANTS = {"entire room": ("Entire home/apt",), "private room": ("Private room",),
               "shared room": ("Shared room",), "not shared room": ("Entire home/apt", "Private room")}


def _city_names(rng: random.Random, n: int) -> list[str]:
    names: set[str] = set()
    while len(names) < n:
        names.add(rng.choice(_PRE) + rng.choice(_SUF))
    return sorted(names)


def _constraints(rng: random.Random, level: Level) -> LocalConstraint:
    if level == "easy":
        return LocalConstraint()
    kinds = rng.sample(["house_rule", "cuisine", "room_type", "transportation"], 1 if level == "medium" else 3)
    return LocalConstraint(
        house_rule=rng.choice(_RULES) if "house_rule" in kinds else None,  # type: ignore[arg-type]
        cuisine=tuple(rng.sample(CUISINES, rng.randint(2, 4))) if "cuisine" in kinds else (),
        room_type=rng.choice(list(_ROOM_WANTS)) if "room_type" in kinds else None,  # type: ignore[arg-type]
        transportation=rng.choice(["no flight", "no self-driving"]) if "transportation" in kinds else None,  # type: ignore[arg-type]
    )


def _city_db(rng: random.Random, city: str, lc: LocalConstraint, short: bool = False) -> tuple[list, list, list]:
    rests: list[Restaurant] = []
    used: set[str] = set()

    def restaurant() -> None:
        name = f"{rng.choice(_ADJ)} {rng.choice(_NOUN)}"
        if name in used:
            return
        used.add(name)
        cuis = rng.sample(CUISINES, rng.randint(1, 2 if short else 3)) + rng.sample(_EXTRA_CUISINES, 1 if short else rng.randint(1, 2))
        rests.append(Restaurant(name=name, avg_cost=rng.randint(10, 100), cuisines=tuple(cuis),
                                rating=round(rng.uniform(2.5, 5.0), 1), city=city))

    if short:  # exactly the 5 meals of a 3-day, 1-city plan
        while len(rests) < 5:
            restaurant()
    else:
        for _ in range(rng.randint(10, 14)):
            restaurant()
    for i, c in enumerate(lc.cuisine):  # every requested cuisine is served somewhere in every city
        rests.append(Restaurant(name=f"{c} House {city}", avg_cost=rng.randint(15, 60), cuisines=(c, "Cafe"),
                                rating=4.0, city=city))
    sights = [Attraction(name=f"{city} {s}", city=city)
              for s in rng.sample(_SIGHTS, rng.randint(2, 3) if short else rng.randint(6, 9))]
    stays = []
    for i in range(rng.randint(1, 2) if short else rng.randint(8, 12)):
        rules = rng.sample(_RULES, rng.randint(0, 3))
        stays.append(Accommodation(name=f"{rng.choice(_ADJ)} {rng.choice(_STAYS)} {i + 1}", price=rng.randint(50, 800),
                                   room_type=rng.choice(_ROOMS), house_rules=" & ".join(f"No {r}" for r in rules),
                                   min_nights=rng.randint(1, 4), max_occupancy=rng.randint(1, 8),
                                   rating=float(rng.randint(1, 5)), city=city))
    # one stay that fits every constraint and two nights, so a valid plan always exists
    ok_rules = [r for r in _RULES if r != lc.house_rule]
    room = rng.choice(_ROOM_WANTS[lc.room_type]) if lc.room_type else rng.choice(_ROOMS[:2])
    stays.append(Accommodation(name=f"{city} Traveller {rng.choice(_STAYS)}", price=rng.randint(60, 250),
                               room_type=room, house_rules=" & ".join(f"No {r}" for r in rng.sample(ok_rules, 1)),
                               min_nights=rng.randint(1, 2), max_occupancy=rng.randint(2, 8), rating=4.0, city=city))
    return rests, sights, stays


def _legs_db(rng: random.Random, trip: list[str], dates: list[str], coords: dict[str, tuple[float, float]],
             mode: str, max_flights: int = 4) -> tuple[list[Flight], list[Route]]:
    flights, routes = [], []
    for (a, b), date in zip(zip(trip, trip[1:]), dates):
        km = math.dist(coords[a], coords[b])
        for _ in range(rng.randint(1 if mode == "flight" else 0, max_flights)):
            dep = rng.randint(5 * 60, 21 * 60)
            dur = max(45, int(km / 10) + rng.randint(0, 60))
            arr = (dep + dur) % (24 * 60)
            flights.append(Flight(number=f"F{rng.randint(1000000, 9999999)}", price=rng.randint(60, 600),
                                  dep_time=f"{dep // 60:02d}:{dep % 60:02d}", arr_time=f"{arr // 60:02d}:{arr % 60:02d}",
                                  elapsed=f"{dur // 60} hours {dur % 60} minutes", date=date, origin=a, dest=b,
                                  distance=round(km * 0.62)))
    for a in trip:
        for b in trip:
            if a != b and not any(r.origin == a and r.dest == b for r in routes):
                km = round(math.dist(coords[a], coords[b]))
                dur = f"{km // 80} hours {km % 80 * 60 // 80} mins"
                routes += [Route(mode="self-driving", origin=a, dest=b, duration=dur, distance_km=km, cost=max(1, km // 20)),
                           Route(mode="taxi", origin=a, dest=b, duration=dur, distance_km=km, cost=km)]
    return flights, routes


def _transport_text(mode: str, a: str, b: str, ref: ReferenceDB, date: str) -> str:
    if mode == "flight":
        f = min((f for f in ref.flights if f.origin == a and f.dest == b and f.date == date), key=lambda f: f.price)
        return (f"Flight Number: {f.number}, from {a} to {b}, Departure Time: {f.dep_time}, "
                f"Arrival Time: {f.arr_time}")
    r = ref.route(mode, a, b)
    assert r is not None
    label = "Self-driving" if mode == "self-driving" else "Taxi"
    return f"{label}, from {a} to {b}, duration: {r.duration}, distance: {r.distance_km:g} km, cost: {r.cost:g}"


def _gold(rng: random.Random, q: TravelQuery, ref: ReferenceDB, trip: list[str], mode: str) -> Plan:
    """Two nights per city; day 2k+1 is a travel day (see the module docstring)."""
    lc, cities = q.local_constraint, trip[1:-1]
    meals = {c: [r for r in ref.restaurants if r.city == c] for c in cities}
    for c in cities:  # one restaurant per requested cuisine first, so each is served
        firsts = [r for x in lc.cuisine for r in meals[c] if r.name == f"{x} House {c}"]
        meals[c] = firsts + sorted((r for r in meals[c] if r not in firsts), key=lambda r: r.avg_cost)
    sights = {c: [a for a in ref.attractions if a.city == c] for c in cities}
    stay = {}
    for c in cities:
        fits = [a for a in ref.accommodations if a.city == c and a.min_nights <= 2
                and (lc.house_rule is None or f"No {lc.house_rule}" not in a.house_rules)
                and (lc.room_type is None or a.room_type in _ROOM_WANTS[lc.room_type])]
        stay[c] = min(fits, key=lambda a: a.price * math.ceil(q.people_number / a.max_occupancy))
    take = lambda pool: pool.pop(0)  # noqa: E731 - each restaurant/attraction used once
    days: list[DayPlan] = []
    for i in range(q.days):
        k = i // 2
        if i == q.days - 1:  # back home
            c = cities[-1]
            days.append(DayPlan(days=i + 1, current_city=f"from {c} to {q.org}",
                                transportation=_transport_text(mode, c, q.org, ref, q.date[i]),
                                breakfast=f"{take(meals[c]).name}, {c}", attraction="-", lunch="-", dinner="-",
                                accommodation="-"))
        elif i % 2 == 0:  # travel day into cities[k]
            a, c = trip[k], cities[k]
            days.append(DayPlan(days=i + 1, current_city=f"from {a} to {c}",
                                transportation=_transport_text(mode, a, c, ref, q.date[i]),
                                breakfast="-" if k == 0 else f"{take(meals[a]).name}, {a}",
                                attraction="-" if k == 0 else f"{take(sights[c]).name}, {c};",
                                lunch="-" if k == 0 else f"{take(meals[c]).name}, {c}",
                                dinner=f"{take(meals[c]).name}, {c}", accommodation=f"{stay[c].name}, {c}"))
        else:
            c = cities[k]
            days.append(DayPlan(days=i + 1, current_city=c, transportation="-",
                                breakfast=f"{take(meals[c]).name}, {c}",
                                attraction=f"{take(sights[c]).name}, {c};{take(sights[c]).name}, {c};",
                                lunch=f"{take(meals[c]).name}, {c}", dinner=f"{take(meals[c]).name}, {c}",
                                accommodation=f"{stay[c].name}, {c}"))
    return tuple(days)


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 11 <= n % 100 <= 13 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def query_text(q: TravelQuery) -> str:
    """The natural-language request for a structured query (what ``parse_query`` reads back)."""
    start, end = dt.date.fromisoformat(q.date[0]), dt.date.fromisoformat(q.date[-1])
    who = "one person" if q.people_number == 1 else f"a group of {q.people_number}"
    where = (f"from {q.org} to {q.dest}" if q.visiting_city_number == 1
             else f"departing from {q.org} and visiting {q.visiting_city_number} cities in {q.dest}")
    when = (f"from {start:%B} {_ordinal(start.day)} to {end:%B} {_ordinal(end.day)}, {end.year}")
    out = [f"Please plan a {q.days}-day trip for {who} {where}, {when}, with a budget of ${int(q.budget):,}."]
    lc = q.local_constraint
    if lc.house_rule == "children under 10":
        out.append("We travel with children under 10, so the accommodations must allow them.")
    elif lc.house_rule:
        out.append(f"Our accommodations must allow {lc.house_rule}.")
    if lc.room_type:
        out.append(f"We would like {lc.room_type}s.")
    if lc.cuisine:
        out.append(f"We want to try {', '.join(lc.cuisine[:-1])} and {lc.cuisine[-1]} cuisines.")
    if lc.transportation == "no flight":
        out.append("We do not want to take any flights.")
    elif lc.transportation == "no self-driving":
        out.append("We do not plan on self-driving.")
    return " ".join(out)


def generate_example(level: Level = "easy", seed: int = 0) -> TravelExample:
    """One synthetic query with its database and a feasible gold plan (deterministic in ``seed``)."""
    if level not in LEVELS:
        raise ConfigError(f"level must be one of {', '.join(LEVELS)}, got {level!r}.")
    rng = random.Random(f"travel-synthetic-{level}-{seed}")
    short = level == "short"
    days = 3 if short else rng.choice((3, 5, 7))
    n_cities = {3: 1, 5: 2, 7: 3}[days]
    names = _city_names(rng, 8)
    org, pool = names[0], names[1:]
    state = rng.choice(US_STATES)
    dest_cities = pool[: max(n_cities + 1, 4)] if n_cities > 1 else [pool[0]]
    visit = rng.sample(dest_cities, n_cities)
    lc = _constraints(rng, "easy" if short else level)
    people = 1 if level in ("easy", "short") else rng.randint(2, 8)
    start = dt.date(rng.randint(2022, 2025), rng.randint(1, 12), rng.randint(1, 28))
    dates = [(start + dt.timedelta(days=i)).isoformat() for i in range(days)]
    mode = rng.choice([m for m in ("flight", "self-driving", "taxi")
                       if not (m == "flight" and lc.transportation == "no flight")
                       and not (m == "self-driving" and lc.transportation == "no self-driving")])
    coords = {c: (rng.uniform(0, 2500), rng.uniform(0, 1500)) for c in [org, *dest_cities]}
    trip = [org, *visit, org]
    leg_dates = [dates[2 * k] for k in range(n_cities)] + [dates[-1]]
    flights, routes = _legs_db(rng, trip, leg_dates, coords, mode, max_flights=1 if short else 4)
    rests, sights, stays = [], [], []
    for c in dest_cities:
        r, s, a = _city_db(rng, c, lc, short=short)
        rests, sights, stays = rests + r, sights + s, stays + a
    ref = ReferenceDB(flights=tuple(flights), restaurants=tuple(rests), attractions=tuple(sights),
                      accommodations=tuple(stays), routes=tuple(routes), cities=tuple(dest_cities))
    draft = TravelQuery(query="", org=org, dest=state if n_cities > 1 else visit[0], days=days,
                        visiting_city_number=n_cities, date=tuple(dates), people_number=people, budget=1.0,
                        local_constraint=lc, level="easy" if short else level)
    gold = _gold(rng, draft, ref, trip, mode)
    budget = math.ceil(total_cost(draft, gold, ref) * rng.uniform(1.15, 1.6) / 100) * 100
    q = draft.model_copy(update={"budget": float(budget)})
    q = q.model_copy(update={"query": query_text(q)})
    return TravelExample(id=f"synthetic-{level}-{seed}", query=q, reference=ref, gold=gold)


class SyntheticTravelEnv(SolePlanningEnv):
    """Sole-planning over generated queries: task ``i`` is ``generate_example(level, seed * 1_000_003 + i)``.

    ``gold_reply(task)`` is the generator's feasible plan as the JSON the plan parser reads (the warm-start
    SFT data: ``agentloop envs export-gold travel/synthetic-v0 OUT.jsonl level=short``).
    """

    def __init__(self, level: Level = "easy", seed: int = 0, num_tasks: int = 1000,
                 reward: Literal["final", "fraction"] = "final",
                 feedback_checks: Literal["commonsense", "all"] = "commonsense", max_per_section: int | None = None):
        if num_tasks < 1:
            raise ConfigError(f"num_tasks must be >= 1, got {num_tasks}.")
        if level not in LEVELS:
            raise ConfigError(f"level must be one of {', '.join(LEVELS)}, got {level!r}.")
        super().__init__(reward=reward, feedback_checks=feedback_checks, max_per_section=max_per_section, examples=())
        self.level, self.seed, self._n = level, seed, num_tasks

    def num_tasks(self) -> int:
        return self._n

    def example(self, index: int) -> TravelExample:
        return _cached_example(self.level, self.seed * 1_000_003 + index)

    def gold_reply(self, task: Task) -> str | None:
        """The generator's feasible plan for ``task``, as JSON (for ``envs check-gold``/``export-gold`` and warm starts)."""
        gold = self.example(int(task.metadata["index"])).gold  # type: ignore[arg-type]
        return plan_to_json(gold) if gold else None


@functools.lru_cache(maxsize=4096)
def _cached_example(level: Level, seed: int) -> TravelExample:
    return generate_example(level, seed)


__all__ = ["SyntheticTravelEnv", "generate_example", "query_text"]
