"""travel/synthetic-v0 level short (prompts under 1k tokens) and the generator's plans as warm-start SFT data."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import agentloop
from agentloop.commands.gold import check_gold, gold_conversations
from agentloop.environments.travel.evaluator import evaluate_plan
from agentloop.environments.travel.query import parse_query
from agentloop.environments.travel.synthetic import generate_example

MAX_PROMPT_TOKENS = 1000


def test_short_level_is_conformant():
    agentloop.check_env(agentloop.make("travel/synthetic-v0", level="short", seed=3, num_tasks=20))


def test_short_queries_are_easy_three_day_trips_whose_gold_plan_passes():
    for seed in range(40):
        ex = generate_example("short", seed)
        q = ex.query
        assert (q.days, q.visiting_city_number, q.people_number, q.local_constraint.count()) == (3, 1, 1, 0)
        assert parse_query(q.query) == q
        ev = evaluate_plan(q, ex.gold, ex.reference)
        assert ev.final_pass, (ex.id, ev.failed())
    assert generate_example("short", 5) == generate_example("short", 5) != generate_example("short", 6)


def test_short_prompts_fit_in_1k_tokens_of_the_default_tokenizer(tokenizer):
    lengths = []
    for seed in (0, 1):
        env = agentloop.make("travel/synthetic-v0", level="short", seed=seed, num_tasks=300).unwrapped
        for i in range(env.num_tasks()):
            msgs = [m.model_dump(include={"role", "content"}) for m in env.get_task(i).messages]
            text = tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
            lengths.append(len(tokenizer(text)["input_ids"]))
    assert max(lengths) <= MAX_PROMPT_TOKENS, max(lengths)
    long_env = agentloop.make("travel/synthetic-v0", level="easy", num_tasks=5).unwrapped
    msgs = [m.model_dump(include={"role", "content"}) for m in long_env.get_task(0).messages]
    # the point of the level: the other levels do not fit
    assert len(tokenizer(tokenizer.apply_chat_template(msgs, tokenize=False))["input_ids"]) > MAX_PROMPT_TOKENS


@pytest.mark.parametrize("level", ["short", "easy", "hard"])
def test_gold_replies_pass_the_travelplanner_evaluator(level):
    env = agentloop.make("travel/synthetic-v0", level=level, num_tasks=15)
    results = check_gold(env)
    assert len(results) == 15 and all(r.passed and r.has_gold for r in results), [r.reason for r in results]


def test_warm_start_rows_are_feasible_plans_in_the_parsed_format():
    env = agentloop.make("travel/synthetic-v0", level="short", seed=2, num_tasks=10)
    rows = gold_conversations(env)
    assert len(rows) == 10
    for i, row in enumerate(rows):
        assert [m["role"] for m in row] == ["system", "user", "assistant"]
        env.reset(options={"index": i})
        _, reward, _, _, info = env.step(row[-1]["content"])
        assert info["success"] and reward == 1.0 and info["delivered"]


def test_export_gold_writes_the_warm_start_file(tmp_path):
    from agentloop.cli import app

    out = tmp_path / "warm.jsonl"
    result = CliRunner().invoke(app, ["envs", "export-gold", "travel/synthetic-v0", str(out), "level=short",
                                      "num_tasks=50", "--limit", "4"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 4 and json.loads(rows[0]["messages"][-1]["content"])[0]["days"] == 1
