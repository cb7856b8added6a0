"""Tool machinery: tools to JSON schemas, the text protocol for calls, parsing, validation, execution.

Tools are langchain-core tools (``@tool``, ``StructuredTool``, any ``BaseTool``) or plain typed Python
functions with a docstring; :func:`as_tool` turns a function into a ``StructuredTool`` (its
Google-style ``Args:`` section, if any, becomes the argument descriptions) and
:func:`tool_schema` gives the OpenAI function schema through langchain-core's
``convert_to_openai_tool``.

**How the schemas reach the policy (the text fallback).** Our :class:`~agentloop.protocols.Policy`
takes messages only, so the schemas travel in a system message, in the format of the Hermes/Qwen
chat templates (what their ``tools=`` argument renders to)::

    # Tools
    You may call one or more functions to assist with the user query.
    <tools>
    {"type": "function", "function": {"name": ..., "description": ..., "parameters": {...}}}
    </tools>
    To call a function, reply with one <tool_call></tool_call> block per call:
    <tool_call>
    {"name": <function-name>, "arguments": <args-json-object>}
    </tool_call>

The text form lives in :mod:`agentloop.toolprompt`. With ``ToolEnv(tool_prompt="native")`` the
schemas are not written into the messages; they go to the policy's chat template through
``generate(..., tools=...)`` (reset info ``render_tools``), and policies whose template has no
tools support fall back to the same text form. The schemas are always in reset info ``"tools"``.

**Parsing.** :func:`parse_tool_calls` reads ``<tool_call>`` blocks (an unterminated last block
too, as stop strings leave it) and, when there is none, a bare JSON object (or list of objects, or
OpenAI ``{"tool_calls": [...]}``) with a ``name`` and ``arguments``/``parameters``. Malformed blocks
become errors, not exceptions.

**Execution.** :class:`Toolbox.call` checks the tool exists, the arguments are an object with the
schema's required keys, no unknown keys and the right types (pydantic strict validation, so
``"3"`` is not an integer), then runs the tool. Every failure (unknown tool, malformed call, wrong
argument types, a tool that raises) returns a :class:`ToolOutcome` with ``ok=False`` and an error
text for the model; nothing raises.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

from langchain_core.tools import BaseTool, StructuredTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel, ConfigDict, JsonValue, ValidationError

from agentloop.errors import ConfigError
from agentloop.toolprompt import CALL_INSTRUCTIONS, TOOLS_HEADER, tools_system_text  # noqa: F401 (re-exported)
from agentloop.types import ToolCall

ToolLike = BaseTool | Callable[..., Any]
EventKind = Literal["unknown_tool", "malformed_call", "invalid_arguments", "tool_error"]

def as_tool(obj: ToolLike) -> BaseTool:
    """A langchain-core tool from a tool (returned as is) or a typed function with a docstring."""
    if isinstance(obj, BaseTool):
        return obj
    if not callable(obj):
        raise ConfigError(f"A tool must be a langchain-core BaseTool or a function, got {type(obj).__name__}.")
    doc = inspect.getdoc(obj)
    if not doc:
        raise ConfigError(f"Tool function {getattr(obj, '__name__', obj)!r} needs a docstring: it is the "
                          "description the model reads.")
    try:
        return StructuredTool.from_function(obj, parse_docstring=True, error_on_invalid_docstring=False)
    except (ValueError, TypeError):
        return StructuredTool.from_function(obj, description=doc.split("\n\n")[0])


def tool_schema(tool: BaseTool) -> dict[str, Any]:
    """The OpenAI function schema ``{"type": "function", "function": {...}}``."""
    return convert_to_openai_tool(tool)


# -- parsing ----------------------------------------------------------------------------------------
class ParsedCalls(BaseModel):
    """Calls found in one reply, and the blocks that could not be read."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    calls: tuple[ToolCall, ...] = ()
    errors: tuple[str, ...] = ()

    @property
    def any(self) -> bool:
        return bool(self.calls or self.errors)


_TAG = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.S)


def _call_from_obj(obj: Any, index: int) -> ToolCall | str:
    """A ToolCall from a decoded object, or an error text."""
    if not isinstance(obj, dict):
        return f"call {index + 1}: expected a JSON object with 'name' and 'arguments', got {type(obj).__name__}."
    if isinstance(obj.get("function"), dict):  # OpenAI shape
        obj = {**obj["function"], "id": obj.get("id", "")}
    name = obj.get("name")
    args = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError as e:
            return f"call {index + 1}: 'arguments' is a string that is not JSON ({e.msg})."
        except (RecursionError, ValueError):  # nesting deeper than the decoder's stack, or a huge integer
            return f"call {index + 1}: 'arguments' is a string that is not usable JSON (nested too deeply or too large)."
    if not isinstance(name, str) or not name:
        return f"call {index + 1}: missing the function 'name'."
    if not isinstance(args, dict):
        return f"call {index + 1} to {name!r}: 'arguments' must be a JSON object, got {type(args).__name__}."
    call_id = str(obj.get("id") or "")  # the environment numbers calls that come without an id
    try:
        return ToolCall(id=call_id, name=name, arguments=args)
    except (ValidationError, RecursionError):
        return f"call {index + 1} to {name!r}: the arguments are not plain JSON values."


