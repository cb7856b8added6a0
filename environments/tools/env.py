"""`ToolEnv`: a multi-turn environment where the policy calls tools until it gives a final answer.

An episode: ``reset`` shows the task with the tool schemas in a system message (the text form of
:mod:`agentloop.toolprompt`; ``tool_prompt="text"``, the default, which works with any policy) or,
with ``tool_prompt="native"``, leaves them out of the messages and asks the policy to render them
with its chat template's ``tools=`` (reset info ``render_tools``; the hf, vllm and openai policies
do, falling back to the text form when the template has no tools support). The schemas are always in
``info["tools"]``. Each ``step`` reads the reply:

* one or more tool calls (or unreadable call blocks): each call is validated and run; the reply
  becomes an assistant message carrying ``tool_calls`` and each result (or error) a
  ``role="tool"`` message with the tool's ``name`` and the call's ``tool_call_id``; reward 0, the
  episode goes on. Failures (unknown tool, malformed call, wrong argument types, a tool that
  raises) are error messages to the model and entries in ``info["tool_events"]``, never exceptions;
* no tool call: the reply is the final answer; the task's ``verify`` gives reward, success and
  feedback, and the episode terminates.

After ``max_replies`` replies without a final answer the episode is truncated with success False
(named ``max_replies``, not ``max_turns``, because ``agentloop.make(..., max_turns=N)`` is the
registry's TurnLimit wrapper, whose truncation carries no verdict).

Subclasses implement ``num_tasks``, ``get_task``, ``verify`` (as for :class:`~agentloop.env.TaskEnv`)
and ``tools_for(task)``; ``self.calls`` lists the calls made so far in the episode.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from agentloop.env import Task, TaskEnv
from agentloop.errors import ConfigError, EnvError
from agentloop.rollout import RENDER_TOOLS_KEY
from agentloop.types import Message, ToolCall, assistant, system

from .core import ParsedCalls, Toolbox, ToolLike, ToolOutcome, parse_tool_calls, tool_event, tools_system_text


class ToolEnv(TaskEnv):
    """Base of tool-use environments (see the module docstring)."""

    def __init__(self, max_replies: int = 8, system_prompt: str = "", tool_prompt: Literal["text", "native"] = "text"):
        super().__init__()
        if tool_prompt not in ("text", "native"):
            raise ConfigError(f"{type(self).__name__}: tool_prompt must be 'text' or 'native', got {tool_prompt!r}.")
        self.tool_prompt = tool_prompt
        if max_replies < 1:
            raise ConfigError(f"{type(self).__name__}: max_replies must be >= 1 (one final answer), got {max_replies}.")
        self.max_replies = max_replies
        self.system_prompt = system_prompt
        self.toolbox: Toolbox | None = None
        self.calls: list[ToolCall] = []
        self.events: list[dict[str, Any]] = []
        self._messages: list[Message] = []
        self._turn = 0

    # -- to implement -------------------------------------------------------------------------
    def tools_for(self, task: Task) -> Sequence[ToolLike]:
        raise NotImplementedError

    # -- gymnasium API ------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        messages, info = super().reset(seed=seed, options=options)
        self.toolbox = Toolbox(self.tools_for(self.task))
        preamble = [self.system_prompt] if self.system_prompt else []
        rest = list(messages)
        while rest and rest[0].role == "system":
            preamble.append(rest.pop(0).content)
        schemas = self.toolbox.schemas
        self.calls, self.events, self._turn = [], [], 0
        if self.tool_prompt == "native":
            head = [system("\n\n".join(preamble))] if preamble else []
            self._messages = [*head, *rest]
            return list(self._messages), {**info, "tools": schemas, RENDER_TOOLS_KEY: schemas}
        self._messages = [system(tools_system_text(schemas, "\n\n".join(preamble))), *rest]
        return list(self._messages), {**info, "tools": schemas}

    def step(self, action: str):
        task = self.task
        if self._done or self.toolbox is None:
            raise EnvError(f"{type(self).__name__}: the episode is over (or never started); call reset() first.")
        self._turn += 1
        parsed = parse_tool_calls(action)
        if not parsed.any:
            return self._final(task, action)
        self._messages += self._run_calls(action, parsed)
        info: dict[str, Any] = {"task_id": task.id, "turn": self._turn, "tool_calls": len(parsed.calls),
                                "tool_events": [e for e in self.events if e["turn"] == self._turn]}
        if self._turn >= self.max_replies:
            self._done = True
            info.update(feedback=f"No final answer within {self.max_replies} turns.", success=False,
                        truncated_by="ToolEnv.max_replies", all_tool_events=list(self.events))
            return list(self._messages), 0.0, False, True, info
        return list(self._messages), 0.0, False, False, info

    # -- internals ----------------------------------------------------------------------------
    def _run_calls(self, action: str, parsed: ParsedCalls) -> list[Message]:
        """The assistant message with its calls, then one tool message per call or unreadable block."""
        assert self.toolbox is not None
        calls = [c if c.id else c.model_copy(update={"id": f"call_{self._turn}_{k}"})
                 for k, c in enumerate(parsed.calls)]
        out: list[Message] = []
        action_msg = Message(role="assistant", content=action, tool_calls=tuple(calls) or None)
        for call in calls:
            outcome = self.execute(call)
            self.calls.append(call)
            if not outcome.ok:
                self.events.append(tool_event(self._turn, outcome.kind or "tool_error", call.name, outcome.content))
            out.append(Message(role="tool", name=call.name, tool_call_id=call.id, content=outcome.content))
        for k, err in enumerate(parsed.errors):
            self.events.append(tool_event(self._turn, "malformed_call", None, err))
            out.append(Message(role="tool", name="invalid_tool_call", tool_call_id=f"call_{self._turn}_bad{k}",
                               content=f"Error: {err} Write each call as <tool_call>{{\"name\": ..., "
                                       f"\"arguments\": {{...}}}}</tool_call>."))
        return [action_msg, *out]

    def execute(self, call: ToolCall) -> ToolOutcome:
        """Run one call (override to observe calls, e.g. to keep a notebook)."""
        assert self.toolbox is not None
        return self.toolbox.call(call)

    def _final(self, task: Task, action: str):
        verdict = self.verify(task, action)
        self._done = True
        info: dict[str, Any] = {
            "feedback": verdict.feedback, "success": bool(verdict.success), "task_id": task.id, "turn": self._turn,
            "tool_calls": 0, "tool_events": [], "all_tool_events": list(self.events),
            "num_tool_calls": len(self.calls), **verdict.info,
        }
        if verdict.oracle_feedback is not None:
            info["oracle_feedback"] = verdict.oracle_feedback
        if verdict.parse_error is not None:
            info["parse_error"] = verdict.parse_error
        return [*self._messages, assistant(action)], float(verdict.reward), True, False, info


__all__ = ["ToolEnv"]
