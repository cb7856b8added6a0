"""Tool-use mode (TravelPlanner's two-stage setting): gather information with tools, then write the plan.

The agent sees only the query. It calls the paper's tools over an in-memory SQLite database built
from the query's reference information (:meth:`ReferenceDB.to_sqlite`):

=====================  ==================================================================
CitySearch(state)      the candidate cities of a state (the query's destination cities)
FlightSearch(origin, destination, date)   flights on that date, or "There is no flight ..."
DistanceMatrix(origin, destination, mode) the self-driving or taxi route (duration, distance, cost)
RestaurantSearch(city) restaurants with average cost, cuisines and rating
AttractionSearch(city) attractions
AccommodationSearch(city) accommodations with price, room type, house rules, minimum nights,
                       maximum occupancy
NotebookWrite(description) stores the previous tool result in the notebook under a description
=====================  ==================================================================

The paper's ``Planner`` tool is the agent itself: a reply with no tool call is the plan, judged by
the same evaluator as sole-planning (:func:`verdict_from_evaluation`). City names match case- and
``(State)``-insensitively. The notebook is returned in the final info (``notebook``).
``source="synthetic"`` (with ``level``, ``seed``, ``num_tasks``) plays the generator's queries over
their synthetic databases instead of the 45 training queries.

Not covered: the full TravelPlanner database (each query only reaches its own reference
information, so searches outside it return nothing).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any, Literal

from langchain_core.tools import BaseTool, StructuredTool

from agentloop.env import Task, Verdict
from agentloop.errors import ConfigError
from agentloop.types import ToolCall, user

from ..tools.core import ToolOutcome
from ..tools.env import ToolEnv
from .data import TravelExample, load_train
from .evaluator import evaluate_plan
from .plan import plan_to_json, plan_to_text
from .reference import (Accommodation, Attraction, Flight, Restaurant, Route, city_key, render_accommodations,
                        render_attractions, render_flights, render_restaurants, render_route)
from .sole import PLAN_INSTRUCTIONS, verdict_from_evaluation

TOOL_INSTRUCTIONS = """Collect the information the trip needs with the tools (cities of the destination state, \
flights or driving routes for every leg, restaurants, attractions and accommodations of every city you visit); you may \
make several calls in one reply. When you have what you need, reply with the final plan and no tool call.

""" + PLAN_INSTRUCTIONS


def _rows(con: sqlite3.Connection, model: type, sql: str, args: Sequence[Any]) -> list[Any]:
    cur = con.execute(sql, tuple(args))
    cols = [c[0] for c in cur.description]
    out = []
    for row in cur.fetchall():
        values = dict(zip(cols, row))
        if "cuisines" in values:
            values["cuisines"] = tuple(c.strip() for c in values["cuisines"].split(",") if c.strip())
        out.append(model(**values))
    return out


def travel_tools(con: sqlite3.Connection, cities_by_state: dict[str, list[str]], notebook: list[dict[str, str]],
                 last_result: list[str]) -> list[BaseTool]:
    """The seven tools over one query's database; ``notebook`` and ``last_result`` are shared state."""
    def city_search(state: str) -> str:
        """Find the cities of a US state that can be visited.

        Args:
            state: The state, e.g. 'Texas'.
        """
        found = cities_by_state.get(state.strip().lower())
        return ", ".join(found) if found else f"No cities found for state {state}."

    def flight_search(origin: str, destination: str, date: str) -> str:
        """Find flights from one city to another on a date.

        Args:
            origin: Departure city.
            destination: Arrival city.
            date: The date, YYYY-MM-DD.
        """
        rows = _rows(con, Flight, "SELECT * FROM flights WHERE lower(origin)=lower(?) AND lower(dest)=lower(?) "
                     "AND date=? ORDER BY dep_time", [city_key(origin), city_key(destination), date.strip()])
        return "\n".join(render_flights(rows)) or f"There is no flight from {origin} to {destination} on {date}."

    def distance_matrix(origin: str, destination: str, mode: Literal["self-driving", "taxi"]) -> str:
        """Driving distance, duration and cost between two cities by self-driving or taxi.

        Args:
            origin: Starting city.
            destination: Destination city.
            mode: 'self-driving' or 'taxi'.
        """
        rows = _rows(con, Route, "SELECT * FROM routes WHERE mode=? AND lower(origin)=lower(?) AND lower(dest)=lower(?)",
                     [mode, city_key(origin), city_key(destination)])
        return render_route(rows[0]) if rows else f"{mode}, from {origin} to {destination}, no valid information."

    def per_city(table: str, model: type, render: Any, what: str) -> Any:
        def search(city: str) -> str:
            rows = _rows(con, model, f"SELECT * FROM {table} WHERE lower(city)=lower(?)", [city_key(city)])
            return "\n".join(render(rows)) or f"There are no {what} in {city}."
        return search

    def notebook_write(description: str) -> str:
        """Store the result of the previous tool call in the notebook.

        Args:
            description: A short description, e.g. 'Flights from Houston to Dallas on 2022-03-10'.
        """
        if not last_result:
            raise ValueError("there is no tool result to store yet; call a search tool first")
        notebook.append({"Short Description": description, "Content": last_result[-1]})
        return f"The information has been recorded in Notebook, and its index is {len(notebook) - 1}."

    def city_doc(what: str) -> str:
        return f"List the {what} of a city.\n\nArgs:\n    city: The city, e.g. 'Dallas'."

    specs = [
        ("CitySearch", city_search, None), ("FlightSearch", flight_search, None),
        ("DistanceMatrix", distance_matrix, None),
        ("RestaurantSearch", per_city("restaurants", Restaurant, render_restaurants, "restaurants"), city_doc("restaurants")),
        ("AttractionSearch", per_city("attractions", Attraction, render_attractions, "attractions"), city_doc("attractions")),
        ("AccommodationSearch", per_city("accommodations", Accommodation, render_accommodations, "accommodations"),
         city_doc("accommodations")),
        ("NotebookWrite", notebook_write, None),
    ]
    tools = []
    for name, fn, doc in specs:
        if doc is not None:
            fn.__doc__ = doc
        tools.append(StructuredTool.from_function(fn, name=name, parse_docstring=True))
    return tools


