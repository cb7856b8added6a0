"""Held-out evaluation inside a training job (``agentloop improve``): the episodes and reports of ``agentloop eval``.

:func:`first_attempt_specs` and :func:`protocol_specs` list the episodes of one evaluation, built
through the registry as ``agentloop eval`` builds its jobs and keyed by
:func:`~agentloop.runs.episode_key`, so a resumed job skips what is recorded. With two or more
attempts the first attempt of every task is generated once (``eval|first``) and each protocol's
episode replays it (``EpisodeSpec.replay``) before playing its later attempts, so the protocols of
one evaluation are compared on identical first attempts (:mod:`agentloop.evaluation.protocols`).

:func:`held_out_result` turns the finished episodes into a :class:`HeldOutResult`: per protocol the
:class:`~agentloop.evaluation.selfcorrection.SelfCorrection` every evaluation reports and the
per-task attempts (:class:`~agentloop.evaluation.selfcorrection.ProblemAttempts`) that the
before/after :class:`~agentloop.evaluation.selfcorrection.Gains` are paired on.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agentloop.evaluation.protocols import EvalProtocol
from agentloop.evaluation.selfcorrection import Gains, ProblemAttempts, SelfCorrection, problems_of, self_correction
from agentloop.runs import episode_key
from agentloop.types import Episode

__all__ = ["HeldOutResult", "ProtocolComparison", "compare_protocols", "first_attempt_specs", "held_out_result",
           "run_held_out",
           "protocol_specs"]


class HeldOutResult(BaseModel):
    """One held-out evaluation of a training job: a report and the per-task attempts under each protocol."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    iteration: int = Field(ge=0, description="0 = the starting model.")
    metric: Literal["t1", "final"] = Field(description="The attempt the run's headline gain is about: first or last.")
    protocols: dict[str, SelfCorrection] = Field(description="Per protocol (the headline protocol first): its report.")
    problems: dict[str, list[ProblemAttempts]] = Field(default_factory=dict, description="Per protocol, per task in "
                                                       "task order: the attempts (gains are paired on these).")

    @property
    def protocol(self) -> str:
        """The headline protocol (the first evaluated)."""
        return next(iter(self.protocols))

    @property
    def metrics(self) -> SelfCorrection:
        """The headline protocol's report."""
        return self.protocols[self.protocol]

    @property
    def accuracy(self) -> float:
        """The headline accuracy: Acc@t1, or Acc@tK for metric 'final'."""
        return float(self.metrics.accuracy(1 if self.metric == "t1" else -1) or 0.0)


class ProtocolComparison(BaseModel):
    """Under one protocol: the starting model's report, the trained model's, and the paired gains."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    before: SelfCorrection
    after: SelfCorrection
    gains: Gains


def _spec(key: str, env_id: str, env_kwargs: dict[str, Any], make_kwargs: dict[str, Any], i: int, iteration: int,
          replay: tuple[Any, ...] = (), **metadata: Any) -> Any:
    from agentloop.algorithms.base import EpisodeSpec
    from agentloop.registry import make

    def env() -> Any:
        return make(env_id, **env_kwargs, **make_kwargs)

    return EpisodeSpec(key=key, env=env, options={"index": i}, replay=replay,
                       metadata={"phase": "eval", "iteration": iteration, "task_index": i, **metadata})


def first_attempt_specs(env_id: str, env_kwargs: dict[str, Any], indices: Sequence[int], max_attempts: int,
                        iteration: int) -> list[Any]:
    """The episodes generated from scratch: each task's whole episode (one attempt) or its shared first attempt."""
    if max_attempts == 1:
        return [_spec(episode_key("eval", task=i, iteration=iteration), env_id, env_kwargs, {"max_attempts": 1}, i,
                      iteration) for i in indices]
    return [_spec(episode_key("eval|first", task=i, iteration=iteration), env_id, env_kwargs, {"max_attempts": 1}, i,
                  iteration, mode="first") for i in indices]


