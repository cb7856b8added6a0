"""The travel environments: sole-planning, tool-use (scripted end to end) and the synthetic generator."""

from __future__ import annotations

import json

import pytest

import agentloop
from agentloop import Job, check_env, rollout
from agentloop.environments.travel.data import load_train
from agentloop.environments.travel.evaluator import COMMONSENSE, evaluate_plan
from agentloop.environments.travel.plan import plan_to_json, plan_to_text
from agentloop.environments.travel.query import parse_query
from agentloop.environments.travel.sole import faft_text
from agentloop.environments.travel.synthetic import generate_example
from agentloop.policies.scripted import ScriptedPolicy

TRAVEL_IDS = ["travel/sole-planning-v0", "travel/tool-use-v0", "travel/synthetic-v0"]


@pytest.mark.parametrize("env_id", TRAVEL_IDS)
def test_registered_and_conformant(env_id):
    assert env_id in agentloop.list_envs()
    check_env(agentloop.make(env_id))


@pytest.mark.parametrize("level", ["easy", "medium", "hard"])
def test_synthetic_levels_conformant(level):
    check_env(agentloop.make("travel/synthetic-v0", level=level, seed=3))


# -- sole planning ----------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["json", "text"])
def test_sole_planning_gold_plan_succeeds(fmt):
    env = agentloop.make("travel/sole-planning-v0")
    obs, info = env.reset(options={"index": 5})
    assert obs[0].role == "system" and "Query:" in obs[-1].content and info["task_id"] == "train-5"
    gold = load_train()[5].gold
    _, reward, terminated, _, info = env.step(plan_to_json(gold) if fmt == "json" else plan_to_text(gold))
    assert terminated and info["success"] and reward == 1.0
    assert [ln.split(":")[0] for ln in info["feedback"].splitlines()] == list(COMMONSENSE)


def test_sole_planning_paper_prompt_and_fraction_reward():
    env = agentloop.make("travel/sole-planning-v0", prompt_format="paper", reward="fraction", feedback_checks="all")
    obs, _ = env.reset(options={"index": 0})
    assert obs[1].content.startswith("Given Information:[")
    broken = load_train()[0].gold[:1]  # one day of three: incomplete, so hard checks are gated
    _, reward, _, _, info = env.step(plan_to_json(broken))
    assert not info["success"] and 0.0 < reward < 1.0 and "is_not_absent" in info["failed_checks"]
    assert "valid_cost: fail" in info["feedback"]


def test_sole_planning_days_subset():
    env = agentloop.make("travel/sole-planning-v0", days=[3], max_per_section=3)
    assert env.num_tasks() == 15
    levels = [env.get_task(i).metadata["level"] for i in range(15)]
    assert all(env.get_task(i).metadata["days"] == 3 for i in range(15))
    assert sorted(set(levels)) == ["easy", "hard", "medium"] and levels.count("easy") == 5
    obs, _ = env.reset(options={"index": 14})  # the gold plan of the subset's own example still passes
    _, _, _, _, info = env.step(plan_to_json(env.example(14).gold))
    assert info["delivered"]
    with pytest.raises(agentloop.ConfigError, match="3, 5 or 7"):
        agentloop.make("travel/sole-planning-v0", days=[4])
    with pytest.raises(agentloop.ConfigError, match="compact"):
        agentloop.make("travel/sole-planning-v0", days=[3], prompt_format="paper")


def test_unparseable_plan_gives_parse_error_feedback():
    env = agentloop.make("travel/sole-planning-v0")
    env.reset(options={"index": 0})
    _, reward, _, _, info = env.step("Sorry, I can't.")
    assert reward == 0.0 and not info["success"] and not info["delivered"]
    assert info["parse_error"] and info["feedback"].startswith("plan_delivered: fail")


