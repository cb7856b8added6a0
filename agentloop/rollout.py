"""The rollout engine: many environments against one policy (and critic), batched turn by turn.

Each round, every active episode that waits for the actor contributes its observation to one
``policy.generate`` call; every episode that waits for a critique contributes to one
``critic.critique`` call. At most ``max_concurrency`` episodes are live at once; environments step
in a thread pool of ``step_workers`` (useful when steps run code in a sandbox).

Nothing that goes wrong in one episode stops the batch: an environment that raises in ``reset`` or
``step``, a policy that fails for one conversation, a critic that fails: each is recorded on that
episode as an :class:`~agentloop.types.EpisodeError` with the stage where it happened, and the
other episodes carry on. An unparseable action is the environment's verdict
(``info["parse_error"]``), recorded on the turn.

Example::

    episodes = rollout([Job(env="math/arith-v0", seed=s) for s in range(8)], policy)
"""

from __future__ import annotations

import traceback as tb
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
from pydantic import BaseModel, ConfigDict, Field

from agentloop.errors import ConfigError
from agentloop.protocols import Critic, Policy, accepts_tools
from agentloop.types import (
    Completion,
    Critique,
    CritiqueRequest,
    Episode,
    EpisodeError,
    ErrorStage,
    Message,
    SamplingParams,
    Turn,
)
from agentloop.wrappers import build_turn, final_messages

EnvSource = str | gym.Env | Callable[[], gym.Env]

#: Reset-info key of an environment that wants its tool schemas rendered by the policy's chat
#: template (``tools=``) instead of written into the messages; see ``Policy``.
RENDER_TOOLS_KEY = "render_tools"


