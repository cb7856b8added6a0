"""tools/synthetic-calls-v0: generated BFCL-format tasks, checked by BFCL's rules, with env and oracle feedback."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import agentloop
from agentloop.commands.gold import gold_conversations
from agentloop.environments.tools.bfcl import first_acceptable, parse_reply
from agentloop.environments.tools.synthetic_calls import FAMILIES, LEVELS, generate_record
from agentloop.errors import ConfigError
from agentloop.wrappers import MultiAttempt

ID = "tools/synthetic-calls-v0"


def make(**kw):
    return agentloop.make(ID, **{"num_tasks": 40, **kw})


def call_text(*calls):
    return "\n".join(f"<tool_call>\n{json.dumps({'name': n, 'arguments': a})}\n</tool_call>" for n, a in calls)


def gold_calls(env, index):
    """The gold reply's calls as (name, arguments) pairs."""
    task = env.unwrapped.get_task(index)
    return [(c.name, dict(c.arguments)) for c in parse_reply(env.unwrapped.gold_reply(task)).calls]


def find(env, pred):
    """The first task index whose record satisfies ``pred``."""
    return next(i for i, r in enumerate(env.unwrapped.records) if pred(r))


def step(env, index, reply):
    env.reset(options={"index": index})
    return env.step(reply)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("split", ["train", "test"])
def test_conformant_and_every_gold_call_passes(level, split):
    env = make(level=level, split=split)
    agentloop.check_env(env)
    for i in range(env.unwrapped.num_tasks()):
        _, reward, _, _, info = step(env, i, env.unwrapped.gold_reply(env.unwrapped.get_task(i)))
        assert info["success"] and reward == 1.0, (i, info["feedback"])


def test_levels_have_their_shape():
    def shapes(level):
        recs = make(level=level, num_tasks=60).unwrapped.records
        return {(len(r.functions), len(r.ground_truth)) for r in recs}

    assert shapes("simple") == {(1, 1)}
    assert {f for f, _ in shapes("multiple")} == {2, 3, 4} and {c for _, c in shapes("multiple")} == {1}
    assert {f for f, _ in shapes("parallel")} == {1} and {c for _, c in shapes("parallel")} == {2, 3}
    pm = make(level="parallel_multiple", num_tasks=60).unwrapped.records
    assert all(len(r.ground_truth) >= 2 and len({next(iter(g)) for g in r.ground_truth}) == len(r.ground_truth) for r in pm)
    assert len(shapes("mixed")) >= 4


def test_schemas_cover_the_bfcl_types_and_nesting():
    docs = [fn for r in make(level="mixed", num_tasks=200).unwrapped.records for fn in r.functions]
    props = [p for fn in docs for p in fn["parameters"]["properties"].values()]
    assert {p["type"] for p in props} == {"string", "integer", "float", "boolean", "array", "dict"}
    assert any("enum" in p for p in props) and any("properties" in p for p in props)
    assert all(fn["parameters"]["required"] for fn in docs)
    assert any(len(fn["parameters"]["required"]) < len(fn["parameters"]["properties"]) for fn in docs)


def test_splits_share_no_function_name_argument_name_or_request_template():
    train = make(level="mixed", split="train", num_tasks=300).unwrapped.records
    test = make(level="mixed", split="test", num_tasks=300).unwrapped.records
    names = lambda recs: {fn["name"] for r in recs for fn in r.functions}  # noqa: E731
    assert names(train) and names(test) and not names(train) & names(test)
    held_out = [f for f in FAMILIES if f.split == "test"]
    assert names(test) == {n for f in held_out for n in f.names}
    leads = lambda split: {lead for f in FAMILIES if f.split == split for lead in f.leads}  # noqa: E731
    assert leads("train").isdisjoint(leads("test"))
    params = lambda split: {p.name for f in FAMILIES if f.split == split for p in f.params}  # noqa: E731
    assert len(params("test") - params("train")) >= len(params("test")) - 1  # held-out argument names too
    assert {r.messages[0]["content"] for r in train}.isdisjoint({r.messages[0]["content"] for r in test})


def test_seeded_deterministic_and_varied():
    assert generate_record("mixed", "train", 3, 17) == generate_record("mixed", "train", 3, 17)
    a = make(level="simple", seed=0).unwrapped.records
    assert a == make(level="simple", seed=0).unwrapped.records
    assert a != make(level="simple", seed=1).unwrapped.records
    assert len({r.messages[0]["content"] for r in a}) == len(a)
    # task i does not depend on how many tasks the environment holds
    assert make(level="simple", num_tasks=5).unwrapped.records == a[:5]


