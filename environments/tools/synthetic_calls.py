"""Procedural function-calling tasks for training, in BFCL's format and checked by BFCL's AST rules.

``make("tools/synthetic-calls-v0", level="simple", split="train", seed=0, num_tasks=1000)``: task
``i`` is a generated BFCL record (:class:`~.bfcl.BFCLRecord`): function documents, a natural-language
request and its ground truth (every argument with its acceptable values). The environment *is*
``tools/bfcl-format-v0`` over generated records: the same prompt (the tool schemas in the system
message), the same reply parser and the same checker (:func:`~.bfcl.judge_calls`), so what a model
learns here is scored the way real BFCL scores it.

What is generated:

* **functions** from 16 families (weather, flights, currency, e-mail, a hotel booking with a nested
  ``guest`` object, ...), each with typed parameters: ``string``, ``integer``, ``float``,
  ``boolean``, ``array`` of strings, ``string`` with an ``enum``, and ``dict`` with its own
  properties; ``required`` and optional ones (optional ones may have a default). Each family has
  three spellings of its name (``get_weather``, ``weather.get_current``...), picked per task, so a
  model must read the schema rather than remember one name;
* **requests**: a lead sentence that carries the required values, plus one sentence per optional
  argument that the request sets; an optional argument the request does not mention must be left
  out (or set to its default);
* **levels** (BFCL's single-turn categories): ``simple`` (one function, one call), ``multiple``
  (2-4 candidate functions, one call: choose the function), ``parallel`` (one function, 2-3 calls
  with different values), ``parallel_multiple`` (2-4 functions, 2-3 calls to different ones) and
  ``mixed`` (each task draws one of the four).

**Splits.** ``split="test"`` uses 4 held-out families (alarms, loans, books, rides): their function
names, descriptions, parameter names and request templates never occur in ``split="train"``
(12 families), so a test score measures calling functions the model has not seen. The value pools
(cities, people...) are shared: they are the words of the request, not what is learned.

**Feedback** is the BFCL environment's: ``info["feedback"]`` names the wrong function, the unexpected,
missing or wrongly typed argument and the argument whose value is wrong, never the value
(``MultiAttempt(feedback="env")``); ``info["oracle_feedback"]`` adds the acceptable calls with their
values to it (``feedback="oracle"``). ``gold_reply(task)`` is the ground truth's first acceptable call per
expected call in the ``<tool_call>`` format the parser reads: the "teacher" SFT data
(``agentloop envs export-gold tools/synthetic-calls-v0 OUT.jsonl``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from agentloop.env import TaskEnv
from agentloop.errors import ConfigError

from .bfcl import BFCLFormatEnv, BFCLRecord

Level = Literal["simple", "multiple", "parallel", "parallel_multiple", "mixed"]
Split = Literal["train", "test"]
LEVELS: tuple[str, ...] = ("simple", "multiple", "parallel", "parallel_multiple", "mixed")
Rng = np.random.Generator

# -- value pools (shared by both splits: the words of requests) ----------------------------------------
CITIES = ("Paris", "Tokyo", "Lagos", "Lima", "Oslo", "Cairo", "Denver", "Mumbai", "Seoul", "Quito", "Dublin",
          "Nairobi", "Austin", "Hanoi", "Porto", "Vienna", "Perth", "Havana", "Boston", "Kyoto")
PEOPLE = ("Alice Moreau", "Ben Okafor", "Chen Wei", "Dana Levi", "Eva Novak", "Farid Haddad", "Grace Kim",
          "Hugo Silva", "Ines Duarte", "Jon Berg", "Kara Singh", "Liam Walsh")
CUISINES = ("thai", "mexican", "italian", "ethiopian", "korean", "greek", "indian", "peruvian")
CURRENCIES = ("USD", "EUR", "JPY", "GBP", "INR", "BRL", "CAD", "CHF")
LANGUAGES = ("french", "spanish", "german", "japanese", "swahili", "portuguese")
SUBJECTS = ("quarterly report", "team lunch", "project update", "invoice 2231", "travel plans", "launch checklist")
PHRASES = ("good morning", "where is the station", "thank you very much", "the meeting is at noon", "see you soon")
SYMBOLS = ("AAPL", "MSFT", "TSLA", "NVDA", "AMZN", "SONY", "SAP", "BABA")
COUNTRIES = ("Canada", "Brazil", "Japan", "Kenya", "Norway", "Chile", "India", "Spain")
TITLES = ("design review", "dentist appointment", "yoga class", "budget meeting", "book club", "code sprint")
TOPICS = ("astronomy", "gardening", "history", "chess", "climate", "poetry")
LABELS = ("gym", "medicine", "call mom", "standup", "water plants")
STREETS = ("12 Oak Street", "Central Station", "45 Harbor Road", "City Airport", "7 Elm Avenue", "Museum Square")


@dataclass(frozen=True)
class Param:
    """One parameter: its BFCL schema, how to draw a value and how a request says it."""

    name: str
    type: str  # BFCL type: string | integer | float | boolean | array | dict
    description: str
    draw: Callable[[Rng], Any]
    say: str = "{}"  # the sentence (optional) or phrase (required) carrying the value
    required: bool = False
    default: Any = None
    enum: tuple[str, ...] = ()
    say_false: str = ""  # booleans: the sentence for False ("" = False is never requested)
    props: tuple[Param, ...] = ()  # dict parameters: their properties (all required)

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "description": self.description}
        if self.enum:
            out["enum"] = list(self.enum)
        if self.type == "array":
            out["items"] = {"type": "string"}
        if self.type == "dict":
            out["properties"] = {p.name: p.schema() for p in self.props}
            out["required"] = [p.name for p in self.props]
        if self.default is not None:
            out["description"] += f" Default: {self.default}."
        return out


@dataclass(frozen=True)
class Family:
    """A kind of function: name spellings, description, parameters and request lead templates."""

    names: tuple[str, str, str]
    description: str
    params: tuple[Param, ...]
    leads: tuple[str, ...]  # templates over the required parameters, e.g. "What's the weather in {city}?"
    split: Split = "train"


def pick(pool: tuple[Any, ...]) -> Callable[[Rng], Any]:
    return lambda rng: pool[int(rng.integers(len(pool)))]


def ints(lo: int, hi: int) -> Callable[[Rng], int]:
    return lambda rng: int(rng.integers(lo, hi + 1))


def floats(lo: float, hi: float) -> Callable[[Rng], float]:
    return lambda rng: round(float(rng.uniform(lo, hi)), 1)


def some(pool: tuple[str, ...], lo: int = 2, hi: int = 3) -> Callable[[Rng], list[str]]:
    return lambda rng: [pool[int(i)] for i in rng.choice(len(pool), size=int(rng.integers(lo, hi + 1)), replace=False)]


def date(rng: Rng) -> str:
    return f"2025-{int(rng.integers(1, 13)):02d}-{int(rng.integers(1, 29)):02d}"


def clock(rng: Rng) -> str:
    return f"{int(rng.integers(5, 23)):02d}:{int(rng.choice([0, 15, 30, 45])):02d}"


def email(rng: Rng) -> str:
    first, last = pick(PEOPLE)(rng).lower().split()
    return f"{first}.{last}@example.com"


def emails(rng: Rng) -> list[str]:
    return sorted({email(rng) for _ in range(int(rng.integers(1, 3)))})


def flag(name: str, description: str, say: str, say_false: str = "", default: bool = False) -> Param:
    return Param(name, "boolean", description, lambda rng: bool(rng.integers(2)) if say_false else True, say,
                 default=default, say_false=say_false)


def _P(name: str, type_: str, description: str, draw: Callable[[Rng], Any], say: str = "{}", **kw: Any) -> Param:
    return Param(name, type_, description, draw, say, **kw)


FAMILIES: tuple[Family, ...] = (
    # -- train -------------------------------------------------------------------------------------
    Family(("get_weather", "weather.get_current", "fetch_weather_report"), "Get the current weather for a city.", (
        _P("city", "string", "The city name.", pick(CITIES), required=True),
        _P("unit", "string", "Temperature unit.", pick(("celsius", "fahrenheit")), "Give it in {}.",
           enum=("celsius", "fahrenheit"), default="celsius"),
        flag("include_forecast", "Also return the 3-day forecast.", "Include the forecast too."),
    ), ("What's the weather in {city}?", "Tell me the current weather for {city}.")),
    Family(("book_flight", "flights.book", "reserve_flight"), "Book a one-way flight.", (
        _P("origin", "string", "Departure city.", pick(CITIES), required=True),
        _P("destination", "string", "Arrival city.", pick(CITIES), required=True),
        _P("date", "string", "Travel date, YYYY-MM-DD.", date, required=True),
        _P("passengers", "integer", "Number of passengers.", ints(2, 6), "We are {} passengers.", default=1),
        _P("cabin", "string", "Cabin class.", pick(("economy", "business", "first")), "Book {} class.",
           enum=("economy", "business", "first")),
    ), ("Book a flight from {origin} to {destination} on {date}.", "I need to fly {origin} to {destination} on {date}.")),
    Family(("convert_currency", "fx.convert", "currency_exchange"), "Convert an amount between currencies.", (
        _P("amount", "float", "The amount to convert.", floats(5, 5000), required=True),
        _P("from_currency", "string", "ISO code of the source currency.", pick(CURRENCIES), required=True,
           enum=CURRENCIES),
        _P("to_currency", "string", "ISO code of the target currency.", pick(CURRENCIES), required=True, enum=CURRENCIES),
    ), ("Convert {amount} {from_currency} to {to_currency}.", "How much is {amount} {from_currency} in {to_currency}?")),
    Family(("find_restaurants", "dining.search", "search_restaurants"), "Search restaurants in a city.", (
        _P("city", "string", "The city to search in.", pick(CITIES), required=True),
        _P("cuisine", "string", "Type of food.", pick(CUISINES), required=True),
        _P("max_price", "integer", "Highest price per person in dollars.", ints(10, 80), "Keep it under {} dollars."),
        flag("open_now", "Only places open now.", "Only show places that are open now.", "Include closed places too."),
    ), ("Find {cuisine} restaurants in {city}.", "Where can I eat {cuisine} food in {city}?")),
    Family(("send_email", "mail.send", "compose_and_send_email"), "Send an e-mail.", (
        _P("to", "string", "Recipient address.", email, required=True),
        _P("subject", "string", "Subject line.", pick(SUBJECTS), required=True),
        _P("cc", "array", "Addresses to copy.", emails, "Copy {}."),
        flag("urgent", "Mark as urgent.", "Mark it as urgent."),
    ), ("Email {to} with the subject {subject}.", "Send a mail to {to} about {subject}.")),
    Family(("create_event", "calendar.add_event", "schedule_event"), "Add an event to the calendar.", (
        _P("title", "string", "Event title.", pick(TITLES), required=True),
        _P("date", "string", "Event date, YYYY-MM-DD.", date, required=True),
        _P("duration_minutes", "integer", "Length in minutes.", ints(15, 180), "It lasts {} minutes.", default=60),
        _P("attendees", "array", "Names of the people invited.", some(PEOPLE), "Invite {}."),
    ), ("Put a {title} in my calendar on {date}.", "Schedule {title} for {date}.")),
    Family(("get_stock_price", "market.quote", "lookup_share_price"), "Latest price of a stock.", (
        _P("symbol", "string", "Ticker symbol.", pick(SYMBOLS), required=True),
        _P("exchange", "string", "Stock exchange.", pick(("NASDAQ", "NYSE", "TSE", "XETRA")), "Use the {} listing.",
           enum=("NASDAQ", "NYSE", "TSE", "XETRA")),
    ), ("What is {symbol} trading at?", "Get me the share price of {symbol}.")),
    Family(("calculate_bmi", "health.bmi", "body_mass_index"), "Body mass index from weight and height.", (
        _P("weight_kg", "float", "Weight in kilograms.", floats(40, 120), required=True),
        _P("height_m", "float", "Height in meters.", floats(1.4, 2.1), required=True),
    ), ("What is the BMI of someone who weighs {weight_kg} kg and is {height_m} m tall?",
        "Compute my BMI: {weight_kg} kg, {height_m} m.")),
    Family(("book_hotel", "hotels.reserve", "make_hotel_booking"), "Reserve a hotel room.", (
        _P("city", "string", "City of the hotel.", pick(CITIES), required=True),
        _P("nights", "integer", "Number of nights.", ints(1, 9), required=True),
        _P("guest", "dict", "The main guest.", lambda rng: None, required=True, props=(
            _P("name", "string", "Full name.", pick(PEOPLE)), _P("age", "integer", "Age in years.", ints(18, 80)))),
        flag("breakfast", "Include breakfast.", "Add breakfast.", "No breakfast, please."),
    ), ("Book a hotel in {city} for {nights} nights for {guest}.", "Reserve {nights} nights in {city}; the guest is {guest}.")),
    Family(("translate_text", "lang.translate", "translate_phrase"), "Translate text into another language.", (
        _P("text", "string", "The text to translate.", pick(PHRASES), required=True),
        _P("target_language", "string", "Language to translate into.", pick(LANGUAGES), required=True, enum=LANGUAGES),
        flag("formal", "Use the formal register.", "Make it formal.", "Keep it informal."),
    ), ("Translate '{text}' into {target_language}.", "How do you say '{text}' in {target_language}?")),
    Family(("search_movies", "cinema.find_movies", "movie_search"), "Search movies by genre.", (
        _P("genre", "string", "Movie genre.", pick(("comedy", "drama", "horror", "sci-fi", "animation")), required=True,
           enum=("comedy", "drama", "horror", "sci-fi", "animation")),
        _P("year", "integer", "Release year.", ints(1970, 2024), "Only from {}."),
        _P("min_rating", "float", "Lowest rating out of 10.", floats(5, 9), "Rated at least {}."),
    ), ("Recommend some {genre} movies.", "Find {genre} films for tonight.")),
    Family(("estimate_shipping", "parcel.quote", "shipping_cost"), "Estimate the cost of sending a parcel.", (
        _P("weight_kg", "float", "Parcel weight in kilograms.", floats(0.5, 30), required=True),
        _P("destination_country", "string", "Country it goes to.", pick(COUNTRIES), required=True),
        flag("express", "Express delivery.", "Send it express."),
        _P("size", "dict", "Parcel size.", lambda rng: None, "The box is {}.", props=(
            _P("length_cm", "integer", "Length in cm.", ints(10, 120)), _P("width_cm", "integer", "Width in cm.", ints(10, 80)))),
    ), ("How much to ship {weight_kg} kg to {destination_country}?", "Quote shipping of a {weight_kg} kg parcel to {destination_country}.")),
    # -- test (held out: names, parameters and templates never seen in training) -----------------------
    Family(("set_alarm", "clock.create_alarm", "schedule_alarm"), "Set an alarm.", (
        _P("time", "string", "Time of day, HH:MM (24 h).", clock, required=True),
        _P("label", "string", "A label shown with the alarm.", pick(LABELS), "Label it {}."),
        _P("repeat", "string", "When it repeats.", pick(("daily", "weekdays", "weekends")), "Repeat it {}.",
           enum=("daily", "weekdays", "weekends", "never"), default="never"),
    ), ("Wake me up at {time}.", "Set an alarm for {time}."), split="test"),
    Family(("calculate_loan_payment", "finance.loan_payment", "monthly_installment"), "Monthly payment of a loan.", (
        _P("principal", "float", "Amount borrowed.", floats(1000, 90000), required=True),
        _P("annual_rate", "float", "Yearly interest rate in percent.", floats(1, 12), required=True),
        _P("years", "integer", "Length of the loan in years.", ints(1, 30), required=True),
    ), ("What's the monthly payment on {principal} borrowed at {annual_rate} percent for {years} years?",
        "Loan of {principal} at {annual_rate}% over {years} years: monthly payment?"), split="test"),
    Family(("search_books", "library.find_books", "lookup_books"), "Search a library catalogue.", (
        _P("author", "string", "Author name.", pick(PEOPLE), required=True),
        _P("topic", "string", "Subject of the book.", pick(TOPICS), "About {}."),
        flag("available_only", "Only books on the shelf.", "Only ones I can borrow now.", "Include books on loan."),
        _P("max_results", "integer", "How many results.", ints(2, 20), "Show {} at most.", default=10),
    ), ("Find books by {author}.", "Which books by {author} does the library have?"), split="test"),
    Family(("request_ride", "rides.request", "order_taxi"), "Order a ride.", (
        _P("pickup", "string", "Pickup place.", pick(STREETS), required=True),
        _P("dropoff", "string", "Destination.", pick(STREETS), required=True),
        _P("ride_type", "string", "Kind of car.", pick(("standard", "xl", "premium")), "Make it a {} ride.",
           enum=("standard", "xl", "premium")),
        _P("passenger", "dict", "Who rides.", lambda rng: None, "The passenger is {}.", props=(
            _P("name", "string", "Full name.", pick(PEOPLE)), _P("seats", "integer", "Seats needed.", ints(1, 4)))),
    ), ("Get me a ride from {pickup} to {dropoff}.", "I need a car from {pickup} to {dropoff}."), split="test"),
)


# -- generation ---------------------------------------------------------------------------------------
def _draw(p: Param, rng: Rng) -> Any:
    return {q.name: _draw(q, rng) for q in p.props} if p.type == "dict" else p.draw(rng)


def _say_value(p: Param, value: Any) -> str:
    if p.type == "dict":
        return " and ".join(f"{q.name.replace('_', ' ')} {value[q.name]}" for q in p.props)
    if p.type == "array":
        return ", ".join(value[:-1]) + f" and {value[-1]}" if len(value) > 1 else str(value[0])
    return str(value)


def _acceptable(p: Param, value: Any) -> list[Any]:
    """BFCL ground truth for one given value (dicts: each key with its list of acceptable values)."""
    if p.type == "dict":
        return [{q.name: [value[q.name]] for q in p.props}]
    return [value]


def function_doc(family: Family, name: str) -> dict[str, Any]:
    """The BFCL function document of ``family`` under one of its names."""
    return {"name": name, "description": family.description,
            "parameters": {"type": "dict", "properties": {p.name: p.schema() for p in family.params},
                           "required": [p.name for p in family.params if p.required]}}


def _call(family: Family, name: str, rng: Rng) -> tuple[str, dict[str, list[Any]]]:
    """One request sentence(s) and its ground-truth call."""
    for _ in range(20):  # distinct required strings: no flight from Oslo to Oslo, no USD to USD
        values = {p.name: _draw(p, rng) for p in family.params if p.required}
        texts = [v for v in values.values() if isinstance(v, str)]
        if len(set(texts)) == len(texts):
            break
    lead = family.leads[int(rng.integers(len(family.leads)))]
    text = lead.format(**{k: _say_value(next(p for p in family.params if p.name == k), v) for k, v in values.items()})
    truth: dict[str, list[Any]] = {k: _acceptable(next(p for p in family.params if p.name == k), v)
                                   for k, v in values.items()}
    for p in family.params:
        if p.required:
            continue
        if rng.random() < 0.5:  # the request sets this optional argument
            value = _draw(p, rng)
            if p.type == "boolean" and not value:
                text += " " + p.say_false
            else:
                text += " " + p.say.format(_say_value(p, value))
            truth[p.name] = _acceptable(p, value)
        else:  # not mentioned: leave it out (or pass its documented default)
            truth[p.name] = ["", p.default] if p.default is not None else [""]
            if p.type == "boolean":
                truth[p.name] = ["", False]
    return text, {name: truth}


def generate_record(level: str, split: str, seed: int, index: int) -> BFCLRecord:
    """Task ``index`` of a (level, split, seed) stream: deterministic, independent of other tasks."""
    rng = np.random.default_rng([seed, LEVELS.index(level), ("train", "test").index(split), index])
    if level == "mixed":
        level = LEVELS[int(rng.integers(4))]
    pool = [f for f in FAMILIES if f.split == split]
    n_functions = 1 if level in ("simple", "parallel") else int(rng.integers(2, min(4, len(pool)) + 1))
    families = [pool[int(i)] for i in rng.choice(len(pool), size=n_functions, replace=False)]
    names = [f.names[int(rng.integers(3))] for f in families]
    if level in ("simple", "multiple"):
        targets = [0]
    elif level == "parallel":
        targets = [0] * int(rng.integers(2, 4))
    else:
        targets = [int(i) for i in rng.choice(n_functions, size=min(n_functions, int(rng.integers(2, 4))), replace=False)]
    sentences: list[str] = []
    truth: list[dict[str, dict[str, list[Any]]]] = []
    for t in targets:
        for _ in range(20):  # parallel calls must differ from each other
            text, call = _call(families[t], names[t], rng)
            if call not in truth:
                break
        sentences.append(text)
        truth.append(call)
    request = sentences[0] if len(sentences) == 1 else \
        "Please do all of these: " + " ".join(f"({i + 1}) {s}" for i, s in enumerate(sentences))
    return BFCLRecord(id=f"synthetic-calls-{split}-{level}-{seed}-{index}", messages=({"role": "user", "content": request},),
                      functions=tuple(function_doc(f, n) for f, n in zip(families, names)), ground_truth=tuple(truth))


class SyntheticCallsEnv(BFCLFormatEnv):
    """``make("tools/synthetic-calls-v0", level="simple", split="train", seed=0, num_tasks=1000)``.

    The BFCL-format environment over generated records (module docstring): same prompt, parser,
    checker, feedback and ``gold_reply``.
    """

    def __init__(self, level: Level = "simple", split: Split = "train", seed: int = 0, num_tasks: int = 1000,
                 tool_prompt: Literal["text", "native"] = "text"):
        TaskEnv.__init__(self)
        if level not in LEVELS:
            raise ConfigError(f"tools/synthetic-calls-v0: level must be one of {', '.join(LEVELS)}, got {level!r}.")
        if split not in ("train", "test"):
            raise ConfigError(f"tools/synthetic-calls-v0: split must be 'train' or 'test' (held-out functions), got {split!r}.")
        if num_tasks < 1:
            raise ConfigError(f"tools/synthetic-calls-v0: num_tasks must be >= 1, got {num_tasks}.")
        if tool_prompt not in ("text", "native"):
            raise ConfigError(f"tools/synthetic-calls-v0: tool_prompt must be 'text' or 'native', got {tool_prompt!r}.")
        self.level, self.split, self.seed, self.tool_prompt = level, split, seed, tool_prompt
        self.records = [generate_record(level, split, seed, i) for i in range(num_tasks)]


__all__ = ["FAMILIES", "LEVELS", "Family", "Param", "SyntheticCallsEnv", "function_doc", "generate_record"]
