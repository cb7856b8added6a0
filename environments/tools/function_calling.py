"""Function calling judged by the calls themselves: name, required arguments, argument types and values.

One reply per episode. The policy sees the request with the tools' schemas (the text protocol of
:mod:`.core`) and answers with tool calls (or, when no call is expected, a plain answer). Nothing is
executed: the reward compares the calls with the task's expected calls.

Task file format (JSON, or JSONL of task objects)::

    {"tools": {"get_weather": {"type": "function", "function": {"name": "get_weather",
                 "description": "...", "parameters": {<JSON schema>}}}},          # optional shared tools
     "tasks": [
       {"id": "weather-paris",
        "prompt": "What's the weather in Paris in celsius?",           # or "messages": [{role, content}...]
        "tools": ["get_weather", {<inline OpenAI function schema>}],   # names of shared tools or schemas
        "expected_calls": [{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}],
        "order_matters": false}]}

A file may also be a JSON list of task objects (tools inline). Expected argument values match as
follows: strings case- and outer-space-insensitively, numbers within 1e-6 (``64.5`` matches ``64.50``,
``15`` matches ``15.0`` only if the schema allows a number), lists and objects element-wise;
``{"$any": true}`` accepts any value of the schema's type and ``{"$contains": "text"}`` any string
containing the text. Arguments the model adds beyond the expected ones must be in the schema with
the right type. ``"expected_calls": []`` means the right reply calls nothing.

Verdict: ``success`` when every expected call is matched, no call is extra and every call fits its
schema; ``reward`` = matched / max(#expected, #made) (1.0 for a correct no-call reply). Feedback
names what is wrong (missing call to X, argument 'unit' has the wrong value, argument 'people'
should be integer) without the expected values; ``oracle_feedback`` shows the expected calls.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import jsonschema
from pydantic import BaseModel, ConfigDict, Field, JsonValue

from agentloop.env import Task, TaskEnv, Verdict
from agentloop.errors import ConfigError
from agentloop.rollout import RENDER_TOOLS_KEY
from agentloop.types import ToolCall, system, user

from .core import parse_tool_calls, tools_system_text

BUILTIN_TASKS = Path(__file__).with_name("function_calling_tasks.json")


class ExpectedCall(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    arguments: dict[str, JsonValue] = Field(default_factory=dict)


class FunctionCallingTask(BaseModel):
    """One request with its tools and the calls that answer it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    prompt: str | None = None
    messages: tuple[dict[str, str], ...] = ()
    tools: tuple[dict[str, JsonValue], ...] = Field(description="OpenAI function schemas.")
    expected_calls: tuple[ExpectedCall, ...] = ()
    order_matters: bool = False

    def schema_of(self, name: str) -> dict[str, Any] | None:
        for t in self.tools:
            fn = t.get("function", t)
            if isinstance(fn, dict) and fn.get("name") == name:
                return fn.get("parameters") or {"type": "object", "properties": {}}  # type: ignore[return-value]
        return None


def _normalise_tool(tool: Any) -> dict[str, Any]:
    if isinstance(tool, dict) and "function" not in tool and "name" in tool:
        return {"type": "function", "function": tool}
    return tool


def load_tasks(path: str | Path) -> list[FunctionCallingTask]:
    """Read a task file in the format of the module docstring (JSON or JSONL)."""
    p = Path(path)
    text = p.read_text(encoding="utf-8")
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError:
        data = [json.loads(line) for line in text.splitlines() if line.strip()]
    shared = data.get("tools", {}) if isinstance(data, dict) else {}
    raw_tasks = data.get("tasks", []) if isinstance(data, dict) else data
    out = []
    for i, raw in enumerate(raw_tasks):
        tools = []
        for t in raw.get("tools", []):
            if isinstance(t, str):
                if t not in shared:
                    raise ConfigError(f"{p}: task {raw.get('id', i)!r} names tool {t!r}, which is not in 'tools'.")
                t = shared[t]
            tools.append(_normalise_tool(t))
        try:
            task = FunctionCallingTask.model_validate({**raw, "tools": tools})
        except Exception as e:
            raise ConfigError(f"{p}: task {i} is invalid ({e}); see the format in "
                              "agentloop.environments.tools.function_calling.") from e
        if task.prompt is None and not task.messages:
            raise ConfigError(f"{p}: task {task.id!r} needs a 'prompt' or 'messages'.")
        out.append(task)
    return out


# -- matching ---------------------------------------------------------------------------------------
def value_matches(expected: Any, actual: Any) -> bool:
    if isinstance(expected, dict) and "$any" in expected:
        return True
    if isinstance(expected, dict) and "$contains" in expected:
        return isinstance(actual, str) and str(expected["$contains"]).lower() in actual.lower()
    if isinstance(expected, bool) or isinstance(actual, bool):
        return expected is actual
    if isinstance(expected, (int, float)) and isinstance(actual, (int, float)):
        return abs(expected - actual) <= 1e-6 * max(1.0, abs(expected))
    if isinstance(expected, str) and isinstance(actual, str):
        return expected.strip().lower() == actual.strip().lower()
    if isinstance(expected, list) and isinstance(actual, list):
        return len(expected) == len(actual) and all(value_matches(e, a) for e, a in zip(expected, actual))
    if isinstance(expected, dict) and isinstance(actual, dict):
        return expected.keys() == actual.keys() and all(value_matches(v, actual[k]) for k, v in expected.items())
    return expected == actual