def test_multi_attempt_self_correction_with_faft_feedback():
    gold = load_train()[0].gold
    bad = tuple(d.model_copy(update={"lunch": "-"}) if d.days == 2 else d for d in gold)
    policy = ScriptedPolicy([plan_to_json(bad), plan_to_json(gold)])
    [ep] = rollout([Job(env="travel/sole-planning-v0", options={"index": 0},
                        make_kwargs={"max_attempts": 2, "feedback": "env"})], policy)
    assert ep.error is None and ep.attempt_success == (False, True)
    assert "is_not_absent: fail, reason:No meal in day 2 is not allowed." in ep.turns[0].feedback.text


def test_faft_text_format():
    assert faft_text("R", "Q", "F", "P") == "reference information box:R\nquery:Q\nfeedback:F\ndraft travel plan:P"


# -- tool use ---------------------------------------------------------------------------------------
def _calls(*calls):
    return "\n".join(f"<tool_call>\n{json.dumps({'name': n, 'arguments': a})}\n</tool_call>" for n, a in calls)


def test_tool_use_scripted_episode_end_to_end_with_gold_plan():
    ex = load_train()[0]  # St. Petersburg -> Rockford, flights both ways
    q = ex.query
    gather = _calls(("FlightSearch", {"origin": q.org, "destination": q.dest, "date": q.date[0]}),
                    ("NotebookWrite", {"description": "Flights out"}),
                    ("FlightSearch", {"origin": q.dest, "destination": q.org, "date": q.date[-1]}),
                    ("DistanceMatrix", {"origin": q.org, "destination": q.dest, "mode": "taxi"}),
                    ("RestaurantSearch", {"city": q.dest}), ("AttractionSearch", {"city": q.dest}),
                    ("AccommodationSearch", {"city": q.dest}),
                    ("NotebookWrite", {"description": "Accommodations in Rockford"}))
    policy = ScriptedPolicy([gather, plan_to_json(ex.gold)])
    [ep] = rollout([Job(env="travel/tool-use-v0", options={"index": 0})], policy)
    assert ep.error is None and ep.success and len(ep.turns) == 2
    tool_msgs = [m for m in ep.messages if m.role == "tool"]
    assert [m.name for m in tool_msgs] == ["FlightSearch", "NotebookWrite", "FlightSearch", "DistanceMatrix",
                                           "RestaurantSearch", "AttractionSearch", "AccommodationSearch",
                                           "NotebookWrite"]
    assert all(m.tool_call_id for m in tool_msgs)
    assert "F3573659" in tool_msgs[0].content and "F3573120" in tool_msgs[2].content
    assert "no valid information" in tool_msgs[3].content  # there is no taxi for this leg
    assert "Coco Bambu, Rockford" in tool_msgs[4].content and "minimum nights" in tool_msgs[6].content
    final = ep.turns[-1].info
    assert final["all_tool_events"] == [] and [n["Short Description"] for n in final["notebook"]] == [
        "Flights out", "Accommodations in Rockford"]
    assert "F3573659" in final["notebook"][0]["Content"]
    assert ep.turns[0].observation[0].role == "system" and "<tools>" in ep.turns[0].observation[0].content


def test_tool_use_city_search_and_bad_calls_are_recorded_not_raised():
    env = agentloop.make("travel/tool-use-v0")
    obs, info = env.reset(options={"index": 10})  # Houston -> 3 cities in Utah
    assert {t["function"]["name"] for t in info["tools"]} == {
        "CitySearch", "FlightSearch", "DistanceMatrix", "RestaurantSearch", "AttractionSearch",
        "AccommodationSearch", "NotebookWrite"}
    obs, reward, term, trunc, info = env.step(_calls(("CitySearch", {"state": "Utah"}), ("NotebookWrite", {}),
                                                     ("Planner", {"query": "x"})))
    assert not term and not trunc and reward == 0.0
    tool = [m for m in obs if m.role == "tool"]
    assert "Salt Lake City" in tool[0].content and "Moab" in tool[0].content
    assert [e["kind"] for e in info["tool_events"]] == ["invalid_arguments", "unknown_tool"]
    obs, _, _, _, info = env.step(_calls(("NotebookWrite", {"description": "cities"})))
    assert "index is 0" in obs[-1].content
    ex = load_train()[10]
    _, _, term, _, info = env.step(plan_to_text(ex.gold))
    assert term and info["success"] and info["notebook"][0]["Content"].startswith("Salt Lake City")


