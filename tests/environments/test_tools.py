"""Tool machinery (schemas, parsing, validation, ToolEnv) and the built-in tool tasks."""

from __future__ import annotations

import json
import re

import pytest
from langchain_core.tools import tool

import agentloop
from agentloop import Job, check_env, rollout
from agentloop.env import Task, Verdict
from agentloop.environments.tools import ToolEnv, Toolbox, as_tool, parse_tool_calls, tool_schema
from agentloop.environments.tools.calc import calculator
from agentloop.environments.tools.function_calling import FunctionCallingEnv, load_tasks
from agentloop.errors import ConfigError
from agentloop.policies.scripted import ScriptedPolicy
from agentloop.types import ToolCall, user


def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: The first.
        b: The second.
    """
    return a + b


def explode(reason: str) -> str:
    """Always fails.

    Args:
        reason: Why.
    """
    raise RuntimeError(f"boom: {reason}")


@tool
def shout(text: str) -> str:
    """Upper-case a text."""
    return text.upper()


def _call(name, **args):
    return f"<tool_call>\n{json.dumps({'name': name, 'arguments': args})}\n</tool_call>"


# -- schemas ----------------------------------------------------------------------------------------
def test_function_and_langchain_tool_schemas():
    s = tool_schema(as_tool(add))["function"]
    assert s["name"] == "add" and s["description"] == "Add two integers."
    assert s["parameters"]["properties"]["a"] == {"type": "integer", "description": "The first."}
    assert s["parameters"]["required"] == ["a", "b"]
    assert tool_schema(as_tool(shout))["function"]["name"] == "shout"
    with pytest.raises(ConfigError, match="docstring"):
        as_tool(lambda x: x)


# -- parsing ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, names", [
    (_call("add", a=1, b=2), ["add"]),
    (_call("add", a=1, b=2) + "\nthen\n" + _call("shout", text="hi"), ["add", "shout"]),
    ('<tool_call>{"name": "add", "arguments": {"a": 1, "b": 2}}', ["add"]),  # cut by a stop string
    ('{"name": "add", "arguments": {"a": 1, "b": 2}}', ["add"]),
    ('```json\n{"name": "add", "parameters": {"a": 1, "b": 2}}\n```', ["add"]),
    ('[{"name": "add", "arguments": {}}, {"name": "shout", "arguments": {}}]', ["add", "shout"]),
    ('{"tool_calls": [{"id": "c1", "type": "function", "function": {"name": "add", "arguments": "{\\"a\\": 1}"}}]}',
     ["add"]),
    ("The answer is 3.", []),
    ('[{"days": 1, "current_city": "A"}]', []),  # a JSON plan is a final answer, not a call
])
def test_parse_tool_calls(text, names):
    parsed = parse_tool_calls(text)
    assert [c.name for c in parsed.calls] == names and parsed.errors == ()


@pytest.mark.parametrize("text", ["<tool_call>{not json}</tool_call>", '<tool_call>{"arguments": {}}</tool_call>',
                                  '<tool_call>{"name": "add", "arguments": [1, 2]}</tool_call>',
                                  '<tool_call>{"name": "add", "arguments": "{oops"}</tool_call>'])
def test_malformed_calls_are_errors_not_exceptions(text):
    parsed = parse_tool_calls(text)
    assert parsed.calls == () and len(parsed.errors) == 1 and parsed.any


def test_toolbox_validation_and_failures():
    box = Toolbox([add, explode, shout])
    ok = box.call(ToolCall(id="1", name="add", arguments={"a": 2, "b": 3}))
    assert ok.ok and ok.content == "5"
    cases = {
        "unknown_tool": ToolCall(id="2", name="mul", arguments={}),
        "invalid_arguments": ToolCall(id="3", name="add", arguments={"a": "2", "b": 3}),
    }
    for kind, call in cases.items():
        out = box.call(call)
        assert not out.ok and out.kind == kind and out.content.startswith("Error:")
    assert "missing required" in box.call(ToolCall(id="4", name="add", arguments={"a": 1})).content
    assert "unknown argument" in box.call(ToolCall(id="5", name="add", arguments={"a": 1, "b": 2, "c": 3})).content
    boom = box.call(ToolCall(id="6", name="explode", arguments={"reason": "x"}))
    assert boom.kind == "tool_error" and "RuntimeError: boom: x" in boom.content
    with pytest.raises(ConfigError, match="unique"):
        Toolbox([add, add])


# -- ToolEnv ----------------------------------------------------------------------------------------
class AddEnv(ToolEnv):
    """Two tasks: 'add these numbers' answered after using the tools."""

    def num_tasks(self):
        return 2

    def get_task(self, i):
        a, b = (3, 4) if i == 0 else (10, 32)
        return Task(id=f"add-{i}", messages=(user(f"What is {a} + {b}? Use the add tool."),), answer=a + b)

    def tools_for(self, task):
        return [add, explode, shout]

    def verify(self, task, action):
        ok = action.strip().endswith(str(task.answer))
        return Verdict(reward=float(ok), success=ok, feedback="Correct." if ok else "Wrong sum.")


def test_tool_env_conformance():
    check_env(AddEnv())


def test_tool_env_bad_calls_become_messages_and_events():
    def script(conv):
        tool_results = [m for m in conv if m.role == "tool"]
        if not tool_results:  # every kind of bad call in one reply
            return "\n".join([_call("mul", a=1), "<tool_call>{broken</tool_call>", _call("add", a="3", b=4),
                              _call("explode", reason="test")])
        if len(tool_results) == 4:
            a, b = map(int, re.findall(r"\d+", conv[1].content)[:2])
            return _call("add", a=a, b=b)
        return f"The sum is {tool_results[-1].content}"

    [ep] = rollout([Job(env=AddEnv(), options={"index": 1})], ScriptedPolicy(script))
    assert ep.error is None and ep.success and len(ep.turns) == 3
    first = ep.turns[0].info
    assert [e["kind"] for e in first["tool_events"]] == ["unknown_tool", "invalid_arguments", "tool_error",
                                                         "malformed_call"]
    tool_msgs = [m for m in ep.messages if m.role == "tool"]
    assert len(tool_msgs) == 5 and all(m.tool_call_id and m.name for m in tool_msgs)
    assert [m.content.startswith("Error:") for m in tool_msgs] == [True] * 4 + [False]
    assert tool_msgs[-1].content == "42"
    calls_msg = next(m for m in ep.messages if m.role == "assistant" and m.tool_calls)
    assert [c.name for c in calls_msg.tool_calls] == ["mul", "add", "explode"]
    assert len(ep.turns[-1].info["all_tool_events"]) == 4


def test_tool_env_schemas_in_system_message_and_info():
    env = AddEnv()
    obs, info = env.reset(options={"index": 0})
    assert obs[0].role == "system" and "<tools>" in obs[0].content and "<tool_call>" in obs[0].content
    assert [t["function"]["name"] for t in info["tools"]] == ["add", "explode", "shout"]
    assert json.loads(obs[0].content.split("<tools>\n")[1].splitlines()[0]) == info["tools"][0]


# -- function calling -------------------------------------------------------------------------------
def _reply(calls):
    return "\n".join(_call(c["name"], **c["arguments"]) for c in calls)


def test_function_calling_builtin_set_accepts_its_expected_calls():
    env = FunctionCallingEnv()
    assert env.num_tasks() == 14
    for i in range(env.num_tasks()):
        task = env.get_task(i)
        expected = [{"name": c["name"], "arguments": {k: ("The heater in the living room stopped working."
                                                          if isinstance(v, dict) else v)
                                                      for k, v in c["arguments"].items()}} for c in task.answer]
        reply = _reply(expected) if expected else "Paris."
        verdict = env.verify(task, reply)
        assert verdict.success and verdict.reward == 1.0, (task.id, verdict.feedback)


def _task(env, task_id):
    return next(env.get_task(i) for i in range(env.num_tasks()) if env.get_task(i).id == task_id)


def test_function_calling_judges_names_arguments_types_and_values():
    env = FunctionCallingEnv()
    t = _task(env, "book-table-4")
    wrong_value = env.verify(t, _call("book_table", restaurant="Luigi's", people=5, time="19:30"))
    assert not wrong_value.success and "argument 'people' has the wrong value" in wrong_value.feedback
    assert "5" not in wrong_value.feedback.replace("book_table", "") and "4" in wrong_value.oracle_feedback
    wrong_type = env.verify(t, _call("book_table", restaurant="Luigi's", people="4", time="19:30"))
    assert not wrong_type.success and "is not of type 'integer'" in wrong_type.feedback
    missing = env.verify(t, _call("book_table", restaurant="Luigi's", time="19:30"))
    assert not missing.success and "'people' is a required property" in missing.feedback
    extra = env.verify(t, _call("book_table", restaurant="luigi's ", people=4, time="19:30") + _call("set_alarm",
                                                                                                   time="19:00"))
    assert not extra.success and extra.reward == 0.5 and "Unexpected call to set_alarm" in extra.feedback
    two = _task(env, "weather-two-cities")
    half = env.verify(two, _call("get_weather", city="Oslo"))
    assert half.reward == 0.5 and "Missing a call to get_weather" in half.feedback
    unknown = env.verify(two, _call("get_weather", city="Oslo", country="NO") + _call("get_weather", city="Tokyo"))
    assert not unknown.success and "'country' is not a parameter" in unknown.feedback
    none = _task(env, "no-call-capital")
    assert not env.verify(none, _call("get_weather", city="Paris")).success
    assert env.verify(_task(env, "tip-18"), _call("calculate_tip", bill=64.50, percent=18.0)).success


def test_function_calling_user_file_formats(tmp_path):
    schema = {"name": "ping", "description": "Ping a host.",
              "parameters": {"type": "object", "properties": {"host": {"type": "string"}}, "required": ["host"]}}
    rows = [{"id": "p1", "prompt": "Ping example.com", "tools": [schema],
             "expected_calls": [{"name": "ping", "arguments": {"host": "example.com"}}]},
            {"id": "p2", "messages": [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi"}],
             "tools": [schema], "expected_calls": [], "order_matters": True}]
    path = tmp_path / "tasks.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    assert [t.id for t in load_tasks(path)] == ["p1", "p2"]
    env = agentloop.make("tools/function-calling-v0", path=str(path))
    check_env(env)
    obs, _ = env.reset(options={"index": 1})
    assert obs[0].content.startswith("Be terse.") and obs[-1].content == "Hi"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"tools": {}, "tasks": [{"id": "x", "prompt": "p", "tools": ["nope"]}]}))
    with pytest.raises(ConfigError, match="nope"):
        load_tasks(bad)


# -- calc-math --------------------------------------------------------------------------------------
def test_calculator():
    assert calculator("(12.5 * 4) - 3 / 2") == "48.5"
    assert calculator("2^10") == "1024"
    for bad in ("__import__('os')", "9**9**9", "a + 1"):
        with pytest.raises(ValueError):
            calculator(bad)


def _math_script(tool_name):
    def script(conv):
        results = [m for m in conv if m.role == "tool"]
        if not results:
            expr = re.search(r"What is (.+)\?", conv[-1].content).group(1).replace(" x ", " * ")
            if tool_name == "calculator":
                return _call("calculator", expression=expr)
            return _call("python", code=f"print({expr})")
        return f"I used the tool.\nAnswer: {results[-1].content.strip()}"
    return script


@pytest.mark.parametrize("difficulty", [1, 2, 3])
def test_calc_math_with_calculator_end_to_end(difficulty):
    jobs = [Job(env="tools/calc-math-v0", seed=s, make_kwargs={"source_kwargs": {"difficulty": difficulty}})
            for s in range(4)]
    episodes = rollout(jobs, ScriptedPolicy(_math_script("calculator")))
    assert all(ep.error is None and ep.success and len(ep.turns) == 2 for ep in episodes)
    check_env(agentloop.make("tools/calc-math-v0", source_kwargs={"difficulty": difficulty}))


def test_calc_math_over_gsm8k():
    env = agentloop.make("tools/calc-math-v0", source="math/gsm8k-v0")
    check_env(env)
    obs, info = env.reset(seed=0)
    assert obs[0].role == "system" and "calculator" in obs[0].content and obs[-1].role == "user"
    _, reward, _, _, info = env.step(f"Answer: {env.unwrapped.task.answer}")
    assert reward == 1.0 and info["success"]


def test_calc_math_wrong_answer_fails():
    env = agentloop.make("tools/calc-math-v0")
    env.reset(seed=0)
    _, reward, term, _, info = env.step("Answer: 123456789")
    assert term and reward == 0.0 and info["success"] is False


def test_calc_math_python_tool_in_sandbox():
    from agentloop.errors import SandboxError
    from agentloop.sandbox import get_sandbox

    try:
        get_sandbox("auto").close()
    except SandboxError as e:
        pytest.skip(f"no isolating sandbox here: {e}")
    env = agentloop.make("tools/calc-math-v0", source_kwargs={"difficulty": 2})
    [ep] = rollout([Job(env=env, seed=1)], ScriptedPolicy(_math_script("python")))
    assert ep.error is None and ep.success, ep.turns[-1].info
    env2 = agentloop.make("tools/calc-math-v0")
    env2.reset(seed=0)
    obs, *_ = env2.step(_call("python", code="import socket; socket.create_connection(('1.1.1.1', 80), timeout=2)"))
    assert obs[-1].role == "tool" and obs[-1].content.startswith("[error]")
    env2.close()