def test_rejects_bad_arguments_with_the_fix():
    with pytest.raises(ConfigError, match="level.*'simple', 'multiple'"):
        make(level="hard")
    with pytest.raises(ConfigError, match="split.*'train' or 'test'"):
        make(split="validation")
    with pytest.raises(ConfigError, match="num_tasks must be >= 1"):
        make(num_tasks=0)


# -- feedback: env names what is wrong, never the value; oracle shows the values --------------------------
def test_wrong_function_is_named():
    env = make(level="multiple")
    i = 0
    (name, args), = gold_calls(env, i)
    other = next(fn["name"] for fn in env.unwrapped.records[i].functions if fn["name"] != name)
    _, reward, _, _, info = step(env, i, call_text((other, args)))
    assert reward == 0.0 and not info["success"]
    assert f"The call to {other} is not needed." in info["feedback"]


def test_wrong_value_names_the_argument_not_the_value():
    env = make(level="simple")
    i = find(env, lambda r: "city" in next(iter(r.ground_truth[0].values())))
    (name, args), = gold_calls(env, i)
    right = args["city"]
    wrong = next(c for c in ("Reykjavik", "Montevideo") if c != right)
    _, _, _, _, info = step(env, i, call_text((name, {**args, "city": wrong})))
    assert not info["success"] and f"{name}: argument 'city' has an invalid value." in info["feedback"]
    assert right not in info["feedback"] and wrong not in info["feedback"]
    assert right in info["oracle_feedback"]


def test_unexpected_argument_is_named():
    env = make(level="simple")
    (name, args), = gold_calls(env, 0)
    _, _, _, _, info = step(env, 0, call_text((name, {**args, "verbose": True})))
    assert not info["success"] and f"{name}: argument 'verbose' is not expected." in info["feedback"]


def test_missing_required_argument_is_named():
    env = make(level="simple")
    (name, args), = gold_calls(env, 0)
    required = env.unwrapped.records[0].functions[0]["parameters"]["required"][0]
    _, _, _, _, info = step(env, 0, call_text((name, {k: v for k, v in args.items() if k != required})))
    assert not info["success"] and f"{name}: missing required argument '{required}'." in info["feedback"]


def test_wrong_type_is_named():
    env = make(level="simple")
    i = find(env, lambda r: any(p["type"] == "integer" and k in next(iter(r.ground_truth[0].values()))
                                and next(iter(r.ground_truth[0].values()))[k][0] != ""
                                for k, p in r.functions[0]["parameters"]["properties"].items()))
    (name, args), = gold_calls(env, i)
    arg = next(k for k, p in env.unwrapped.records[i].functions[0]["parameters"]["properties"].items()
               if p["type"] == "integer" and k in args)
    _, _, _, _, info = step(env, i, call_text((name, {**args, arg: str(args[arg])})))
    assert f"{name}: argument '{arg}' should be of type integer, got str." in info["feedback"]


def test_nested_object_value_is_checked_key_by_key():
    env = make(level="simple", num_tasks=200)
    i = find(env, lambda r: "guest" in next(iter(r.ground_truth[0].values())))
    (name, args), = gold_calls(env, i)
    assert set(args["guest"]) == {"name", "age"}
    assert step(env, i, call_text((name, args)))[4]["success"]
    info = step(env, i, call_text((name, {**args, "guest": {**args["guest"], "age": args["guest"]["age"] + 1}})))[4]
    assert not info["success"] and f"{name}: argument 'guest' has an invalid value." in info["feedback"]


def test_extra_and_missing_parallel_calls_fail_with_the_count():
    env = make(level="parallel")
    calls = gold_calls(env, 0)
    _, reward, _, _, info = step(env, 0, call_text(*calls, calls[0]))
    assert not info["success"] and reward < 1.0
    assert f"Expected {len(calls)} function call(s), got {len(calls) + 1}." in info["feedback"]
    assert f"The call to {calls[0][0]} is not needed." in info["feedback"]
    _, reward, _, _, info = step(env, 0, call_text(*calls[:-1]))
    assert not info["success"] and reward == pytest.approx((len(calls) - 1) / len(calls))
    # parallel calls match in any order
    assert step(env, 0, call_text(*reversed(calls)))[4]["success"]


