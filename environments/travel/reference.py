"""The reference information of one travel query: typed records, lookups, a text rendering, SQLite.

TravelPlanner gives every query a "reference information box": attractions, restaurants and
accommodations of each candidate city, flights on each leg's date, and self-driving/taxi routes.
:class:`ReferenceDB` holds it as typed records and answers the lookups the evaluator and the tools
need (a restaurant by name and city, a flight by number, a route by mode and endpoints).

City names: the gold plans write state-trip cities as ``"Salt Lake City(Utah)"`` while the records
say ``"Salt Lake City"``; :func:`city_key` strips the parenthesised state, as the paper's evaluator
does, so both spellings refer to one city.

Covered: the train_ref_info.jsonl row format, the synthetic generator's records, a compact text
rendering for prompts, and an in-memory SQLite database for the tool-use mode. Not covered: the
full TravelPlanner sandbox database (only each query's reference information ships).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

DriveMode = Literal["self-driving", "taxi"]


class _Rec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Flight(_Rec):
    number: str
    price: float
    dep_time: str
    arr_time: str
    elapsed: str = ""
    date: str
    origin: str
    dest: str
    distance: float = 0.0


class Restaurant(_Rec):
    name: str
    avg_cost: float
    cuisines: tuple[str, ...]
    rating: float = 0.0
    city: str


class Attraction(_Rec):
    name: str
    city: str
    address: str = ""


class Accommodation(_Rec):
    name: str
    price: float
    room_type: str = Field(description="'Entire home/apt', 'Private room' or 'Shared room'.")
    house_rules: str = Field(default="", description="E.g. 'No parties & No smoking'; '' when no rule.")
    min_nights: int
    max_occupancy: int
    rating: float = 0.0
    city: str


class Route(_Rec):
    mode: DriveMode
    origin: str
    dest: str
    duration: str
    distance_km: float
    cost: float


def city_key(name: str) -> str:
    """'Salt Lake City(Utah)' -> 'Salt Lake City' (the evaluator's ``extract_before_parenthesis``)."""
    return re.sub(r"\s*\(.*?\)\s*$", "", name.strip()).strip()


_ROUTE_RE = re.compile(
    r"(?P<mode>self-driving|taxi), from (?P<o>.+?) to (?P<d>.+?), duration: (?P<dur>[^,]+), "
    r"distance: (?P<dist>[\d,.]+) km, cost: (?P<cost>[\d,.]+)", re.I)


def parse_route(text: str) -> Route | None:
    """Parse 'self-driving, from A to B, duration: 3 hours, distance: 376 km, cost: 18'; None if it is not one."""
    m = _ROUTE_RE.search(text)
    if not m:
        return None
    return Route(mode=m["mode"].lower(), origin=city_key(m["o"]), dest=city_key(m["d"]),  # type: ignore[arg-type]
                 duration=m["dur"].strip(), distance_km=float(m["dist"].replace(",", "")),
                 cost=float(m["cost"].replace(",", "")))


class ReferenceDB(_Rec):
    """Everything one query may use. Build it with :meth:`from_row` (train data) or directly (synthetic)."""

    flights: tuple[Flight, ...] = ()
    restaurants: tuple[Restaurant, ...] = ()
    attractions: tuple[Attraction, ...] = ()
    accommodations: tuple[Accommodation, ...] = ()
    routes: tuple[Route, ...] = ()
    cities: tuple[str, ...] = Field(default=(), description="Destination cities in the order they were described.")

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_row(cls, row: dict[str, object]) -> ReferenceDB:
        """Build from one line of train_ref_info.jsonl (description -> records or text)."""
        fl, rs, at, ac, ro, cities = [], [], [], [], [], []
        for desc, value in row.items():
            if desc.startswith("Accommodations in "):
                cities.append(city_key(desc[len("Accommodations in "):]))
            if isinstance(value, str):
                route = parse_route(value)
                if route is not None:
                    ro.append(route)
                continue
            for r in value:  # type: ignore[union-attr]
                if desc.startswith("Flight"):
                    fl.append(Flight(number=r["Flight Number"], price=r["Price"], dep_time=r["DepTime"],
                                     arr_time=r["ArrTime"], elapsed=r["ActualElapsedTime"], date=r["FlightDate"],
                                     origin=city_key(r["OriginCityName"]), dest=city_key(r["DestCityName"]),
                                     distance=r["Distance"]))
                elif desc.startswith("Restaurants"):
                    rs.append(Restaurant(name=r["Name"], avg_cost=r["Average Cost"], rating=r["Aggregate Rating"],
                                         cuisines=tuple(c.strip() for c in str(r["Cuisines"]).split(",") if c.strip()),
                                         city=city_key(r["City"])))
                elif desc.startswith("Attractions"):
                    at.append(Attraction(name=r["Name"], city=city_key(r["City"]), address=str(r.get("Address", ""))))
                elif desc.startswith("Accommodations"):
                    ac.append(Accommodation(name=str(r["NAME"]), price=r["price"], room_type=r["room type"],
                                            house_rules=str(r.get("house_rules") or ""),
                                            min_nights=int(r["minimum nights"]),
                                            max_occupancy=int(r["maximum occupancy"]),
                                            rating=r["review rate number"], city=city_key(r["city"])))
        return cls(flights=tuple(fl), restaurants=tuple(rs), attractions=tuple(at), accommodations=tuple(ac),
                   routes=tuple(ro), cities=tuple(cities))

    # -- lookups (names compare exactly up to outer spaces, cities through city_key) ----------------
    def flight(self, number: str) -> Flight | None:
        return next((f for f in self.flights if f.number == number.strip()), None)

    def restaurant(self, name: str, city: str) -> Restaurant | None:
        c = city_key(city)
        return next((r for r in self.restaurants if r.name.strip() == name.strip() and r.city == c), None)

    def attraction(self, name: str, city: str) -> Attraction | None:
        c = city_key(city)
        return next((a for a in self.attractions if a.name.strip() == name.strip() and a.city == c), None)

    def accommodation(self, name: str, city: str) -> Accommodation | None:
        c = city_key(city)
        return next((a for a in self.accommodations if a.name.strip() == name.strip() and a.city == c), None)

    def route(self, mode: str, origin: str, dest: str) -> Route | None:
        o, d, m = city_key(origin), city_key(dest), mode.lower()
        return next((r for r in self.routes if r.mode == m and r.origin == o and r.dest == d), None)

    def known_cities(self) -> set[str]:
        out = set(self.cities)
        for f in self.flights:
            out |= {f.origin, f.dest}
        for r in self.routes:
            out |= {r.origin, r.dest}
        return out

    # -- renderings -----------------------------------------------------------------------------
    def render(self, max_per_section: int | None = None) -> str:
        """A compact text of the box (one line per record), for the sole-planning prompt.

        ``max_per_section`` keeps the first N attractions, restaurants and accommodations of each
        city (flights and routes are always complete), to fit small context windows.
        """
        return "\n".join(_render_sections(self, max_per_section))

    def to_sqlite(self) -> sqlite3.Connection:
        """An in-memory SQLite database with one table per record kind (the tool-use mode's backend)."""
        con = sqlite3.connect(":memory:", check_same_thread=False)
        tables = {"flights": (Flight, self.flights), "restaurants": (Restaurant, self.restaurants),
                  "attractions": (Attraction, self.attractions), "accommodations": (Accommodation, self.accommodations),
                  "routes": (Route, self.routes)}
        for table, (model, rows) in tables.items():
            cols = list(model.model_fields)
            con.execute(f"CREATE TABLE {table} ({', '.join(cols)})")
            con.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' for _ in cols)})",
                            [tuple(_sql_value(getattr(r, c)) for c in cols) for r in rows])
        con.commit()
        return con


