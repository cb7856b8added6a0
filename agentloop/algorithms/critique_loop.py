"""Critique-in-the-loop self-training (Xi et al. 2024; docs/methods.md section 4).

Per iteration: the actor samples ``samples_per_task`` answers per question inside
``CritiqueInTheLoop(max_attempts, oracle=True)``: a correct first answer ends the episode; a wrong one is
critiqued by the critic and refined by the actor (up to ``max_attempts - 1`` times). Training set: the
correct first answers plus the correct refinements that pass the shortcut check (the refinement
must show its work: at least ``min_work_chars`` characters beyond the final answer line and at
least one line of working), each trained as an answer to the *original* question (prompt ->
solution, reply-only loss; the reply is the ids the actor sampled, see
:mod:`agentloop.training.data`). ``restart_from_base: true`` (the paper's choice, default here)
fine-tunes the starting model each iteration on the union of all iterations' data.

Critic. ``critic.id`` is a critic registry id: ``verifier`` (grounded in the environment's
feedback) or ``llm`` (the step-level prompted critic; with no policy given it uses the actor's
current model). Critic training path (``train_critic: true``, llm critic only): Monte Carlo
filtering makes every critique whose refinement succeeded a positive example (critic prompt ->
critique text), trained into the same model that plays the actor (one model, two roles); the rest
are negatives and are counted, not trained on. Not covered: a separately trained critic model.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field

from agentloop.algorithms.base import Algorithm, EnvFactory, MethodConfig, usable
from agentloop.config import ComponentRef
from agentloop.training.data import TrainExample, chat_example, reply_example, turn_example
from agentloop.types import CritiqueRequest, Episode, assistant

__all__ = ["CritiqueLoop", "CritiqueLoopConfig", "critic_examples", "shows_work"]


class CritiqueLoopConfig(MethodConfig):
    """Critique-in-the-loop settings."""

    name: Literal["critique_loop"] = "critique_loop"
    max_attempts: int = Field(default=2, ge=2, le=9, description="Attempts per episode: the first answer plus one "
                              "critique-and-refine round per further attempt.")
    critic: ComponentRef = Field(default_factory=lambda: ComponentRef(id="verifier"),
                                 description="The critic: {id: verifier | llm | a plugin's, kwargs: {...}}; an llm critic "
                                 "without a policy kwarg critiques with the actor.")
    min_work_chars: int = Field(default=8, ge=0, description="Shortcut check: characters of working a refinement needs.")
    train_critic: bool = Field(default=False, description="Also train the (llm) critic on critiques that led to a fix.")
    restart_from_base: bool = Field(default=True, description="Paper: fine-tune the starting model each iteration.")
    data: Literal["iteration", "union"] = Field(default="union", description="Paper: the union of all iterations.")


# An arithmetic operation between two numbers: "12 + 7", "5 x 3", "-12 - 7", "20/4", "3*(2". A sign
# ("-19") or a letter x ("x = 19", "next") is not one.
_OPERATION = re.compile(r"\d\s*(?:[-+*/\u00d7\u00f7^]|x(?=\s*[-(]?\d))\s*[-(]?\s*\d")


def shows_work(text: str, min_chars: int) -> bool:
    """The shortcut check: the solution has working beyond its final answer line.

    A multi-line solution needs ``min_chars`` characters before its last (answer) line. A one-line
    solution shows work only if it writes an arithmetic operation between two numbers (e.g.
    "12 + 7 = 19, so the answer is 19") and is longer than ``min_chars``; a signed answer such as
    "Answer: -19" does not.
    """
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    working = "\n".join(lines[:-1]) if len(lines) > 1 else ""
    if not working and len(lines) == 1:
        working = lines[0] if _OPERATION.search(lines[0]) and len(lines[0]) > min_chars else ""
    return len(working.strip()) >= min_chars


def critic_examples(episodes: Sequence[Episode], critic: Any, tokenizer: Any) -> tuple[list[TrainExample], int]:
    """Positive critic examples (critique followed by a successful attempt) and the number of negatives."""
    positives, negatives = [], 0
    for ep in episodes:
        for turn, nxt in zip(ep.turns, ep.turns[1:]):
            if turn.critique is None or turn.critique.parse_error is not None:
                continue
            if not nxt.success:
                negatives += 1
                continue
            question = next((m.content for m in turn.observation if m.role == "user"), "")
            req = CritiqueRequest(question=question, answer=turn.action, messages=tuple(turn.observation),
                                  env_feedback=str(turn.info.get("feedback", "")) or None)
            msgs = [*critic.messages(req), assistant(turn.critique.text)]
            positives.append(chat_example(tokenizer, msgs, group=ep.task_id, role="critic"))
    return positives, negatives


class CritiqueLoop(Algorithm):
    """See the module docstring."""

    objective = "sft"

    def __init__(self, config: CritiqueLoopConfig):
        super().__init__(config)
        self.critic: Any = None

    def make_critic(self, actor_policy: Any) -> Any:
        self.critic = self.config.critic.make_critic(actor_policy)
        return self.critic

    def train_env(self, make_env: Any) -> EnvFactory:
        from agentloop.wrappers import CritiqueInTheLoop

        max_attempts = self.config.max_attempts

        def factory() -> Any:
            return CritiqueInTheLoop(make_env(), critic=None, max_attempts=max_attempts, oracle=True)
        return factory

    def examples(self, episodes: Sequence[Episode], tokenizer: Any) -> list[TrainExample]:
        out = []
        for ep in usable(episodes):
            prompt = list(ep.turns[0].observation)
            for t, turn in enumerate(ep.turns):
                if not turn.success:
                    continue
                # A first answer trains exactly as sampled; a refinement's sampled ids are trained as an
                # answer to the original question (a context the policy did not see: rendered).
                if t == 0:
                    out.append(turn_example(tokenizer, turn, group=ep.task_id, refined=False))
                elif shows_work(turn.action, self.config.min_work_chars):
                    out.append(reply_example(tokenizer, prompt, turn, group=ep.task_id, refined=True))
                break
        if self.config.train_critic and self.critic is not None and hasattr(self.critic, "messages"):
            out.extend(critic_examples(episodes, self.critic, tokenizer)[0])
        return out