def protocol_specs(env_id: str, env_kwargs: dict[str, Any], firsts: Sequence[Episode], protocol: EvalProtocol,
                   make_kwargs: dict[str, Any], iteration: int) -> list[Any]:
    """``protocol``'s episodes, one per recorded first attempt (``firsts``, in task order): a spec that replays
    it, or, for a first attempt that errored, the decided episode itself (the same error; nothing to play)."""
    from agentloop.evaluation.evaluate import replay_of

    out: list[Any] = []
    for first in firsts:
        i = int(first.metadata["task_index"])
        key = episode_key(f"eval|{protocol.name}", task=i, iteration=iteration)
        md = {"protocol": protocol.name, "oracle_stopped": protocol.oracle_stopped}
        if first.error is not None or not first.turns:
            out.append(first.model_copy(update={"id": os.urandom(8).hex(), "metadata": {
                **first.metadata, **md, "mode": "sequential", "run_key": key}}))
        else:
            out.append(_spec(key, env_id, env_kwargs, make_kwargs, i, iteration, replay=replay_of(first), **md))
    return out


def held_out_result(by_protocol: dict[str, Sequence[Episode]], max_attempts: int, metric: Literal["t1", "final"],
                    iteration: int, seed: int = 0) -> HeldOutResult:
    """The :class:`HeldOutResult` of one evaluation's episodes per protocol (each in task order)."""
    reports, problems = {}, {}
    for name, episodes in by_protocol.items():
        rows = problems_of(episodes, max_attempts)
        stopped = bool(episodes and episodes[0].metadata.get("oracle_stopped"))
        reports[name] = self_correction(rows, max_attempts, protocol=name, oracle_stopped=stopped, seed=seed)
        problems[name] = rows
    return HeldOutResult(iteration=iteration, metric=metric, protocols=reports, problems=problems)


#: ``collect(specs, sampling, batch_size, label, critic) -> episodes``: runs specs, reusing recorded episodes.
Collect = Callable[[Sequence[Any], Any, int, str, Any], list[Episode]]


def run_held_out(settings: Any, env: Any, indices: Sequence[int], iteration: int, collect: Collect,
                 record: Callable[[Episode], None], *, method_settings: dict[str, Any] | None = None,
                 actor: Any = None) -> HeldOutResult:
    """The held-out evaluation of an improve run under every protocol of ``settings`` (the ``eval`` section;
    ``env`` the ``env`` section), branching from one shared first attempt per task.

    ``collect`` runs episode specs (greedy, ``settings.batch_size`` at a time); ``record`` keeps an episode
    a protocol finished without generating (a first attempt that already ends it); ``method_settings``: the
    method's ``eval_attempt_settings()`` (its feedback text, RISE's); ``actor``: the policy an ``llm``
    critic without its own policy critiques with."""
    from agentloop.types import SamplingParams

    c = settings
    sampling = SamplingParams(temperature=0.0, max_new_tokens=c.max_new_tokens, stop=c.stop)
    label = f"eval    iter {iteration}"
    firsts = collect(first_attempt_specs(env.id, env.split_kwargs("eval"), indices, c.max_attempts, iteration),
                     sampling, c.batch_size, label, None)
    by_protocol: dict[str, list[Episode]] = {}
    if c.max_attempts == 1:
        by_protocol[c.protocol_list()[0].name] = firsts
    else:
        # the method's own feedback text (RISE's): retry shows it after every answer, binary after wrong ones
        c = c.model_copy(update={"feedback_text": c.feedback_text or (method_settings or {}).get("none_template")})
        for protocol in c.protocol_list():
            items = protocol_specs(env.id, env.split_kwargs("eval"), firsts, protocol, c.protocol_kwargs(protocol),
                                   iteration)
            for ep in items:
                if isinstance(ep, Episode):
                    record(ep)
            ref = protocol.critic or c.critic
            critic = ref.make_critic(actor) if protocol.feedback == "critic" and ref is not None else None
            specs = [x for x in items if not isinstance(x, Episode)]
            played = iter(collect(specs, sampling, c.batch_size, f"{label} {protocol.name}", critic))
            by_protocol[protocol.name] = [x if isinstance(x, Episode) else next(played) for x in items]
    return held_out_result(by_protocol, c.max_attempts, c.metric, iteration)


def compare_protocols(first: HeldOutResult, final: HeldOutResult, seed: int = 0) -> dict[str, ProtocolComparison]:
    """Per protocol both evaluations share: before, after and the paired gains (same tasks)."""
    from agentloop.evaluation.selfcorrection import paired_gains

    out = {}
    for name, before in first.protocols.items():
        if name in final.protocols and len(first.problems.get(name, [])) == len(final.problems.get(name, [])):
            out[name] = ProtocolComparison(before=before, after=final.protocols[name],
                                           gains=paired_gains(first.problems[name], final.problems[name],
                                                              before.max_attempts, seed=seed))
    return out
