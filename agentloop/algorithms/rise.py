"""RISE: recursive introspection (Qu et al. 2024; METHODS.md section 2).

A single-turn task becomes a multi-turn MDP: after a wrong attempt the user turn is
``"The answer is incorrect. Please try again. Here's the question: {question}"`` and the episode
stops at the first correct answer (up to ``max_attempts`` attempts). Every attempt ``a_t`` in state
``s_t`` (the whole conversation before it) becomes a training example whose only trained span is
that final assistant turn (earlier turns are context), weighted by reward-weighted regression
``exp(r / tau)`` (:func:`~agentloop.algorithms.losses.rwr_weights`, tau = 0.4), after one of the
paper's filters:

* ``all`` (default): every attempt;
* ``better``: attempts strictly better than the previous attempt (the first attempt: reward > 0);
* ``best``: per task, the attempts with the task's highest reward;
* ``success``: reward 1 only (RWR weights are then all equal: SFT on successful turns).

Data collection. Self-distillation samples ``samples_per_task`` multi-turn episodes per task from
the learner. Simplification (documented, config-visible): the paper picks the best of N
candidates at *each* state and continues from it; here the N samples are N independent
trajectories and the filter picks among their turns, which needs no branching rollouts. With
``teacher`` set (a policy registry id and kwargs), attempts after the first come from that
policy instead (distillation): the collector is given a policy that routes by turn.
Iterate: each iteration collects with the latest model.

Collection protocol (``collection``, our addition; the paper leaves the unseen-verdict case open):
``oracle`` (default, the paper's) gives RISE's text only after a *wrong* attempt and stops at the
first success, so every second attempt in the data follows a failure: the model learns "after this
text, change the answer". Under the no-oracle evaluation below the same text also follows right
answers, and such a model turns them wrong (measured: ``benchmarks/efficacy.py --cell rise-arith``,
delta c->i 0.7% -> 4.7% after one iteration). ``no_oracle`` collects exactly as held-out evaluation
plays (:meth:`RISE.eval_attempt_settings`: the text after every attempt, all attempts played);
with ``filter: success`` the data are then the right turns in that context: first-attempt
successes, kept right answers (c->c) and corrections (i->c), never a right answer abandoned.

Evaluation (METHODS.md section 2): held-out multi-attempt evaluation runs *without an oracle*:
after every attempt, right or wrong, the user turn is the same RISE text (so the verdict is never
revealed) and the episode runs all its attempts; Acc@tk is then the accuracy of the k-th answer.
:meth:`RISE.eval_attempt_settings` gives the ``MultiAttempt`` keyword arguments for this
(``feedback="none"`` with RISE's template, ``stop_on_success=False``); the loop's evaluation uses
them instead of its generic feedback mode. Binary feedback with stop-at-first-success (the
collection setting) would make later-turn accuracy oracle-stopped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field

from agentloop.algorithms.base import Algorithm, EnvFactory, MethodConfig
from agentloop.config import ComponentRef
from agentloop.training.data import TrainExample, chat_example
from agentloop.types import Episode, Message, SamplingParams, assistant

__all__ = ["RISE", "RISEConfig", "TurnRoutedPolicy", "rise_training_pairs"]

RISE_FEEDBACK = "The answer is incorrect. Please try again. Here's the question: {question}"
Filter = Literal["all", "better", "best", "success"]


TeacherSettings = ComponentRef  # the policy that writes the attempts after the first (RISE distillation)


class RISEConfig(MethodConfig):
    """RISE settings."""

    name: Literal["rise"] = "rise"
    max_attempts: int = Field(default=3, ge=1, le=16, description="Attempts per training episode (stops at the first success).")
    tau: float = Field(default=0.4, gt=0, description="RWR temperature: weights exp(r / tau).")
    filter: Filter = Field(default="all", description="Which attempts become training examples (see the module docstring).")
    feedback_template: str = Field(default=RISE_FEEDBACK, description="User turn after a wrong attempt; may use {question}.")
    collection: Literal["oracle", "no_oracle"] = Field(
        default="oracle", description="oracle: RISE's text only after a wrong attempt, stop at the first success (the "
        "paper's collection); no_oracle: collect as held-out evaluation plays (the text after every attempt, every "
        "attempt played; use with filter: success). See the module docstring.")
    teacher: ComponentRef | None = Field(
        default=None, description="Distillation: the policy producing attempts after the first (None = self-distillation).")


def rise_training_pairs(episodes: Sequence[Episode], filter: Filter) -> list[tuple[list[Message], str, float, str]]:
    """(context messages, attempt, reward, task id) for every attempt the filter keeps."""
    pairs: list[tuple[list[Message], str, float, str]] = []
    by_task: dict[str, list[tuple[list[Message], str, float, str]]] = {}
    for ep in episodes:
        prev = 0.0
        for turn in ep.turns:
            item = (list(turn.observation), turn.action, float(turn.reward), str(ep.task_id))
            keep = (filter in ("all", "best") or (filter == "success" and turn.reward >= 1.0)
                    or (filter == "better" and turn.reward > prev))
            prev = turn.reward
            if keep:
                by_task.setdefault(item[3], []).append(item)
    for items in by_task.values():
        if filter == "best":
            top = max(r for _, _, r, _ in items)
            items = [it for it in items if it[2] == top]
        pairs.extend(items)
    return pairs


class RISE(Algorithm):
    """See the module docstring."""

    objective = "rwr"

    def __init__(self, config: RISEConfig):
        super().__init__(config)
        self._teacher: Any = None

    def collection_policy(self, learner: Any) -> Any:
        """The learner, or the learner for first attempts and the teacher after (distillation)."""
        if self.config.teacher is None:
            return learner
        if self._teacher is None:
            self._teacher = self.config.teacher.make_policy()
        return TurnRoutedPolicy(learner, self._teacher)

    def eval_attempt_settings(self) -> dict[str, Any]:
        """``make`` keywords (all but ``max_attempts``) for held-out multi-attempt evaluation with no oracle.

        The RISE feedback text follows every attempt whatever its verdict (``feedback="none"`` writes
        ``none_template`` formatted with the question), and every attempt runs: ``improve`` builds its
        held-out episodes as ``make(id, max_attempts=eval.max_attempts, **algorithm.eval_attempt_settings())``.
        """
        return {"feedback": "none", "none_template": self.config.feedback_template, "stop_on_success": False}

    def train_env(self, make_env: Any) -> EnvFactory:
        from agentloop.wrappers import MultiAttempt

        c = self.config

        def factory() -> Any:
            env = make_env()
            if c.max_attempts == 1:
                return env
            if c.collection == "no_oracle":
                return MultiAttempt(env, max_attempts=c.max_attempts, **self.eval_attempt_settings())
            return MultiAttempt(env, max_attempts=c.max_attempts, feedback="binary", stop_on_success=True,
                                binary_wrong_template=c.feedback_template)
        return factory

    def examples(self, episodes: Sequence[Episode], tokenizer: Any) -> list[TrainExample]:
        import torch

        from agentloop.algorithms.losses import rwr_weights

        pairs = rise_training_pairs(episodes, self.config.filter)
        if not pairs:
            return []
        weights = rwr_weights(torch.tensor([r for _, _, r, _ in pairs]), tau=self.config.tau).tolist()
        return [chat_example(tokenizer, [*ctx, assistant(action)], train="last", weight=w, group=task)
                for (ctx, action, _, task), w in zip(pairs, weights)]


class TurnRoutedPolicy:
    """First attempts from ``learner``, later attempts from ``teacher`` (RISE distillation)."""

    def __init__(self, learner: Any, teacher: Any):
        self.learner, self.teacher = learner, teacher

    def generate(self, conversations: Sequence[Sequence[Message]], sampling: SamplingParams) -> list[Any]:
        first = [i for i, c in enumerate(conversations) if not any(m.role == "assistant" for m in c)]
        later = [i for i in range(len(conversations)) if i not in set(first)]
        out: list[Any] = [None] * (len(conversations) * sampling.n)
        for policy, idx in ((self.learner, first), (self.teacher, later)):
            if not idx:
                continue
            comps = policy.generate([conversations[i] for i in idx], sampling)
            for k, i in enumerate(idx):
                out[i * sampling.n:(i + 1) * sampling.n] = comps[k * sampling.n:(k + 1) * sampling.n]
        return out
