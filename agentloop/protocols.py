"""The plug points, typed by shape: anything with these methods works."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from agentloop.types import Completion, Critique, CritiqueRequest, Message, SamplingParams


@runtime_checkable
class Policy(Protocol):
    """Generates the actor's turns (or a critic's text), batched.

    ``generate`` returns ``len(conversations) * sampling.n`` completions; sample ``j`` of
    conversation ``i`` is at index ``i * sampling.n + j``. When ``sampling.return_logprobs`` is set,
    each completion carries ``token_ids`` and per-token ``logprobs``.

    Optional: a policy that also accepts ``tools`` (one list of OpenAI function schemas, or None,
    per conversation) renders them natively, through its chat template's ``tools=`` (the ``hf``,
    ``vllm`` and ``openai`` policies do). The rollout engine passes ``tools`` only to policies whose
    ``generate`` has that parameter, and only for environments that ask for native rendering.
    """

    def generate(self, conversations: Sequence[Sequence[Message]], sampling: SamplingParams) -> list[Completion]: ...


ToolSchemas = Sequence[dict[str, Any]]


def accepts_tools(policy: object) -> bool:
    """Whether ``policy.generate`` takes the optional ``tools`` argument."""
    import inspect

    try:
        return "tools" in inspect.signature(policy.generate).parameters  # type: ignore[attr-defined]
    except (TypeError, ValueError, AttributeError):
        return False


@runtime_checkable
class Critic(Protocol):
    """Judges answers. Malformed critic output yields a Critique with ``parse_error`` set, never an exception."""

    def critique(self, requests: Sequence[CritiqueRequest]) -> list[Critique]: ...


__all__ = ["Critic", "Policy", "ToolSchemas", "accepts_tools"]
