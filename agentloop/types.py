"""The records that cross module boundaries: messages, feedback, critiques, turns, episodes.

All records are frozen pydantic models, JSON round-trippable::

    >>> ep = Episode(env_id="math/arith-v0", seed=3)
    >>> Episode.model_validate_json(ep.model_dump_json()) == ep
    True
"""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

Role = Literal["system", "user", "assistant", "tool"]
FeedbackMode = Literal["none", "binary", "retry", "env", "oracle", "critic"]
ErrorStage = Literal["reset", "policy", "step", "critic", "parse", "wrapper", "engine"]


class Record(BaseModel):
    """Base of every record: frozen, no unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class ToolCall(Record):
    """A function call the model asked for (OpenAI shape: name plus JSON arguments)."""

    id: str = Field(default="", description="Call id, echoed by the tool message that answers it.")
    name: str
    arguments: dict[str, JsonValue] = Field(default_factory=dict)


class Message(Record):
    """One chat message, in the shape chat templates and OpenAI-compatible servers use."""

    role: Role
    content: str = ""
    name: str | None = Field(default=None, description="Tool name for role='tool' messages.")
    tool_call_id: str | None = None
    tool_calls: tuple[ToolCall, ...] | None = None

    def to_openai(self) -> dict[str, Any]:
        """The message as an OpenAI/chat-template dict (None fields dropped)."""
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.name is not None:
            out["name"] = self.name
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        if self.tool_calls:
            out["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in self.tool_calls
            ]
        return out


def system(content: str) -> Message:
    return Message(role="system", content=content)


def user(content: str) -> Message:
    return Message(role="user", content=content)


def assistant(content: str) -> Message:
    return Message(role="assistant", content=content)


class Feedback(Record):
    """What the actor is told between attempts, and where it came from."""

    mode: FeedbackMode
    text: str
    success: bool | None = Field(default=None, description="The verifier's verdict the feedback is about, if known.")


class StepVerdict(Record):
    """One step of a step-level critique (docs/methods.md section 4)."""

    step: str
    correct: bool | None = None
    explanation: str = ""


class Critique(Record):
    """A critic's judgement of one answer.

    A critique that could not be parsed is still a record: ``parse_error`` says why, and the
    verdict fields are None.
    """

    text: str = Field(description="The critique as written (what the actor is shown).")
    steps: tuple[StepVerdict, ...] = ()
    first_wrong_step: int | None = Field(default=None, description="0-based index of the first step judged wrong.")
    final_correct: bool | None = Field(default=None, description="The critic's verdict on the final answer.")
    parse_error: str | None = None
    critic: str = Field(default="", description="Which critic wrote it (registry id or class name).")


class CritiqueRequest(Record):
    """What a critic needs to judge an answer: the conversation, the answer, optional env feedback."""

    question: str
    answer: str
    messages: tuple[Message, ...] = ()
    env_feedback: str | None = Field(default=None, description="The environment's own feedback (for verifier critics).")
    success: bool | None = Field(default=None, description="The verifier's verdict, if the critic may see it.")


class EpisodeError(Record):
    """Where and why an episode failed. A failed rollout is data: it is recorded, never raised."""

    stage: ErrorStage
    type: str
    message: str
    turn: int | None = None
    traceback: str = ""


class Turn(Record):
    """One actor action and what the environment said about it."""

    index: int = Field(description="0-based position of this action in the episode.")
    attempt: int = Field(default=0, description="0-based attempt number (MultiAttempt); 0 for single-attempt envs.")
    observation: tuple[Message, ...] = Field(description="The messages the policy saw before acting.")
    action: str
    reward: float = 0.0
    success: bool | None = None
    terminated: bool = False
    truncated: bool = False
    feedback: Feedback | None = Field(default=None, description="Feedback given after this turn, if any.")
    critique: Critique | None = None
    parse_error: str | None = Field(default=None, description="Set when the environment could not parse the action.")
    token_ids: tuple[int, ...] | None = Field(
        default=None, description="The completion's token ids as the policy sampled them (None: the backend gave none).")
    logprobs: tuple[float, ...] | None = None
    prompt_token_ids: tuple[int, ...] | None = Field(
        default=None, description="The prompt ids the policy generated from (chat template rendered at generation "
        "time, after any truncation); with token_ids, the exact sequence training uses.")
    info: dict[str, JsonValue] = Field(default_factory=dict)


class Episode(Record):
    """A whole rollout: every turn, the final conversation, the outcome, and any error."""

    id: str = Field(default_factory=lambda: os.urandom(8).hex())
    env_id: str
    seed: int | None = None
    task_id: str | None = None
    turns: tuple[Turn, ...] = ()
    messages: tuple[Message, ...] = Field(default=(), description="The final conversation.")
    error: EpisodeError | None = None
    metadata: dict[str, JsonValue] = Field(default_factory=dict)

    @property
    def total_reward(self) -> float:
        return float(sum(t.reward for t in self.turns))

    @property
    def success(self) -> bool:
        """True when the last turn was judged a success and nothing errored."""
        return self.error is None and bool(self.turns) and bool(self.turns[-1].success)

    @property
    def attempt_success(self) -> tuple[bool, ...]:
        """Success of each attempt in order (the input of the self-correction metrics)."""
        per: dict[int, bool] = {}
        for t in self.turns:
            if t.success is not None:
                per[t.attempt] = bool(t.success)
        return tuple(per[k] for k in sorted(per))


class Completion(Record):
    """One sampled continuation from a policy."""

    text: str
    token_ids: tuple[int, ...] | None = None
    logprobs: tuple[float, ...] | None = Field(default=None, description="Per-token log-probabilities of token_ids.")
    prompt_token_ids: tuple[int, ...] | None = None
    finish_reason: str = "stop"
    warning: str | None = Field(default=None, description="E.g. the prompt was truncated to fit the context.")


class SamplingParams(Record):
    """Sampling settings shared by every policy backend."""

    temperature: float = Field(default=0.0, ge=0.0, description="0 means greedy.")
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    max_new_tokens: int = Field(default=256, ge=1)
    n: int = Field(default=1, ge=1, description="Samples per conversation.")
    stop: tuple[str, ...] = Field(default=(), description="Stop strings; the text is cut before them.")
    seed: int | None = None
    return_logprobs: bool = Field(default=False, description="Also return token ids and per-token logprobs.")