def test_tool_use_turn_limit_truncates():
    env = agentloop.make("travel/tool-use-v0", max_replies=2)
    env.reset(options={"index": 0})
    call = _calls(("AttractionSearch", {"city": "Rockford"}))
    assert env.step(call)[3] is False
    _, reward, term, trunc, info = env.step(call)
    assert trunc and not term and reward == 0.0 and info["success"] is False and info["feedback"]


# -- synthetic --------------------------------------------------------------------------------------
@pytest.mark.parametrize("level", ["easy", "medium", "hard"])
def test_synthetic_gold_passes_and_query_parses_back(level):
    for seed in range(25):
        ex = generate_example(level, seed)
        ev = evaluate_plan(ex.query, ex.gold, ex.reference)
        assert ev.final_pass, (ex.id, ev.failed())
        assert parse_query(ex.query.query) == ex.query
        assert ex.query.local_constraint.count() == {"easy": 0, "medium": 1, "hard": 3}[level]
        assert (ex.query.people_number == 1) == (level == "easy")


def test_synthetic_is_seeded_and_varied():
    assert generate_example("hard", 7) == generate_example("hard", 7)
    queries = {generate_example("medium", s).query.query for s in range(20)}
    assert len(queries) == 20
    assert {generate_example("easy", s).query.days for s in range(20)} == {3, 5, 7}


def test_synthetic_env_scores_its_gold_plan():
    env = agentloop.make("travel/synthetic-v0", level="hard", seed=1, num_tasks=5)
    obs, info = env.reset(seed=0)
    idx = next(i for i in range(5) if env.unwrapped.get_task(i).id == info["task_id"])
    gold = env.unwrapped.example(idx).gold
    _, reward, _, _, info = env.step(plan_to_json(gold))
    assert reward == 1.0 and info["success"]


def test_tool_use_over_synthetic_queries():
    env = agentloop.make("travel/tool-use-v0", source="synthetic", level="hard", seed=2, num_tasks=3)
    check_env(env)
    ex = env.unwrapped.example(1)
    obs, info = env.reset(options={"index": 1})
    q = ex.query
    first_city = ex.gold[0].current_city.split(" to ")[1]
    calls = [("RestaurantSearch", {"city": first_city}), ("AccommodationSearch", {"city": first_city})]
    if q.visiting_city_number > 1:
        calls.append(("CitySearch", {"state": q.dest}))
    obs, *_ = env.step(_calls(*calls))
    tool = [m for m in obs if m.role == "tool"]
    assert first_city in tool[0].content and "maximum occupancy" in tool[1].content
    if q.visiting_city_number > 1:
        assert first_city in tool[2].content
    _, reward, term, _, info = env.step(plan_to_json(ex.gold))
    assert term and reward == 1.0 and info["success"]


def test_feedback_uptake_is_every_named_check_passing_next():
    env = agentloop.make("travel/sole-planning-v0")
    env.reset(options={"index": 0})
    gold = load_train()[0].gold
    *_, broken = env.step(plan_to_json(gold[:1]))  # one day of three
    named = [ln.split(":")[0] for ln in broken["feedback"].splitlines() if ln.split(":", 1)[1].strip().startswith("fail")]
    assert named and not broken["success"]
    env.reset(options={"index": 0})
    *_, fixed = env.step(plan_to_json(gold))
    uptake = env.unwrapped.feedback_uptake
    assert uptake(broken, "", fixed) is True and uptake(broken, "", broken) is False
    env.reset(options={"index": 0})
    *_, missing = env.step("Sorry, I can't.")
    assert uptake(missing, "", fixed) is True and uptake(missing, "", missing) is False  # deliver a plan at all
    assert uptake(fixed, "", fixed) is None  # nothing failed: nothing asked
