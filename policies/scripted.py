"""`ScriptedPolicy`: replies from a script, for tests, demos and benchmarks of the machinery.

The script is one of:

* a list of replies, chosen by turn: the reply for a conversation with ``t`` assistant messages is
  ``replies[min(t, len - 1)]`` (so ``["wrong", "right"]`` answers wrong first, then right);
* a dict from prompt text to reply: the reply whose key occurs in the last user message
  (longest key first), else ``default``;
* a function ``conversation -> reply``.

It is deterministic, so seeded runs give identical episodes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from agentloop.errors import ConfigError, PolicyError
from agentloop.types import Completion, Message, SamplingParams

Script = Sequence[str] | Mapping[str, str] | Callable[[Sequence[Message]], str]


class ScriptedPolicy:
    """A policy that follows a script (see the module docstring)."""

    def __init__(self, replies: Script = ("",), default: str | None = None):
        if isinstance(replies, str):
            replies = (replies,)
        if isinstance(replies, Sequence) and not replies:
            raise ConfigError("ScriptedPolicy: replies must not be empty.")
        self.replies = replies
        self.default = default
        self.calls = 0
        self._keys = sorted(replies, key=len, reverse=True) if isinstance(replies, Mapping) else []

    def reply(self, conversation: Sequence[Message]) -> str:
        script = self.replies
        if callable(script) and not isinstance(script, (Mapping, Sequence)):
            return str(script(conversation))
        if isinstance(script, Mapping):
            last = next((m.content for m in reversed(conversation) if m.role == "user"), "")
            for key in self._keys:
                if key in last:
                    return script[key]
            if self.default is None:
                raise PolicyError(f"ScriptedPolicy: no scripted reply matches {last[:80]!r} and no default is set.")
            return self.default
        turn = sum(1 for m in conversation if m.role == "assistant")
        return script[min(turn, len(script) - 1)]

    def generate(self, conversations: Sequence[Sequence[Message]], sampling: SamplingParams) -> list[Completion]:
        self.calls += 1
        out = []
        for conv in conversations:
            text = self.reply(conv)
            for stop in sampling.stop:
                cut = text.find(stop)
                if cut >= 0:
                    text = text[:cut]
            out.extend(Completion(text=text) for _ in range(sampling.n))
        return out