def _collect(objs: Iterable[Any]) -> ParsedCalls:
    calls, errors = [], []
    for i, obj in enumerate(objs):
        out = _call_from_obj(obj, i)
        (calls if isinstance(out, ToolCall) else errors).append(out)
    return ParsedCalls(calls=tuple(calls), errors=tuple(errors))


def _looks_like_call(obj: Any) -> bool:
    if isinstance(obj, dict):
        if "tool_calls" in obj:
            return True
        return ("name" in obj and ("arguments" in obj or "parameters" in obj)) or isinstance(obj.get("function"), dict)
    return isinstance(obj, list) and bool(obj) and all(_looks_like_call(o) for o in obj)


def parse_tool_calls(text: str) -> ParsedCalls:
    """Find tool calls in a reply (see the module docstring); no call found = an empty result."""
    blocks = [b.strip() for b in _TAG.findall(text)]
    if blocks:
        objs: list[Any] = []
        errors: list[str] = []
        for i, b in enumerate(blocks):
            b = re.sub(r"^```(?:json)?\s*|\s*```$", "", b)
            try:
                objs.append(json.loads(b))
            except json.JSONDecodeError as e:
                errors.append(f"call {i + 1}: malformed JSON in <tool_call> ({e.msg} at column {e.colno}).")
            except (RecursionError, ValueError):  # nesting deeper than the decoder's stack, or a huge integer
                errors.append(f"call {i + 1}: the JSON in <tool_call> is nested too deeply or holds a too large number.")
        parsed = _collect(o for o in objs)
        return ParsedCalls(calls=parsed.calls, errors=(*errors, *parsed.errors))
    candidate = text.strip()
    fence = re.search(r"```(?:json)?\s*\n(.*?)```", candidate, re.S)
    if fence:
        candidate = fence.group(1).strip()
    if not candidate or candidate[0] not in "[{":
        return ParsedCalls()
    try:
        obj = json.loads(candidate)
    except (RecursionError, ValueError):  # JSONDecodeError, a huge integer, or nesting too deep: not a call
        return ParsedCalls()
    try:
        looks = _looks_like_call(obj)
    except RecursionError:  # lists nested hundreds deep: not a call
        return ParsedCalls()
    if not looks:
        return ParsedCalls()
    if isinstance(obj, dict) and "tool_calls" in obj:
        obj = obj["tool_calls"] if isinstance(obj["tool_calls"], list) else [obj["tool_calls"]]
    return _collect(obj if isinstance(obj, list) else [obj])


# -- validation and execution -----------------------------------------------------------------------
class ToolOutcome(BaseModel):
    """The result of one call: the tool message text, and the event to record when it failed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    call_id: str
    name: str
    ok: bool
    content: str
    kind: EventKind | None = None


def _dump(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(value)


class Toolbox:
    """Named tools with their schemas; ``call`` validates and runs one call, never raising."""

    def __init__(self, tools: Iterable[ToolLike]):
        self.tools: dict[str, BaseTool] = {}
        for t in tools:
            tool = as_tool(t)
            if tool.name in self.tools:
                raise ConfigError(f"Two tools are named {tool.name!r}; tool names must be unique.")
            self.tools[tool.name] = tool
        self.schemas = [tool_schema(t) for t in self.tools.values()]
        self._params = {s["function"]["name"]: s["function"].get("parameters", {}) for s in self.schemas}

    def _fail(self, call: ToolCall, kind: EventKind, text: str) -> ToolOutcome:
        return ToolOutcome(call_id=call.id, name=call.name, ok=False, content=f"Error: {text}", kind=kind)

    def validate(self, call: ToolCall) -> str | None:
        """Why the arguments do not fit the tool's schema, or None."""
        tool = self.tools[call.name]
        params = self._params[call.name]
        props = params.get("properties", {})
        unknown = sorted(set(call.arguments) - set(props))
        if unknown:
            return f"unknown argument(s) {', '.join(unknown)}; {call.name} takes {', '.join(props) or 'none'}."
        missing = [k for k in params.get("required", []) if k not in call.arguments]
        if missing:
            return f"missing required argument(s) {', '.join(missing)}."
        schema = tool.args_schema
        if isinstance(schema, type) and issubclass(schema, BaseModel):
            try:
                schema.model_validate(call.arguments, strict=True)
            except ValidationError as e:
                return "; ".join(f"argument {'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in e.errors())
        return None

    def call(self, call: ToolCall) -> ToolOutcome:
        if call.name not in self.tools:
            return self._fail(call, "unknown_tool", f"unknown tool {call.name!r}; available: {', '.join(self.tools)}.")
        problem = self.validate(call)
        if problem is not None:
            return self._fail(call, "invalid_arguments", f"invalid arguments for {call.name}: {problem}")
        try:
            result = self.tools[call.name].invoke(dict(call.arguments))
        except Exception as e:  # a tool that raises is the model's problem to read about, not a crash
            return self._fail(call, "tool_error", f"{call.name} raised {type(e).__name__}: {e}")
        return ToolOutcome(call_id=call.id, name=call.name, ok=True, content=_dump(result))


def tool_event(turn: int, kind: str, name: str | None, message: str) -> dict[str, JsonValue]:
    """The record of one failed call (kept in step info under ``tool_events``)."""
    return {"turn": turn, "kind": kind, "tool": name, "message": message}


__all__ = ["CALL_INSTRUCTIONS", "ParsedCalls", "ToolLike", "ToolOutcome", "Toolbox", "as_tool", "parse_tool_calls",
           "tool_event", "tool_schema", "tools_system_text"]