def _sql_value(v: object) -> object:
    return ", ".join(v) if isinstance(v, tuple) else v


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def render_flights(flights: Iterable[Flight]) -> list[str]:
    return [f"Flight Number: {f.number}, from {f.origin} to {f.dest}, Departure Time: {f.dep_time}, "
            f"Arrival Time: {f.arr_time}, Price: {_fmt(f.price)}, Date: {f.date}" for f in flights]


def render_restaurants(rows: Iterable[Restaurant]) -> list[str]:
    return [f"{r.name}, {r.city} | cost {_fmt(r.avg_cost)} | cuisines: {', '.join(r.cuisines)} | rating {r.rating}"
            for r in rows]


def render_attractions(rows: Iterable[Attraction]) -> list[str]:
    return [f"{a.name}, {a.city}" for a in rows]


def render_accommodations(rows: Iterable[Accommodation]) -> list[str]:
    return [f"{a.name}, {a.city} | price {_fmt(a.price)}/night | {a.room_type} | rules: {a.house_rules or 'none'} | "
            f"minimum nights {a.min_nights} | maximum occupancy {a.max_occupancy}" for a in rows]


def render_route(r: Route) -> str:
    label = "Self-driving" if r.mode == "self-driving" else "Taxi"
    return (f"{label}, from {r.origin} to {r.dest}, duration: {r.duration}, distance: {_fmt(r.distance_km)} km, "
            f"cost: {_fmt(r.cost)}")


def _render_sections(db: ReferenceDB, cap: int | None = None) -> list[str]:
    out: list[str] = []
    for city in db.cities:
        out.append(f"## Attractions in {city}")
        out += render_attractions([a for a in db.attractions if a.city == city][:cap])
        out.append(f"## Restaurants in {city}")
        out += render_restaurants([r for r in db.restaurants if r.city == city][:cap])
        out.append(f"## Accommodations in {city}")
        out += render_accommodations([a for a in db.accommodations if a.city == city][:cap])
    out.append("## Flights")
    out += render_flights(db.flights) or ["No flights."]
    out.append("## Self-driving and taxi")
    out += [render_route(r) for r in db.routes] or ["No routes."]
    return out


__all__ = ["Accommodation", "Attraction", "Flight", "ReferenceDB", "Restaurant", "Route", "city_key", "parse_route",
           "render_accommodations", "render_attractions", "render_flights", "render_restaurants", "render_route"]