def test_optional_argument_not_requested_must_be_left_out_or_default():
    env = make(level="simple", num_tasks=200)
    i = find(env, lambda r: any(v == [""] for v in next(iter(r.ground_truth[0].values())).values()))
    (name, args), = gold_calls(env, i)
    arg = next(k for k, v in next(iter(env.unwrapped.records[i].ground_truth[0].values())).items() if v == [""])
    prop = env.unwrapped.records[i].functions[0]["parameters"]["properties"][arg]
    value = {"string": "x", "integer": 3, "float": 1.5, "array": ["x"], "dict": {"a": 1}}[prop["type"]]
    info = step(env, i, call_text((name, {**args, arg: value})))[4]
    assert not info["success"] and f"argument '{arg}'" in info["feedback"]


def test_multi_attempt_env_and_oracle_modes_carry_the_feedback():
    base = make(level="simple")
    (name, args), = gold_calls(base, 0)
    wrong = call_text((name, {k: v for k, v in args.items() if k not in base.unwrapped.records[0].functions[0]
                               ["parameters"]["required"][:1]}))
    for mode, shows_values in (("env", False), ("oracle", True)):
        env = MultiAttempt(make(level="simple"), max_attempts=2, feedback=mode)
        env.reset(options={"index": 0})
        obs, _, term, _, _ = env.step(wrong)
        assert not term
        text = obs[-1].content
        assert "missing required argument" in text
        assert ("Acceptable calls" in text) is shows_values


def test_gold_conversations_are_sft_rows_the_env_accepts():
    env = make(level="mixed", num_tasks=12)
    rows = gold_conversations(env)
    assert len(rows) == 12
    for i, row in enumerate(rows):
        assert [m["role"] for m in row] == ["system", "user", "assistant"]
        assert row[:-1] == [m.model_dump(mode="json", include={"role", "content"})
                            for m in env.unwrapped.get_task(i).messages]
        assert step(env, i, row[-1]["content"])[4]["success"]


def test_export_gold_command_writes_jsonl(tmp_path):
    from agentloop.cli import app

    out = tmp_path / "gold.jsonl"
    result = CliRunner().invoke(app, ["envs", "export-gold", ID, str(out), "level=parallel", "num_tasks=7"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 7 and all(r["messages"][-1]["role"] == "assistant" for r in rows)


def test_first_acceptable_unwraps_dict_options():
    assert first_acceptable({"name": ["Ann", "Anne"], "age": [30], "nick": ["", "A"]}) == {"name": "Ann", "age": 30}
    assert first_acceptable([{"x": [1]}, {"x": [2, 3]}]) == [{"x": 1}, {"x": 2}]
    assert first_acceptable(["a", "b"]) == ["a", "b"]


def test_native_tool_prompt_hands_the_schemas_to_the_policy():
    from agentloop.rollout import RENDER_TOOLS_KEY

    env = make(level="multiple", tool_prompt="native")
    agentloop.check_env(env)
    obs, info = env.reset(options={"index": 0})
    assert [m.role for m in obs] == ["user"]
    names = [t["function"]["name"] for t in info[RENDER_TOOLS_KEY]]
    assert names == [fn["name"] for fn in env.unwrapped.records[0].functions]
    assert info[RENDER_TOOLS_KEY][0]["function"]["parameters"]["type"] == "object"


# -- feedback uptake: did the next call do what the feedback named? ------------------------------------------------
def test_feedback_uptake_checks_each_named_argument():
    env = make(level="simple")
    i = find(env, lambda r: "city" in next(iter(r.ground_truth[0].values())))
    (name, args), = gold_calls(env, i)
    wrong = next(c for c in ("Reykjavik", "Montevideo") if c != args["city"])
    first = step(env, i, call_text((name, {**args, "city": wrong, "verbose": True})))[-1]
    uptake = env.unwrapped.feedback_uptake

    def after(reply: str) -> bool | None:
        return uptake(first, reply, step(env, i, reply)[-1])

    assert after(call_text((name, args))) is True                                   # both lines followed
    assert after(call_text((name, {**args, "city": wrong}))) is False               # verbose dropped, city kept
    assert after(call_text((name, {**args, "city": "Lima", "verbose": True}))) is False  # city changed, verbose kept
    assert after("No call.") is False
    assert uptake({"feedback": "All calls are correct.", "calls": []}, "", {"calls": []}) is None
    missing = env.unwrapped.records[0].functions[0]["parameters"]["required"][0]
    (name0, args0), = gold_calls(env, 0)
    gap = step(env, 0, call_text((name0, {k: v for k, v in args0.items() if k != missing})))[-1]
    assert uptake(gap, "", step(env, 0, call_text((name0, args0)))[-1]) is True    # the missing argument passed
