"""The documented text form of tool schemas, for models whose chat template has no ``tools=``.

Tool-use environments write it into a system message by default (so any messages-only policy works);
policies that render tools natively fall back to it when their tokenizer's template does not
support tools. The format follows the Hermes/Qwen templates (what their ``tools=`` renders to)::

    # Tools

    You may call one or more functions to assist with the user query.
    <tools>
    {"type": "function", "function": {"name": ..., "description": ..., "parameters": {...}}}
    </tools>

    To call a function, reply with one <tool_call></tool_call> block per call ...
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from agentloop.types import Message

TOOLS_HEADER = "# Tools\n\nYou may call one or more functions to assist with the user query."
CALL_INSTRUCTIONS = (
    "To call a function, reply with one <tool_call></tool_call> block per call, holding a JSON object with "
    "the function name and its arguments:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": "
    "<args-json-object>}\n</tool_call>\nThe results come back as tool messages. When you have the final answer, "
    "reply with it and no tool call."
)


def tools_system_text(schemas: Sequence[dict[str, Any]], preamble: str = "") -> str:
    """The system-message text that carries tool schemas to a messages-only policy."""
    lines = "\n".join(json.dumps(s, ensure_ascii=False) for s in schemas)
    head = f"{preamble.strip()}\n\n" if preamble.strip() else ""
    return f"{head}{TOOLS_HEADER}\n<tools>\n{lines}\n</tools>\n\n{CALL_INSTRUCTIONS}"


def with_tools_in_system(conversation: Sequence[Message], schemas: Sequence[dict[str, Any]]) -> list[Message]:
    """``conversation`` with the tool text merged into its leading system message (added if absent)."""
    msgs = list(conversation)
    if msgs and msgs[0].role == "system":
        return [Message(role="system", content=tools_system_text(schemas, msgs[0].content)), *msgs[1:]]
    return [Message(role="system", content=tools_system_text(schemas)), *msgs]


__all__ = ["CALL_INSTRUCTIONS", "TOOLS_HEADER", "tools_system_text", "with_tools_in_system"]
