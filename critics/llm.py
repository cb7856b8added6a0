"""`LLMCritic`: a prompted language-model critic with the step-level format of docs/methods.md section 4.

The critic is asked to repeat each step of the answer and judge it, then judge the final answer::

    Step sentence: ...
    Correctness of the step: Correct | Wrong
    Explanation: ...
    Correctness of the final answer: Correct | Wrong
    Explanation: ...

:func:`parse_critique` turns such text into a :class:`~agentloop.types.Critique` (per-step verdicts,
first wrong step, final verdict, text). It never raises: text without a final verdict gives a
Critique whose ``parse_error`` says what was missing and whose ``final_correct`` is None.

The parser tolerates markdown emphasis (``**Step sentence:**``), list markers and numbering
(``1. Step sentence:``, ``Step 2:``), any letter case, full-width colons, and synonyms of the
verdict words (Incorrect/False/No for Wrong, Right/True/Yes for Correct). A step whose verdict word
is neither keeps ``correct=None``. Not covered: critiques in other layouts (JSON, tables).

The critic never sees the verifier's verdict (``CritiqueRequest.success``); it sees the
environment's feedback only when ``show_env_feedback=True``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agentloop.errors import ConfigError, CriticError
from agentloop.protocols import Policy
from agentloop.types import Critique, CritiqueRequest, Message, SamplingParams, StepVerdict, system, user

_LEAD = r"^[\s>*_#\-•\d.)(]*"  # markdown emphasis, bullets and numbering before a label
_COLON = r"[\s*_]*[:：][\s*_]*"
_STEP = re.compile(_LEAD + r"step(?:\s+sentence|\s*\d+)?" + _COLON + r"(.*)$", re.IGNORECASE)
_STEP_VERDICT = re.compile(_LEAD + r"correctness\s+of\s+(?:the\s+|this\s+)?step" + _COLON + r"(.*)$", re.IGNORECASE)
_FINAL_VERDICT = re.compile(_LEAD + r"correctness\s+of\s+(?:the\s+)?final\s+answer" + _COLON + r"(.*)$", re.IGNORECASE)
_EXPLANATION = re.compile(_LEAD + r"explanation" + _COLON + r"(.*)$", re.IGNORECASE)
_WRONG = re.compile(r"^\W*(wrong|incorrect|not\s+correct|false|no)\b", re.IGNORECASE)
_RIGHT = re.compile(r"^\W*(correct|right|true|yes)\b", re.IGNORECASE)


def _verdict(value: str) -> bool | None:
    if _WRONG.match(value):
        return False
    if _RIGHT.match(value):
        return True
    return None


def _clean(value: str) -> str:
    return value.strip().strip("*_").strip()


class _Draft:
    """Mutable state while parsing; turned into the frozen Critique at the end."""

    def __init__(self) -> None:
        self.steps: list[dict[str, Any]] = []
        self.final: bool | None = None
        self.final_seen = False
        self.final_raw = ""
        self.final_explanation: list[str] = []
        self.field: list[str] | None = None  # the text field continuation lines are appended to

    def add_step(self, sentence: str) -> None:
        self.steps.append({"step": [sentence], "correct": None, "explanation": []})
        self.field = self.steps[-1]["step"]


def _parse_line(draft: _Draft, line: str) -> None:
    if m := _FINAL_VERDICT.match(line):
        draft.final_seen, draft.final_raw = True, _clean(m.group(1))
        draft.final = _verdict(draft.final_raw)
        draft.field = None
    elif m := _STEP_VERDICT.match(line):
        if not draft.steps or draft.final_seen:
            draft.add_step("")  # a verdict without its sentence still counts as a step
        draft.steps[-1]["correct"] = _verdict(_clean(m.group(1)))
        draft.field = None
    elif m := _EXPLANATION.match(line):
        target = draft.final_explanation if draft.final_seen else (
            draft.steps[-1]["explanation"] if draft.steps else None)
        draft.field = target
        if target is not None:
            target.append(_clean(m.group(1)))
    elif (m := _STEP.match(line)) and not draft.final_seen:
        draft.add_step(_clean(m.group(1)))
    elif draft.field is not None and line.strip():
        draft.field.append(line.strip())


def parse_critique(text: str, critic: str = "llm") -> Critique:
    """Parse a step-level critique (see the module docstring). Never raises.

    >>> c = parse_critique("Step sentence: 2+2=5\\nCorrectness of the step: Wrong\\nExplanation: 2+2=4\\n"
    ...                    "Correctness of the final answer: Wrong\\nExplanation: it should be 4")
    >>> (c.first_wrong_step, c.final_correct, c.steps[0].explanation)
    (0, False, '2+2=4')
    """
    text = text if isinstance(text, str) else str(text)
    draft = _Draft()
    try:
        for line in text.splitlines():
            _parse_line(draft, line)
    except Exception as e:  # the parser must never take a rollout down; record why instead
        return Critique(text=text.strip(), parse_error=f"parser failed: {type(e).__name__}: {e}", critic=critic)
    steps = tuple(StepVerdict(step=" ".join(s["step"]).strip(), correct=s["correct"],
                              explanation=" ".join(s["explanation"]).strip()) for s in draft.steps)
    first_wrong = next((i for i, s in enumerate(steps) if s.correct is False), None)
    error = None
    if not text.strip():
        error = "the critique is empty"
    elif not draft.final_seen:
        error = "no 'Correctness of the final answer: Correct | Wrong' line found"
    elif draft.final is None:
        error = f"final verdict {draft.final_raw[:40]!r} is neither Correct nor Wrong"
    return Critique(text=text.strip(), steps=steps, first_wrong_step=first_wrong, final_correct=draft.final,
                    parse_error=error, critic=critic)


SYSTEM_PROMPT = "You are a meticulous teacher who checks solutions step by step."

INSTRUCTIONS = """Check the answer to the question below step by step.
For each step of the answer, repeat the step and judge it, then judge the final answer, using exactly this format:

