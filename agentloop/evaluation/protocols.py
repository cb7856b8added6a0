"""Evaluation protocols: which text the model sees between attempts, and after which answers.

A protocol is "which text, after which answers". The same trained model answers the *text* it was
trained on, not the verdict behind it, so the two halves are reported together:

==========  ==========================================  ====================  ===================
protocol    text between attempts                       after which answers   episode stops
==========  ==========================================  ====================  ===================
retry       the method's own feedback text (RISE's),    every answer          never (all K played)
            else a fixed instruction (SCoRe's)
binary      "incorrect" in the method's own feedback    wrong answers         at a success
            text where it has one (RISE's), else        (oracle-stopped)
            "Your answer is incorrect. Please try
            again."
env         the environment's own feedback: the         wrong answers         at a success
            failing assert with the returned value,     (oracle-stopped)
            the traceback, the checker's text (never
            the answer)
critic      a critic's critique (``critic:verifier``,   wrong answers         at a success
            ``critic:llm``, or the config's critic)     (oracle-stopped)
none        "Please answer the question again."         every answer          never
oracle      the answer-revealing feedback               wrong answers         at a success
==========  ==========================================  ====================  ===================

Protocols that stop at a success use the verifier's verdict (an oracle): their later-attempt
figures are "oracle-stopped" (:attr:`EvalProtocol.oracle_stopped`) and must be reported as such.
``retry`` and ``none`` reveal nothing and play every attempt.

Several protocols are evaluated from one shared first attempt: the first attempt of every episode
is generated once, then each protocol's episode replays it (the rollout engine's ``Job.replay``:
the environment steps the recorded answer again, nothing is generated) and goes on from there. The
protocols are therefore compared on identical first attempts, and the extra cost of a protocol is
only its later turns.

Example::

    EvalProtocol.parse("binary").attempt_kwargs(method_text=None)
    # {'feedback': 'binary', 'stop_on_success': True}
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agentloop.config import ComponentRef
from agentloop.types import FeedbackMode

__all__ = ["EvalProtocol", "parse_protocols"]

_STOPS = {"none": False, "retry": False, "binary": True, "env": True, "oracle": True, "critic": True}


class EvalProtocol(BaseModel):
    """One evaluation protocol (module docstring). Written in configs as a name (``binary``,
    ``critic:verifier``) or a mapping ``{name, feedback, critic, critique_all}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Label in metrics and reports, e.g. 'binary' or 'critic:verifier'.")
    feedback: FeedbackMode = Field(description="Which text follows an answer (MultiAttempt's feedback mode).")
    critic: ComponentRef | None = Field(default=None, description="feedback=critic: the critic ({id, kwargs}); "
                                        "None: the evaluation's own critic setting.")
    critique_all: bool = Field(default=False, description="feedback=critic without an oracle: every answer is "
                               "critiqued and the episode stops when the critic approves (not oracle-stopped).")

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, data: Any) -> Any:
        if isinstance(data, str):
            return cls.spec_of(data)
        return data

    @model_validator(mode="after")
    def _check(self) -> EvalProtocol:
        if self.critique_all and self.feedback != "critic":
            raise ValueError(f"protocol {self.name}: critique_all applies to feedback=critic only")
        return self

    @staticmethod
    def spec_of(text: str) -> dict[str, Any]:
        """``'binary'`` -> its fields; ``'critic:verifier'`` names the critic; ``'critic-all:llm'`` critiques
        every answer without an oracle."""
        name = text.strip()
        head, _, critic = name.partition(":")
        all_ = head == "critic-all"
        mode = "critic" if all_ else head
        if mode not in _STOPS:
            raise ValueError(f"unknown protocol {name!r}; protocols: retry, binary, env, critic, critic:verifier, "
                             "critic:llm, critic-all:llm, none, oracle")
        if critic and mode != "critic":
            raise ValueError(f"protocol {name!r}: only critic protocols name a critic (critic:verifier)")
        return {"name": name, "feedback": mode, "critic": {"id": critic} if critic else None, "critique_all": all_}

    @classmethod
    def parse(cls, text: str) -> EvalProtocol:
        return cls.model_validate(cls.spec_of(text))

    @property
    def oracle_stopped(self) -> bool:
        """The episode ends at the first success (the verifier's verdict is used)."""
        return _STOPS[self.feedback] and not self.critique_all

    def attempt_kwargs(self, method_text: str | None = None) -> dict[str, Any]:
        """The ``make``/``MultiAttempt`` keywords (all but ``max_attempts``) that play this protocol.

        ``method_text``: the trained method's own feedback text (RISE's), used by ``retry`` (after every
        answer) and ``binary`` (after wrong answers) so the model sees the text it was trained on.
        """
        kw: dict[str, Any] = {"feedback": self.feedback, "stop_on_success": self.oracle_stopped}
        if self.feedback == "retry" and method_text:
            kw.update(feedback="none", none_template=method_text)
        elif self.feedback == "binary" and method_text:
            kw["binary_wrong_template"] = method_text
        if self.critique_all:
            kw["critique_all"] = True
        return kw


def parse_protocols(value: Any) -> list[EvalProtocol]:
    """A comma-separated string or a list of names/mappings -> protocols (names must be unique)."""
    items = [s for s in value.split(",") if s.strip()] if isinstance(value, str) else list(value)
    out = [p if isinstance(p, EvalProtocol) else EvalProtocol.model_validate(p) for p in items]
    names = [p.name for p in out]
    if len(set(names)) != len(names):
        raise ValueError(f"protocols are listed twice: {names}; list each once")
    return out
