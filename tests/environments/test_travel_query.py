"""The query parser on every one of the 45 TravelPlanner training queries.

EXPECTED was written by reading each query text (tests/environments/test_travel_query.py is the
only place these values live). The fields the shipped data can confirm are also checked against it:
days (gold plan length), visiting city count (destination cities in the reference information),
origin and dates (the first and last flight descriptions "Flight from A to B on DATE"), and the
destination city (1-city trips) or state (the "City(State)" spellings of the gold plans).
"""

from __future__ import annotations

import datetime as dt
import re

import pytest

from agentloop.environments.travel.data import load_train, raw_train_rows
from agentloop.environments.travel.query import QueryParseError, parse_query
from agentloop.environments.travel.reference import city_key

# org, dest, days, cities, start date, people, budget, house rule, cuisines, room type, transportation
EXPECTED = [
    ('St. Petersburg', 'Rockford', 3, 1, '2022-03-16', 1, 1700, None, (), None, None),
    ('Kansas City', 'Pensacola', 3, 1, '2022-03-27', 1, 900, None, (), None, None),
    ('Las Vegas', 'Stockton', 3, 1, '2022-03-03', 1, 1400, None, (), None, None),
    ('New Orleans', 'Louisville', 3, 1, '2022-03-12', 1, 1900, None, (), None, None),
    ('Las Vegas', 'Denver', 3, 1, '2022-03-12', 1, 1600, None, (), None, None),
    ('Orlando', 'Texas', 5, 2, '2022-03-10', 1, 3100, None, (), None, None),
    ('Santa Ana', 'Montana', 5, 2, '2022-03-06', 1, 3600, None, (), None, None),
    ('Baton Rouge', 'Texas', 5, 2, '2022-03-01', 1, 2300, None, (), None, None),
    ('Memphis', 'Pennsylvania', 5, 2, '2022-03-22', 1, 1400, None, (), None, None),
    ('Greer', 'Pennsylvania', 5, 2, '2022-03-05', 1, 3400, None, (), None, None),
    ('Houston', 'Utah', 7, 3, '2022-03-23', 1, 7700, None, (), None, None),
    ('Oklahoma City', 'Colorado', 7, 3, '2022-03-01', 1, 3000, None, (), None, None),
    ('Gulfport', 'Texas', 7, 3, '2022-03-24', 1, 4200, None, (), None, None),
    ('Daytona Beach', 'Texas', 7, 3, '2022-03-18', 1, 3600, None, (), None, None),
    ('Punta Gorda', 'Wisconsin', 7, 3, '2022-03-16', 1, 5700, None, (), None, None),
    ('Fort Lauderdale', 'Norfolk', 3, 1, '2022-03-16', 2, 2300, None, ('American', 'French'), None, None),
    ('Sacramento', 'Atlanta', 3, 1, '2022-03-14', 2, 4700, 'parties', (), None, None),
    ('Asheville', 'Baltimore', 3, 1, '2022-03-20', 8, 6500, 'children under 10', (), None, None),
    ('Washington', 'Orlando', 3, 1, '2022-03-15', 2, 2000, None, (), 'private room', None),
    ('Fort Lauderdale', 'Milwaukee', 3, 1, '2022-03-08', 2, 1100, None, ('American', 'Chinese'), None, None),
    ('Nashville', 'Pennsylvania', 5, 2, '2022-03-12', 6, 15100, None, (), 'entire room', None),
    ('New York', 'Louisiana', 5, 2, '2022-03-15', 4, 12300, 'smoking', (), None, None),
    ('San Jose', 'Idaho', 5, 2, '2022-03-01', 7, 13900, None, ('Indian', 'French'), None, None),
    ('Asheville', 'New York', 5, 2, '2022-03-13', 2, 4700, None, ('Mexican', 'Chinese'), None, None),
    ('Memphis', 'Minnesota', 5, 2, '2022-03-01', 4, 13800, None, (), 'private room', None),
    ('Santa Ana', 'Texas', 7, 3, '2022-03-25', 4, 5800, 'children under 10', (), None, None),
    ('Sault Ste. Marie', 'Michigan', 7, 3, '2022-03-15', 5, 12700, None, (), 'entire room', None),
    ('St. Louis', 'California', 7, 3, '2022-03-17', 2, 9500, None, ('American', 'Chinese'), None, None),
    ('Louisville', 'Michigan', 7, 3, '2022-03-08', 4, 19400, None, (), 'private room', None),
    ('Oakland', 'Oregon', 7, 3, '2022-03-12', 2, 4500, None, ('Italian', 'Mediterranean'), None, None),
    ('Houston', 'Fayetteville', 3, 1, '2022-03-20', 2, 1500, 'children under 10', ('American', 'Mediterranean', 'French', 'Chinese'), None, 'no self-driving'),
    ('Bangor', 'Washington', 3, 1, '2022-03-21', 3, 3100, 'pets', (), 'entire room', 'no self-driving'),
    ('Grand Forks', 'Minneapolis', 3, 1, '2022-03-17', 2, 1300, 'parties', (), 'entire room', 'no flight'),
    ('Provo', 'Phoenix', 3, 1, '2022-03-24', 2, 1400, 'pets', ('Indian', 'American', 'French', 'Italian'), 'private room', None),
    ('Atlanta', 'Chattanooga', 3, 1, '2022-03-07', 5, 3600, None, ('French', 'Mediterranean', 'Indian', 'Chinese'), 'entire room', 'no self-driving'),
    ('Atlanta', 'Minnesota', 5, 2, '2022-03-03', 3, 7900, 'parties', (), 'entire room', 'no self-driving'),
    ('Richmond', 'Florida', 5, 2, '2022-03-09', 7, 8500, 'visitors', ('French', 'American', 'Mediterranean', 'Italian'), 'entire room', None),
    ('Sacramento', 'Washington', 5, 2, '2022-03-22', 3, 3600, None, ('American', 'Mediterranean', 'Italian', 'French'), 'entire room', 'no flight'),
    ('Evansville', 'Texas', 5, 2, '2022-03-17', 2, 2800, 'children under 10', (), 'private room', 'no flight'),
    ('Denver', 'Texas', 5, 2, '2022-03-08', 5, 7100, 'smoking', ('American', 'French', 'Mediterranean', 'Italian'), None, 'no flight'),
    ('Indianapolis', 'Colorado', 7, 3, '2022-03-11', 5, 15100, 'pets', ('Mexican', 'Italian', 'Mediterranean', 'Indian'), 'entire room', None),
    ('Seattle', 'Texas', 7, 3, '2022-03-10', 4, 11000, 'parties', (), 'entire room', 'no self-driving'),
    ('Greensboro', 'New York', 7, 3, '2022-03-20', 2, 3800, None, ('Chinese', 'French', 'American', 'Indian'), 'entire room', 'no flight'),
    ('Moline', 'Texas', 7, 3, '2022-03-19', 2, 5500, None, ('American', 'Chinese', 'Mexican', 'French'), 'entire room', 'no flight'),
    ('Minneapolis', 'Ohio', 7, 3, '2022-03-17', 2, 5100, 'pets', ('American', 'Mediterranean', 'Chinese', 'Italian'), None, 'no flight'),
]


