"""TravelPlanner micro rates in evaluation reports: per-episode check counts sum to the evaluator's metrics."""

from __future__ import annotations

import pytest
from agentloop.environments.travel.data import load_train
from agentloop.environments.travel.evaluator import (
    applicable_hard,
    evaluate_plan,
    metrics,
)
from agentloop.environments.travel.plan import plan_to_json
from agentloop.policies.scripted import ScriptedPolicy

import agentloop
from agentloop.evaluation.evaluate import EvalConfig, evaluate

COUNTS = ("commonsense_passed", "commonsense_total", "hard_passed", "hard_total")


def _plan_for(index: int, gold) -> str:
    """A mix of outcomes so no rate is trivially 0 or 1: gold, undelivered, incomplete, one meal dropped."""
    if index % 4 == 0:
        return plan_to_json(gold)
    if index % 4 == 1:
        return "I cannot make a plan for this trip."
    if index % 4 == 2:
        return plan_to_json(gold[:1])  # one day only: incomplete, so the hard checks are gated (failed)
    return plan_to_json(tuple(d.model_copy(update={"lunch": "-"}) if d.days == 2 else d for d in gold))


def test_eval_micro_rates_equal_the_evaluators_six_metrics(tmp_path):
    examples = load_train()
    assert len(examples) == 45
    replies = {ex.query.query: _plan_for(i, ex.gold) for i, ex in enumerate(examples)}

    def reply(conversation) -> str:
        prompt = conversation[-1].content
        return next(plan for q, plan in replies.items() if f"Query: {q}" in prompt)

    env_id = "travel/sole-planning-v0"
    res = evaluate(EvalConfig(envs=[env_id], max_attempts=1, count_tokens=False), tmp_path / "run",
                   policy=ScriptedPolicy(reply))
    block = res.metrics["per_env"][env_id]["env_metrics"]
    want = metrics([evaluate_plan(ex.query, _plan_for(i, ex.gold), ex.reference) for i, ex in enumerate(examples)],
                   [ex.query for ex in examples])
    assert 0 < want.commonsense_micro < 1 and 0 < want.hard_micro < 1 and 0 < want.delivery_rate < 1
    assert block["commonsense_micro"]["value"] == pytest.approx(want.commonsense_micro)
    assert block["hard_micro"]["value"] == pytest.approx(want.hard_micro)
    assert block["delivered"]["value"] == pytest.approx(want.delivery_rate)
    assert block["commonsense_pass"]["value"] == pytest.approx(want.commonsense_macro)
    assert block["hard_pass"]["value"] == pytest.approx(want.hard_macro)
    assert res.metrics["per_env"][env_id]["acc_by_attempt"][0]["value"] == pytest.approx(want.final_pass_rate)
    # undelivered plans still owe their checks: the totals are 8 and the query's applicable hard checks
    undelivered = [ep.turns[-1].info for ep in res.run.episodes() if not ep.turns[-1].info["delivered"]]
    assert undelivered and all(i["commonsense_total"] == 8 and i["hard_total"] >= 1 and i["hard_passed"] == 0
                               for i in undelivered)


def test_tool_use_and_synthetic_final_info_carry_the_counts():
    ex = load_train()[10]
    env = agentloop.make("travel/tool-use-v0")
    env.reset(options={"index": 10})
    _, _, term, _, info = env.step(plan_to_json(ex.gold))
    assert term and info["success"]
    assert all(type(info[k]) is int for k in COUNTS)
    assert info["commonsense_passed"] == info["commonsense_total"] == 8 and info["hard_passed"] == info["hard_total"]

    env = agentloop.make("travel/synthetic-v0", level="hard", seed=1, num_tasks=1)
    env.reset(options={"index": 0})
    query = env.unwrapped.example(0).query
    _, _, _, _, info = env.step("no plan")
    assert not info["delivered"] and len(applicable_hard(query)) >= 2  # a hard query: budget plus constraints
    assert [info[k] for k in COUNTS] == [0, 8, 0, len(applicable_hard(query))]
