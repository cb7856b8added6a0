"""The plug points, typed by shape: anything with these methods works."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from agentloop.types import Completion, Critique, CritiqueRequest, Message, SamplingParams


@runtime_checkable
class Policy(Protocol):
    """Generates the actor's turns (or a critic's text), batched.

    ``generate`` returns ``len(conversations) * sampling.n`` completions; sample ``j`` of
    conversation ``i`` is at index ``i * sampling.n + j``. When ``sampling.return_logprobs`` is set,
    each completion carries ``token_ids`` and per-token ``logprobs``.
    """

    def generate(self, conversations: Sequence[Sequence[Message]], sampling: SamplingParams) -> list[Completion]: ...


@runtime_checkable
class Critic(Protocol):
    """Judges answers. Malformed critic output yields a Critique with ``parse_error`` set, never an exception."""

    def critique(self, requests: Sequence[CritiqueRequest]) -> list[Critique]: ...


__all__ = ["Critic", "Policy"]