class RolloutConfig(BaseModel):
    """Settings of the rollout engine."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sampling: SamplingParams = Field(default_factory=SamplingParams, description="Actor sampling settings (n must be 1).")
    max_concurrency: int = Field(default=64, ge=1, description="Live episodes at once (= the largest generation batch).")
    step_workers: int = Field(default=1, ge=1, description="Threads stepping environments (1 = in the calling thread).")
    max_turns: int = Field(default=64, ge=1, description="Safety cap: an episode still running after this many actions is truncated.")

    def model_post_init(self, _: Any) -> None:
        if self.sampling.n != 1:
            raise ConfigError(
                "RolloutConfig.sampling.n must be 1: each episode samples one action per turn. "
                "Run more episodes (more Jobs with other seeds) to get several samples per task."
            )


@dataclass(frozen=True)
class Job:
    """One episode to run: an environment (registered id, instance or factory), a seed and reset options.

    ``make_kwargs`` are passed to ``agentloop.make`` when ``env`` is an id (e.g. max_attempts, feedback).
    """

    env: EnvSource
    seed: int | None = None
    options: dict[str, Any] | None = None
    make_kwargs: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class _Slot:
    index: int
    job: Job
    env_id: str
    env: gym.Env | None = None
    obs: list[Message] = field(default_factory=list)
    turns: list[Turn] = field(default_factory=list)
    task_id: str | None = None
    request: CritiqueRequest | None = None
    tools: list[dict[str, Any]] | None = None
    error: EpisodeError | None = None
    done: bool = False


def _error(stage: ErrorStage, exc: BaseException, turn: int | None) -> EpisodeError:
    return EpisodeError(stage=stage, type=type(exc).__name__, message=str(exc)[:2000], turn=turn,
                        traceback="".join(tb.format_exception(exc))[-4000:])


def _env_id(job: Job, env: gym.Env | None) -> str:
    if isinstance(job.env, str):
        return job.env
    spec = getattr(env.unwrapped, "agentloop_spec", None) if env is not None else None
    if spec is not None:
        return spec.id
    return type(env.unwrapped).__name__ if env is not None else "unknown"


def _build_env(job: Job) -> gym.Env:
    from agentloop.registry import make

    if isinstance(job.env, str):
        return make(job.env, **job.make_kwargs)
    if isinstance(job.env, gym.Env):
        return job.env
    return job.env()


class RolloutEngine:
    """Runs jobs to completion; see the module docstring. Reusable across calls."""

    def __init__(self, policy: Policy, critic: Critic | None = None, config: RolloutConfig | None = None):
        if not hasattr(policy, "generate"):
            raise ConfigError(f"policy must have a generate(conversations, sampling) method, got {type(policy).__name__}.")
        self.policy = policy
        self.policy_takes_tools = accepts_tools(policy)
        self.critic = critic
        self.config = config or RolloutConfig()

    # -- public ---------------------------------------------------------------------------------
    def run(self, jobs: Iterable[Job], on_episode: Callable[[Episode], None] | None = None) -> list[Episode]:
        """Run every job; returns the episodes in job order. ``on_episode`` sees each as it finishes."""
        queue = deque(enumerate(jobs))
        results: dict[int, Episode] = {}
        active: list[_Slot] = []
        pool = ThreadPoolExecutor(self.config.step_workers) if self.config.step_workers > 1 else None
        try:
            while queue or active:
                while queue and len(active) < self.config.max_concurrency:
                    i, job = queue.popleft()
                    active.append(self._start(i, job))
                self._critique_phase([s for s in active if s.request is not None and not s.done])
                ready = [s for s in active if not s.done and s.request is None]
                if ready:
                    completions = self._generate(ready)
                    steps = [(s, c) for s, c in zip(ready, completions) if c is not None]
                    if pool is None:
                        for s, c in steps:
                            self._step(s, c)
                    else:
                        list(pool.map(lambda sc: self._step(*sc), steps))
                still = []
                for s in active:
                    if s.done:
                        ep = self._finish(s)
                        results[s.index] = ep
                        if on_episode is not None:
                            on_episode(ep)
                    else:
                        still.append(s)
                active = still
        finally:
            if pool is not None:
                pool.shutdown(wait=True)
        return [results[i] for i in sorted(results)]

    # -- phases ---------------------------------------------------------------------------------
    def _start(self, index: int, job: Job) -> _Slot:
        slot = _Slot(index=index, job=job, env_id=job.env if isinstance(job.env, str) else "")
        try:
            slot.env = _build_env(job)
            slot.env_id = _env_id(job, slot.env)
            obs, info = slot.env.reset(seed=job.seed, options=job.options)
            slot.obs = list(obs)
            slot.task_id = info.get("task_id")
            slot.tools = info.get(RENDER_TOOLS_KEY) or None
        except Exception as e:
            slot.error, slot.done = _error("reset", e, None), True
        return slot

    def _generate(self, slots: list[_Slot]) -> list[Completion | None]:
        """One batched call; if it fails, retry each conversation alone so only the bad ones error."""
        if not self.policy_takes_tools and any(s.tools for s in slots):
            return self._generate_without_tools(slots)
        try:
            convs = [s.obs for s in slots]
            if any(s.tools for s in slots):
                out = list(self.policy.generate(convs, self.config.sampling, tools=[s.tools for s in slots]))
            else:
                out = list(self.policy.generate(convs, self.config.sampling))
            if len(out) != len(slots):
                raise RuntimeError(f"policy returned {len(out)} completions for {len(slots)} conversations")
            return out
        except Exception as e:
            if len(slots) > 1:
                return [self._generate([s])[0] for s in slots]
            slots[0].error, slots[0].done = _error("policy", e, len(slots[0].turns)), True
            return [None]

    def _generate_without_tools(self, slots: list[_Slot]) -> list[Completion | None]:
        """The policy cannot render tools natively: those episodes error, the others generate."""
        plain = [s for s in slots if not s.tools]
        for s in slots:
            if s.tools:
                err = ConfigError(f"the environment asks the policy to render its tools natively ({RENDER_TOOLS_KEY}), "
                                  f"but {type(self.policy).__name__}.generate takes no tools argument; use a policy "
                                  "that does (hf, vllm, openai) or the environment's text tool prompt")
                s.error, s.done = _error("policy", err, len(s.turns)), True
        done = iter(self._generate(plain) if plain else [])
        return [None if s.tools else next(done) for s in slots]

    def _step(self, slot: _Slot, completion: Completion) -> None:
        env = slot.env
        assert env is not None
        action = completion.text
        index = len(slot.turns)
        try:
            obs, reward, terminated, truncated, info = env.step(action)
        except Exception as e:
            slot.error, slot.done = _error("step", e, index), True
            slot.obs = final_messages(slot.obs, action)
            return
        try:
            extra: dict[str, Any] = {}
            if completion.token_ids is not None:
                extra = {"token_ids": completion.token_ids, "logprobs": completion.logprobs}
            if completion.warning:
                info = {**info, "policy_warning": completion.warning}
            turn = build_turn(index, slot.obs, action, reward, terminated, truncated, info, **extra)
        except Exception as e:
            slot.error, slot.done = _error("engine", e, index), True
            return
        slot.turns.append(turn)
        slot.obs = list(obs)
        request = info.get("critique_request")
        if request is not None and not (terminated or truncated):
            slot.request = CritiqueRequest.model_validate(request)
        if terminated or truncated:
            slot.obs = final_messages(list(obs), action)
            slot.done = True
        elif len(slot.turns) >= self.config.max_turns:
            slot.turns[-1] = slot.turns[-1].model_copy(update={"truncated": True})
            slot.done = True

    def _critique_phase(self, slots: list[_Slot]) -> None:
        if not slots:
            return
        if self.critic is None:
            for s in slots:
                err = ConfigError("the environment asked for a critique but no critic was given: pass critic= "
                                  "to the rollout engine or to MultiAttempt")
                s.error, s.done = _error("critic", err, len(s.turns) - 1), True
            return
        requests = [s.request for s in slots]
        try:
            critiques: list[Critique | None] = list(self.critic.critique(requests))  # type: ignore[arg-type]
            if len(critiques) != len(slots):
                raise RuntimeError(f"critic returned {len(critiques)} critiques for {len(slots)} requests")
        except Exception:
            critiques = []
            for s in slots:
                try:
                    critiques.append(self.critic.critique([s.request])[0])  # type: ignore[list-item]
                except Exception as e:
                    s.error, s.done = _error("critic", e, len(s.turns) - 1), True
                    critiques.append(None)
        for s, critique in zip(slots, critiques):
            if critique is None:
                continue
            s.request = None
            try:
                obs, terminated, extra = s.env.get_wrapper_attr("apply_critique")(critique)  # type: ignore[union-attr]
            except Exception as e:
                s.error, s.done = _error("wrapper", e, len(s.turns) - 1), True
                continue
            last = build_turn(s.turns[-1].index, list(s.turns[-1].observation), s.turns[-1].action,
                              s.turns[-1].reward, terminated, False, {**s.turns[-1].info, **extra})
            s.turns[-1] = last.model_copy(update={"token_ids": s.turns[-1].token_ids, "logprobs": s.turns[-1].logprobs})
            s.obs = list(obs)
            s.done = terminated

    def _finish(self, slot: _Slot) -> Episode:
        if slot.env is not None:
            try:
                slot.env.close()
            except Exception as e:  # closing is best effort, but still worth recording
                if slot.error is None:
                    slot.error = _error("engine", e, None)
        messages = slot.obs if slot.obs else []
        return Episode(
            env_id=slot.env_id, seed=slot.job.seed, task_id=slot.task_id, turns=tuple(slot.turns),
            messages=tuple(messages), error=slot.error, metadata=dict(slot.job.metadata),
        )


def rollout(jobs: Iterable[Job] | Sequence[Job], policy: Policy, critic: Critic | None = None, *,
            sampling: SamplingParams | None = None, max_concurrency: int = 64, step_workers: int = 1,
            on_episode: Callable[[Episode], None] | None = None) -> list[Episode]:
    """Run ``jobs`` against ``policy`` (and ``critic``); a shortcut for ``RolloutEngine(...).run(jobs)``."""
    config = RolloutConfig(sampling=sampling or SamplingParams(), max_concurrency=max_concurrency,
                           step_workers=step_workers)
    return RolloutEngine(policy, critic, config).run(jobs, on_episode=on_episode)


__all__ = ["RENDER_TOOLS_KEY", "Job", "RolloutConfig", "RolloutEngine", "rollout"]