class TravelToolEnv(ToolEnv):
    """TravelPlanner two-stage (tool-use) mode over the 45 training queries or given examples."""

    def __init__(self, max_replies: int = 30, reward: Literal["final", "fraction"] = "final",
                 feedback_checks: Literal["commonsense", "all"] = "commonsense",
                 source: Literal["train", "synthetic"] = "train", level: Literal["easy", "medium", "hard"] = "easy",
                 seed: int = 0, num_tasks: int = 1000, examples: Sequence[TravelExample] | None = None,
                 tool_prompt: Literal["text", "native"] = "text"):
        super().__init__(max_replies=max_replies, system_prompt=TOOL_INSTRUCTIONS, tool_prompt=tool_prompt)
        if num_tasks < 1:
            raise ConfigError(f"num_tasks must be >= 1, got {num_tasks}.")
        self.reward_mode = reward
        self.include_hard = feedback_checks == "all"
        self.source, self.level, self.seed, self._n = source, level, seed, num_tasks
        self._examples = tuple(examples) if examples is not None else None
        self._con: sqlite3.Connection | None = None
        self.notebook: list[dict[str, str]] = []
        self._last: list[str] = []

    def example(self, index: int) -> TravelExample:
        """Task ``index``: given examples, the training queries, or synthetic (as in SyntheticTravelEnv)."""
        if self._examples is not None:
            return self._examples[index]
        if self.source == "synthetic":
            from .synthetic import _cached_example

            return _cached_example(self.level, self.seed * 1_000_003 + index)
        return load_train()[index]

    def num_tasks(self) -> int:
        if self._examples is not None:
            return len(self._examples)
        return self._n if self.source == "synthetic" else len(load_train())

    def get_task(self, index: int) -> Task:
        ex = self.example(index)
        return Task(id=ex.id, messages=(user(f"Query: {ex.query.query}"),),
                    answer=plan_to_json(ex.gold) if ex.gold else None,
                    metadata={"level": ex.query.level, "days": ex.query.days, "index": index})

    def tools_for(self, task: Task) -> Sequence[Any]:
        ex = self.example(int(task.metadata["index"]))  # type: ignore[arg-type]
        self._close_db()
        self._con = ex.reference.to_sqlite()
        self.notebook, self._last = [], []
        states = {ex.query.dest.lower(): list(ex.reference.cities)} if ex.query.visiting_city_number > 1 else {}
        return travel_tools(self._con, states, self.notebook, self._last)

    def execute(self, call: ToolCall) -> ToolOutcome:
        outcome = super().execute(call)
        if outcome.ok and call.name != "NotebookWrite":
            self._last.append(outcome.content)
        return outcome

    def verify(self, task: Task, action: str) -> Verdict:
        ex = self.example(int(task.metadata["index"]))  # type: ignore[arg-type]
        ev = evaluate_plan(ex.query, action, ex.reference)
        verdict = verdict_from_evaluation(ev, reward_mode=self.reward_mode, include_hard=self.include_hard,
                                          gold_text=plan_to_text(ex.gold) if ex.gold else None, query=ex.query)
        return verdict.model_copy(update={"info": {**verdict.info, "notebook": list(self.notebook)}})

    def _close_db(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    def close(self) -> None:
        self._close_db()
        super().close()


__all__ = ["TOOL_INSTRUCTIONS", "TravelToolEnv", "travel_tools"]