def test_table_covers_every_query():
    assert len(EXPECTED) == len(load_train()) == 45


@pytest.mark.parametrize("i", range(45))
def test_parse_query(i):
    ex = load_train()[i]
    org, dest, days, cities, start, people, budget, rule, cuisine, room, transport = EXPECTED[i]
    q = parse_query(ex.query.query)
    lc = q.local_constraint
    assert (q.org, q.dest, q.days, q.visiting_city_number, q.date[0], q.people_number, q.budget) == (
        org, dest, days, cities, start, people, budget)
    assert (lc.house_rule, lc.cuisine, lc.room_type, lc.transportation) == (rule, cuisine, room, transport)
    assert len(q.date) == days
    assert dt.date.fromisoformat(q.date[-1]) - dt.date.fromisoformat(q.date[0]) == dt.timedelta(days=days - 1)
    assert q.level == ("easy" if i < 15 else "medium" if i < 30 else "hard")  # the file's order


@pytest.mark.parametrize("i", range(45))
def test_parse_agrees_with_the_data(i):
    ex = load_train()[i]
    q, ref, gold = ex.query, ex.reference, ex.gold
    assert gold is not None
    assert len(gold) == q.days
    assert len(ref.cities) == q.visiting_city_number
    legs = [re.match(r"Flight from (.+) to (.+) on (\d{4}-\d\d-\d\d)$", k) for k in raw_train_rows()[0][i]]
    legs = [m for m in legs if m]
    assert city_key(legs[0].group(1)) == q.org and city_key(legs[-1].group(2)) == q.org
    assert legs[0].group(3) == q.date[0] and legs[-1].group(3) == q.date[-1]
    if q.visiting_city_number == 1:
        assert ref.cities == (q.dest,)
    states = {s for d in gold for s in re.findall(r"\(([A-Za-z ]+)\)", d.current_city)}
    assert states <= {q.dest}


@pytest.mark.parametrize("text, missing", [
    ("Plan a 3-day trip to Denver from March 1st to March 3rd, 2022 with a budget of $900.", "origin"),
    ("Plan a trip from Boston to Denver from March 1st to March 3rd, 2022.", "budget"),
    ("Plan a trip from Boston to Denver with a budget of $900.", "year"),
])
def test_unparseable_query_names_the_missing_field(text, missing):
    with pytest.raises(QueryParseError, match=missing):
        parse_query(text)