Step sentence: <the step, copied from the answer>
Correctness of the step: Correct or Wrong
Explanation: <why>
(repeat the three lines above for every step)
Correctness of the final answer: Correct or Wrong
Explanation: <why>

Question:
{question}

Answer:
{answer}
{feedback}"""


class LLMCriticConfig(BaseModel):
    """Settings of :class:`LLMCritic` (the policy itself is passed separately)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sampling: SamplingParams = Field(default_factory=lambda: SamplingParams(max_new_tokens=384),
                                     description="Sampling of the critic's text (n must be 1).")
    system_prompt: str | None = Field(default=SYSTEM_PROMPT, description="System message; None for none.")
    instructions: str = Field(default=INSTRUCTIONS, description="User message template with {question}, {answer}, {feedback}.")
    show_env_feedback: bool = Field(default=False, description="Show the environment's feedback (e.g. a traceback) to the critic.")
    name: str = Field(default="llm", description="Recorded as Critique.critic.")

    @field_validator("sampling")
    @classmethod
    def _one_sample(cls, v: SamplingParams) -> SamplingParams:
        if v.n != 1:
            raise ValueError("the critic writes one critique per answer: sampling.n must be 1")
        return v

    @field_validator("instructions")
    @classmethod
    def _placeholders(cls, v: str) -> str:
        missing = [p for p in ("{question}", "{answer}") if p not in v]
        if missing:
            raise ValueError(f"instructions must contain {' and '.join(missing)} so the critic sees what to judge")
        return v


class LLMCritic:
    """Critiques answers by prompting ``policy`` (any Policy, a registered policy id, or None for ``hf``).

    Example::

        critic = LLMCritic(policy=HFPolicy())
        env = MultiAttempt(make("math/arith-v0"), max_attempts=2, feedback="critic", critic=critic)
    """

    def __init__(self, policy: Policy | str | None = None, sampling: SamplingParams | None = None,
                 system_prompt: str | None = SYSTEM_PROMPT, instructions: str = INSTRUCTIONS,
                 show_env_feedback: bool = False, name: str = "llm", policy_kwargs: dict[str, Any] | None = None):
        try:
            self.config = LLMCriticConfig(sampling=sampling or SamplingParams(max_new_tokens=384),
                                          system_prompt=system_prompt, instructions=instructions,
                                          show_env_feedback=show_env_feedback, name=name)
        except ValidationError as e:
            raise ConfigError(f"LLMCritic: {e}") from e
        if policy is None or isinstance(policy, str):
            from agentloop.registry import make_policy

            policy = make_policy(policy or "hf", **(policy_kwargs or {}))
        if not hasattr(policy, "generate"):
            raise ConfigError(f"LLMCritic: policy must have generate(conversations, sampling), got {type(policy).__name__}.")
        self.policy = policy

    def messages(self, request: CritiqueRequest) -> list[Message]:
        """The conversation shown to the critic for one request (never includes the verdict)."""
        c = self.config
        feedback = f"\nFeedback from running the answer:\n{request.env_feedback}\n" \
            if c.show_env_feedback and request.env_feedback else ""
        prompt = c.instructions.format(question=request.question, answer=request.answer, feedback=feedback)
        return ([system(c.system_prompt)] if c.system_prompt else []) + [user(prompt)]

    def critique(self, requests: Sequence[CritiqueRequest]) -> list[Critique]:
        """One batched generation for all requests; malformed output gives a Critique with parse_error."""
        if not requests:
            return []
        try:
            completions = self.policy.generate([self.messages(r) for r in requests], self.config.sampling)
        except Exception as e:
            raise CriticError(f"LLMCritic: the critic's policy failed to generate ({type(e).__name__}: {e}); "
                              "check the policy (model path, server) it was given.") from e
        if len(completions) != len(requests):
            raise CriticError(f"LLMCritic: the policy returned {len(completions)} completions for {len(requests)} "
                              "requests; it must return one per conversation when n=1.")
        return [parse_critique(c.text, critic=self.config.name) for c in completions]


__all__ = ["INSTRUCTIONS", "SYSTEM_PROMPT", "LLMCritic", "LLMCriticConfig", "parse_critique"]
