"""What every method shares: the method-config base, the Algorithm interface, and rollout collection.

Collection is in one place (:class:`Collector`): an algorithm asks for :class:`EpisodeSpec` s
(which task, which sample, which wrapper stack), the collector skips those already recorded in
the run directory, runs the rest through the :class:`~agentloop.rollout.RolloutEngine` (batched
generation across episodes), and appends each episode to ``episodes.jsonl`` as it finishes, so a
killed run loses no finished episode. Episodes come back in spec order.

An :class:`Algorithm` subclass implements ``examples`` (episodes -> training examples) and usually
``train_env`` or ``specs`` (what to collect). Every other hook the improve loop calls is declared on
:class:`Algorithm` with a default that does nothing special, so a method overrides only what it changes:
``setup`` (e.g. add tokens), ``prepare`` (run-level state), ``condition`` (edit the conversation the
policy sees, e.g. LeTI's reward token), ``collection_policy`` (who generates during collection, e.g.
RISE's teacher), ``make_critic`` (a critic for collection, e.g. the critique loop's), ``branch_specs``
(a second round of episodes started from states the first reached, e.g. RISE's best-of-N),
``eval_attempt_settings`` (the method's own held-out feedback text) and ``stats``. The method's
config validates itself against the whole improve config in :meth:`MethodConfig.check`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import gymnasium as gym
from pydantic import BaseModel, ConfigDict, Field, model_validator

from agentloop.protocols import Critic, Policy
from agentloop.rollout import Job, RolloutConfig, RolloutEngine
from agentloop.runs import episode_key
from agentloop.types import Episode, Message, SamplingParams
from agentloop.wrappers import PolicyWrapper

__all__ = ["Algorithm", "Collector", "ConditionedPolicy", "EnvFactory", "EpisodeSpec", "MethodConfig", "TaskSet", "usable"]

EnvFactory = Callable[[], gym.Env]


def usable(episodes: Sequence[Episode]) -> list[Episode]:
    """Episodes that can become training data: at least one turn and no recorded error."""
    return [ep for ep in episodes if ep.turns and ep.error is None]


class MethodConfig(BaseModel):
    """Fields every method has. Subclasses add their own and fix ``name``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    samples_per_task: int = Field(default=4, ge=1, description="Episodes sampled per training task per iteration.")
    data: Literal["iteration", "union"] = Field(
        default="iteration", description="Train on this iteration's data only, or on the union of all iterations so far.")
    restart_from_base: bool = Field(
        default=False, description="Fine-tune from the starting model each iteration (critique-loop paper) "
        "instead of continuing from the last checkpoint.")

    def check(self, improve_config: Any) -> None:
        """Refuse an improve config this method cannot run (raise ``ValueError`` saying how to fix it), e.g.
        LeTI with a LoRA adapter. Called by ``ImproveConfig``'s validation with the whole config, so a
        method's cross-section rules live with the method (default: nothing to check)."""

    @model_validator(mode="before")
    @classmethod
    def _renamed_attempts(cls, data: Any) -> Any:
        """The number of attempts is ``max_attempts`` everywhere; RISE's old ``turns`` and the critique loop's
        old ``rounds`` (= max_attempts - 1) are refused with the new spelling."""
        if not isinstance(data, dict) or "max_attempts" not in cls.model_fields:
            return data
        for old, shift in (("turns", 0), ("rounds", 1)):
            if old in data:
                value = f"{int(data[old]) + shift}" if isinstance(data[old], int) else f"{old} + {shift}"
                raise ValueError(f"method.{old} was renamed: write max_attempts: {value}")
        return data


@dataclass(frozen=True)
class TaskSet:
    """The tasks of one split: how to build the env, and which task indices to use."""

    make_env: Callable[..., gym.Env]
    indices: tuple[int, ...]
    name: str = "train"


@dataclass(frozen=True)
class EpisodeSpec:
    """One episode to collect: a stable key (for resume), the env factory, and the reset options."""

    key: str
    env: EnvFactory
    options: dict[str, Any]
    seed: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    replay: tuple[Any, ...] = ()  # recorded completions played first (rollout.Job.replay), e.g. a shared first attempt


class ConditionedPolicy(PolicyWrapper):
    """A policy whose conversations are rewritten by ``condition`` before generation (LeTI, FAFT).

    Every other ``generate`` argument (``tools`` included) passes through (:class:`PolicyWrapper`).
    """

    def __init__(self, policy: Policy, condition: Callable[[Sequence[Message]], list[Message]]):
        super().__init__(policy)
        self.condition = condition

    def conversations(self, conversations: Sequence[Sequence[Message]]) -> list[list[Message]]:
        return [self.condition(c) for c in conversations]