def schema_problems(task: FunctionCallingTask, call: ToolCall) -> list[str]:
    """Why a call does not fit its tool's schema (unknown tool, missing/unknown arguments, types)."""
    schema = task.schema_of(call.name)
    if schema is None:
        return [f"{call.name} is not one of the available tools"]
    problems = []
    props = schema.get("properties", {})
    for k in call.arguments:
        if k not in props:
            problems.append(f"argument '{k}' is not a parameter of {call.name}")
    for err in jsonschema.Draft202012Validator(schema).iter_errors(dict(call.arguments)):
        where = "/".join(str(x) for x in err.absolute_path)
        if err.validator == "required":
            problems.append(f"{call.name}: {err.message}")
        elif err.validator != "additionalProperties":
            problems.append(f"{call.name}: argument '{where}' {err.message}")
    return problems


def call_matches(expected: ExpectedCall, call: ToolCall) -> tuple[bool, list[str]]:
    """Whether ``call`` is ``expected``, and (if not) which arguments differ, without their values."""
    if call.name != expected.name:
        return False, [f"expected a different function than {call.name}"]
    diffs = []
    for k, v in expected.arguments.items():
        if k not in call.arguments:
            diffs.append(f"{call.name}: argument '{k}' is missing")
        elif not value_matches(v, call.arguments[k]):
            diffs.append(f"{call.name}: argument '{k}' has the wrong value")
    return not diffs, diffs


def judge(task: FunctionCallingTask, calls: Sequence[ToolCall]) -> tuple[float, bool, list[str]]:
    """(reward, success, feedback lines) for the calls a reply made."""
    problems = [p for c in calls for p in schema_problems(task, c)]
    expected = list(task.expected_calls)
    if not expected:
        ok = not calls
        return float(ok), ok, ([] if ok else [f"No tool call was needed, but the reply made {len(calls)}."])
    used: set[int] = set()
    hits: dict[int, int] = {}
    for i, exp in enumerate(expected):  # first every exact match, so a near miss cannot steal one
        pool = [i] if task.order_matters else range(len(calls))
        hit = next((j for j in pool if j < len(calls) and j not in used and call_matches(exp, calls[j])[0]), None)
        if hit is not None:
            used.add(hit)
            hits[i] = hit
    matched, lines = len(hits), []
    for i, exp in enumerate(expected):  # then explain the misses
        if i in hits:
            continue
        pool = [i] if task.order_matters else range(len(calls))
        same = next((j for j in pool if j < len(calls) and j not in used and calls[j].name == exp.name), None)
        if same is not None:
            used.add(same)
            lines += call_matches(exp, calls[same])[1]
        else:
            lines.append(f"Missing a call to {exp.name}" + (f" as call {i + 1}" if task.order_matters else "") + ".")
    extra = [calls[j].name for j in range(len(calls)) if j not in used]
    lines += [f"Unexpected call to {name}." for name in extra]
    lines += problems
    reward = matched / max(len(expected), len(calls))
    success = matched == len(expected) and not extra and not problems
    return reward, success, lines


class FunctionCallingEnv(TaskEnv):
    """Expected-call tasks from a JSON file (default: the shipped built-in set of 14)."""

    def __init__(self, path: str | None = None, tool_prompt: Literal["text", "native"] = "text"):
        super().__init__()
        if tool_prompt not in ("text", "native"):
            raise ConfigError(f"FunctionCallingEnv: tool_prompt must be 'text' or 'native', got {tool_prompt!r}.")
        self.tool_prompt = tool_prompt
        self.path = Path(path) if path else BUILTIN_TASKS
        if not self.path.exists():
            raise ConfigError(f"FunctionCallingEnv: task file {self.path} does not exist.")
        self.tasks = load_tasks(self.path)

    def num_tasks(self) -> int:
        return len(self.tasks)

    def get_task(self, index: int) -> Task:
        t = self.tasks[index]
        msgs = [user(t.prompt)] if t.prompt is not None else []
        msgs = [*(system(m["content"]) if m["role"] == "system" else user(m["content"]) for m in t.messages), *msgs]
        preamble = " ".join(m.content for m in msgs if m.role == "system")
        if self.tool_prompt == "native":  # the policy's chat template renders the tools (see reset)
            head = [system(preamble)] if preamble else []
        else:
            head = [system(tools_system_text([dict(s) for s in t.tools], preamble))]
        return Task(id=t.id, messages=(*head, *(m for m in msgs if m.role != "system")),
                    answer=[c.model_dump() for c in t.expected_calls], metadata={"index": index})

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = super().reset(seed=seed, options=options)
        schemas = [dict(s) for s in self.tasks[int(self.task.metadata["index"])].tools]  # type: ignore[arg-type]
        info = {**info, "tools": schemas}
        if self.tool_prompt == "native":
            info[RENDER_TOOLS_KEY] = schemas
        return obs, info

    def verify(self, task: Task, action: str) -> Verdict:
        t = self.tasks[int(task.metadata["index"])]  # type: ignore[arg-type]
        parsed = parse_tool_calls(action)
        reward, success, lines = judge(t, parsed.calls)
        if parsed.errors:
            success, lines = False, [*parsed.errors, *lines]
        feedback = "All calls are correct." if success else "\n".join(lines)
        oracle = "Expected calls:\n" + "\n".join(json.dumps(c.model_dump()) for c in t.expected_calls) \
            if t.expected_calls else "Expected: no tool call."
        parse_error = "; ".join(parsed.errors) or None
        return Verdict(reward=reward if not parsed.errors else 0.0, success=success, feedback=feedback,
                       oracle_feedback=oracle, parse_error=parse_error,
                       info={"calls": [c.model_dump(mode="json") for c in parsed.calls]})


__all__ = ["BUILTIN_TASKS", "ExpectedCall", "FunctionCallingEnv", "FunctionCallingTask", "judge", "load_tasks",
           "schema_problems", "value_matches"]
