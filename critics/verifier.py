"""`VerifierCritic`: the environment's own feedback and verdict, written as a critique (the oracle critic).

It calls no model. The critique uses the final-answer part of the step-level format
(docs/methods.md section 4), so :func:`agentloop.critics.llm.parse_critique` reads it back::

    Correctness of the final answer: Wrong
    Explanation: <the environment's feedback, e.g. a failing test or traceback>

The verdict is ``CritiqueRequest.success``. ``MultiAttempt(feedback="critic")`` fills it in its oracle
mode, where only wrong answers are critiqued; when a request carries no verdict (the no-oracle
``critique_all`` mode withholds it) the critique's ``final_correct`` is None and only the feedback is
shown. Not covered: step-level verdicts (environments do not say which step went wrong).
"""

from __future__ import annotations

from collections.abc import Sequence

from agentloop.types import Critique, CritiqueRequest

_VERDICT = {True: "Correct", False: "Wrong"}


class VerifierCritic:
    """Turns ``CritiqueRequest.env_feedback`` (and ``success``) into a :class:`Critique`.

    Example::

        env = MultiAttempt(make("code/mbpp-v0"), max_attempts=3, feedback="critic", critic=VerifierCritic())
    """

    def __init__(self, wrong_default: str = "The answer is incorrect.", right_default: str = "The answer is correct.",
                 name: str = "verifier"):
        self.wrong_default = wrong_default
        self.right_default = right_default
        self.name = name

    def critique_one(self, request: CritiqueRequest) -> Critique:
        feedback = (request.env_feedback or "").strip()
        verdict = request.success
        if verdict is None:
            if not feedback:
                return Critique(text="", critic=self.name, parse_error=(
                    "the request has neither environment feedback nor a verdict: VerifierCritic needs an environment "
                    "that writes info['feedback'] (or a request with success set)"))
            return Critique(text=f"Explanation: {feedback}", critic=self.name)
        explanation = feedback or (self.right_default if verdict else self.wrong_default)
        text = f"Correctness of the final answer: {_VERDICT[verdict]}\nExplanation: {explanation}"
        return Critique(text=text, final_correct=verdict, critic=self.name)

    def critique(self, requests: Sequence[CritiqueRequest]) -> list[Critique]:
        return [self.critique_one(r) for r in requests]


__all__ = ["VerifierCritic"]