class Algorithm:
    """Base class of every method (see the module docstring)."""

    objective: ClassVar[str] = "sft"

    def __init__(self, config: Any):
        self.config = config

    # -- hooks --------------------------------------------------------------------------------------
    def setup(self, model: Any, tokenizer: Any) -> None:
        """Prepare model and tokenizer before training starts (default: nothing)."""

    def prepare(self, tasks: TaskSet, run_dir: Any = None) -> Any:
        """Fix run-level state before the first evaluation and collection (fresh or resumed run), e.g.
        FAFT's inference feedback text; state that must survive a resume is saved in ``run_dir``
        (default: nothing)."""
        return None

    def eval_attempt_settings(self) -> dict[str, Any] | None:
        """``make`` keywords (feedback, templates, stop_on_success) for held-out multi-attempt evaluation,
        when the method has its own protocol (RISE: its feedback text after every attempt, no oracle
        stop); None = the ``eval`` section's feedback (default)."""
        return None

    def condition(self, conversation: Sequence[Message]) -> list[Message]:
        """The conversation the policy actually sees (default: unchanged)."""
        return list(conversation)

    def collection_policy(self, learner: Policy) -> Policy:
        """The policy that generates the collection episodes, given the learner (the conditioned policy of
        the model being trained); e.g. RISE routes later attempts to a teacher (default: the learner)."""
        return learner

    def branch_policy(self, learner: Policy) -> Policy:
        """The policy that generates the :meth:`branch_specs` episodes (default: :meth:`collection_policy`'s);
        e.g. RISE's fresh candidates, sampled as first attempts at the collection temperature."""
        return self.collection_policy(learner)

    def make_critic(self, policy: Policy) -> Critic | None:
        """The critic collection episodes are critiqued by, given the generation policy (an ``llm`` critic
        may critique with it); e.g. the critique loop's (default: None, no critic)."""
        return None

    def train_env(self, make_env: Callable[..., gym.Env]) -> EnvFactory:
        """The environment (with wrappers) collection episodes run in (default: the plain env)."""
        return make_env

    def specs(self, iteration: int, tasks: TaskSet) -> list[EpisodeSpec]:
        """The episodes to collect for training at ``iteration`` (default: samples_per_task per task)."""
        env = self.train_env(tasks.make_env)
        return [
            EpisodeSpec(key=episode_key("collect", task=i, sample=j, iteration=iteration), env=env, options={"index": i},
                        metadata={"phase": "collect", "iteration": iteration, "task_index": i, "sample": j})
            for i in tasks.indices for j in range(self.config.samples_per_task)
        ]

    def branch_specs(self, iteration: int, tasks: TaskSet, episodes: Sequence[Episode]) -> list[EpisodeSpec]:
        """Episodes to collect from states the collected ``episodes`` reached (e.g. RISE's best-of-N at each
        turn), run through the same collector and policy; ``examples`` then gets both, the branches tagged
        ``metadata["phase"] == "branch"`` (default: none)."""
        return []

    def examples(self, episodes: Sequence[Episode], tokenizer: Any) -> list[Any]:
        """The training examples of ``episodes`` (collected and branch episodes of this iteration, or of every
        iteration so far with ``data: union``); each episode's ``metadata["iteration"]`` says when it was
        collected. Every method implements this."""
        raise NotImplementedError(f"{type(self).__name__} must implement examples(episodes, tokenizer)")

    def stats(self, episodes: Sequence[Episode]) -> dict[str, float]:
        """Training-reward figures of the collected episodes (logged per iteration)."""
        done = [e for e in episodes if e.turns]
        if not done:
            return {"train_success": 0.0, "train_episodes": 0}
        first = [bool(e.turns[0].success) for e in done]
        return {"train_success": sum(e.success for e in done) / len(done), "train_success_t1": sum(first) / len(done),
                "train_episodes": len(done), "train_errors": sum(e.error is not None for e in episodes)}


class Collector:
    """Runs episode specs with resume-by-key (see the module docstring)."""

    def __init__(self, policy: Policy, sampling: SamplingParams, *, run: Any = None, critic: Critic | None = None,
                 max_concurrency: int = 64, step_workers: int = 1,
                 progress: Callable[[int, int], None] | None = None,
                 engine_factory: Callable[[Policy, Critic | None, RolloutConfig], Any] | None = None):
        # engine_factory: an engine with the same run(jobs, on_episode) (e.g. a RayRolloutEngine) instead
        # of the single-process RolloutEngine; it gets this collection's policy, critic and settings.
        config = RolloutConfig(sampling=sampling, max_concurrency=max_concurrency, step_workers=step_workers)
        self.engine = (engine_factory or RolloutEngine)(policy, critic, config)
        self.run = run
        self.progress = progress

    def collect(self, specs: Sequence[EpisodeSpec], recorded: dict[str, Episode] | None = None) -> list[Episode]:
        """Episodes for ``specs`` in order: recorded ones reused, the rest run and appended as they finish."""
        recorded = recorded if recorded is not None else {}
        todo = [s for s in specs if s.key not in recorded]
        done = len(specs) - len(todo)
        if self.progress is not None:
            self.progress(done, len(specs))
        new: dict[str, Episode] = {}

        def finished(ep: Episode) -> None:
            nonlocal done
            key = str(ep.metadata["run_key"])
            new[key] = ep
            if self.run is not None:
                self.run.append_episode(ep, key=key)
            done += 1
            if self.progress is not None:
                self.progress(done, len(specs))

        jobs = [Job(env=s.env, seed=s.seed, options=s.options, metadata={**s.metadata, "run_key": s.key},
                    replay=s.replay) for s in todo]
        self.engine.run(jobs, on_episode=finished)
        return [recorded.get(s.key) or new[s.key] for s in specs]
