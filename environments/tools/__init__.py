"""Tool-use environments: the `ToolEnv` machinery and its built-in tasks.

* :mod:`.core`: tools (langchain-core tools or typed functions) to JSON schemas, the text protocol
  that carries them to a messages-only policy, call parsing, validation and execution.
* :mod:`.env`: :class:`ToolEnv`, multi-turn until a final answer or the turn limit.
* :mod:`.calc`: ``tools/calc-math-v0``, calculator + sandboxed Python over a math environment.
* :mod:`.function_calling`: ``tools/function-calling-v0``, expected-call tasks from a JSON format.
* :mod:`.bfcl`: ``tools/bfcl-format-v0``, BFCL records checked with BFCL's AST rules.
* :mod:`.synthetic_calls`: ``tools/synthetic-calls-v0``, procedural BFCL-format training tasks.
"""

from .core import ParsedCalls, Toolbox, ToolOutcome, as_tool, parse_tool_calls, tool_schema, tools_system_text
from .env import ToolEnv

__all__ = ["ParsedCalls", "ToolEnv", "ToolOutcome", "Toolbox", "as_tool", "parse_tool_calls", "tool_schema",
           "tools_system_text"]
