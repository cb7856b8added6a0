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

The engine is the one place episodes run. ``run`` is its whole loop; the per-episode API it is
built from (:meth:`RolloutEngine.start`, ``act`` = ``generate`` + ``step``, ``critique``,
``finish``, ``round``) is public so that drivers holding episodes elsewhere use the same code: the
Ray workers (:mod:`agentloop.distributed`) start, step, critique and finish their episodes with it,
and the Ray driver's central generation is this engine's ``generate`` and ``request_critiques``.

Example::

    episodes = rollout([Job(env="math/arith-v0", seed=s) for s in range(8)], policy)
"""

from __future__ import annotations

import logging
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

logger = logging.getLogger(__name__)

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
    ``replay``: recorded completions the engine plays as the first actions instead of generating (the
    environment steps them as usual, so verdicts, feedback and critiques are recorded as live): an
    episode that branches from another's recorded start, e.g. one evaluation protocol of a shared first
    attempt (:mod:`agentloop.evaluation.protocols`).
    """

    env: EnvSource
    seed: int | None = None
    options: dict[str, Any] | None = None
    make_kwargs: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    replay: tuple[Completion, ...] = ()

    def replayed(self, turn: int) -> Completion | None:
        """The recorded completion to play at turn ``turn``, if that turn is replayed."""
        return self.replay[turn] if turn < len(self.replay) else None


@dataclass(slots=True)
class EpisodeState:
    """One live episode inside an engine: its environment, the conversation so far and what it waits for.

    Built by :meth:`RolloutEngine.start`, advanced by :meth:`RolloutEngine.step` and
    :meth:`RolloutEngine.critique`, turned into an :class:`~agentloop.types.Episode` by
    :meth:`RolloutEngine.finish`. The Ray workers hold these between the driver's calls.
    """

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

    @property
    def waiting_critique(self) -> bool:
        """Live and waiting for a critique of its last answer."""
        return not self.done and self.request is not None

    @property
    def waiting_action(self) -> bool:
        """Live and waiting for the actor's next action."""
        return not self.done and self.request is None

    def fail(self, error: EpisodeError) -> None:
        """Record ``error`` and end the episode (a failed rollout is data)."""
        self.error, self.done = error, True


def episode_error(stage: ErrorStage, exc: BaseException, turn: int | None) -> EpisodeError:
    """The record of ``exc`` raised at ``stage`` (turn index when known), as stored on an episode."""
    return EpisodeError(stage=stage, type=type(exc).__name__, message=str(exc)[:2000], turn=turn,
                        traceback="".join(tb.format_exception(exc))[-4000:])


def _env_id(job: Job, env: gym.Env | None) -> str:
    if isinstance(job.env, str):
        return job.env
    spec = env.spec if env is not None else None
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


def _takes_tools(policy: Any) -> bool:
    from agentloop.wrappers import PolicyWrapper

    return policy.takes_tools if isinstance(policy, PolicyWrapper) else accepts_tools(policy)


NO_CRITIC = ("the environment asked for a critique but no critic was given: pass critic= to the rollout engine "
             "or to MultiAttempt")


class RolloutEngine:
    """Runs jobs to completion; see the module docstring. Reusable across calls.

    ``run`` is the whole loop. The per-episode API it is built from is public, for drivers that hold
    episodes elsewhere (the Ray workers): :meth:`start`, :meth:`act` (= :meth:`generate` + :meth:`step`),
    :meth:`critique`, :meth:`finish`, and :meth:`round` (one turn of every live episode).
    """

    def __init__(self, policy: Policy, critic: Critic | None = None, config: RolloutConfig | None = None):
        if not hasattr(policy, "generate"):
            raise ConfigError(f"policy must have a generate(conversations, sampling) method, got {type(policy).__name__}.")
        self.policy = policy
        self.policy_takes_tools = _takes_tools(policy)
        self.critic = critic
        self.config = config or RolloutConfig()

    # -- the whole loop -------------------------------------------------------------------------
    def run(self, jobs: Iterable[Job], on_episode: Callable[[Episode], None] | None = None) -> list[Episode]:
        """Run every job; returns the episodes in job order. ``on_episode`` sees each as it finishes."""
        queue = deque(enumerate(jobs))
        results: dict[int, Episode] = {}
        active: list[EpisodeState] = []
        pool = ThreadPoolExecutor(self.config.step_workers) if self.config.step_workers > 1 else None
        try:
            while queue or active:
                while queue and len(active) < self.config.max_concurrency:
                    i, job = queue.popleft()
                    active.append(self.start(i, job))
                self.round(active, pool)
                still = []
                for s in active:
                    if s.done:
                        ep = self.finish(s)
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

    def round(self, states: Sequence[EpisodeState], pool: ThreadPoolExecutor | None = None) -> None:
        """One turn of every live episode: one batched critique call, then one batched generate call and the steps."""
        self.critique([s for s in states if s.waiting_critique])
        self.act([s for s in states if s.waiting_action], pool)

    # -- per episode ----------------------------------------------------------------------------
    def start(self, index: int, job: Job) -> EpisodeState:
        """Build and reset the job's environment; a failure is recorded on the returned state (stage reset)."""
        state = EpisodeState(index=index, job=job, env_id=job.env if isinstance(job.env, str) else "")
        try:
            state.env = _build_env(job)
            state.env_id = _env_id(job, state.env)
            obs, info = state.env.reset(seed=job.seed, options=job.options)
            state.obs = list(obs)
            state.task_id = info.get("task_id")
            state.tools = info.get(RENDER_TOOLS_KEY) or None
        except Exception as e:
            state.fail(episode_error("reset", e, None))
        return state

    def act(self, states: Sequence[EpisodeState], pool: ThreadPoolExecutor | None = None) -> None:
        """Generate the next action of every state (one batched call) and step its environment."""
        if not states:
            return
        live = [s for s in states if s.job.replayed(len(s.turns)) is None]
        generated = iter(self.generate([s.obs for s in live], [s.tools for s in live]))
        outcomes = [s.job.replayed(len(s.turns)) or next(generated) for s in states]
        steps = []
        for s, out in zip(states, outcomes):
            if isinstance(out, BaseException):
                s.fail(episode_error("policy", out, len(s.turns)))
            else:
                steps.append((s, out))
        if pool is None:
            for s, c in steps:
                self.step(s, c)
        else:
            list(pool.map(lambda sc: self.step(*sc), steps))

    def generate(self, conversations: Sequence[list[Message]],
                 tools: Sequence[list[dict[str, Any]] | None] | None = None) -> list[Completion | Exception]:
        """One batched ``policy.generate``; if it fails, each conversation alone, so only the bad ones fail.

        Returns a completion or the exception per conversation. ``tools[i]`` (the environment's
        ``render_tools``) is passed through when any conversation has tools; a policy that cannot take
        them gets an error for those conversations instead of silently losing the tools.
        """
        tools = list(tools) if tools is not None else [None] * len(conversations)
        if not conversations:
            return []
        if not self.policy_takes_tools and any(tools):
            err = ConfigError(f"the environment asks the policy to render its tools natively ({RENDER_TOOLS_KEY}), "
                              f"but {type(self.policy).__name__}.generate takes no tools argument; use a policy "
                              "that does (hf, vllm, openai) or the environment's text tool prompt")
            plain = iter(self.generate([c for c, t in zip(conversations, tools) if not t]))
            return [err if t else next(plain) for t in tools]
        try:
            if any(tools):
                out = list(self.policy.generate(conversations, self.config.sampling, tools=tools))  # type: ignore[call-arg]
            else:
                out = list(self.policy.generate(conversations, self.config.sampling))
            if len(out) != len(conversations):
                raise RuntimeError(f"policy returned {len(out)} completions for {len(conversations)} conversations")
            return out
        except Exception as e:
            if len(conversations) > 1:
                return [self.generate([c], [t])[0] for c, t in zip(conversations, tools)]
            return [e]

    def step(self, state: EpisodeState, completion: Completion) -> None:
        """Play ``completion`` as the state's action: step the environment and record the turn."""
        env = state.env
        assert env is not None
        action = completion.text
        index = len(state.turns)
        try:
            obs, reward, terminated, truncated, info = env.step(action)
        except Exception as e:
            state.fail(episode_error("step", e, index))
            state.obs = final_messages(state.obs, action)
            return
        try:
            extra: dict[str, Any] = {}
            if completion.token_ids is not None:
                extra = {"token_ids": completion.token_ids, "logprobs": completion.logprobs,
                         "prompt_token_ids": completion.prompt_token_ids}
            if completion.warning:
                info = {**info, "policy_warning": completion.warning}
            turn = build_turn(index, state.obs, action, reward, terminated, truncated, info, **extra)
        except Exception as e:
            state.fail(episode_error("engine", e, index))
            return
        state.turns.append(turn)
        state.obs = list(obs)
        request = info.get("critique_request")
        if request is not None and not (terminated or truncated):
            state.request = CritiqueRequest.model_validate(request)
        if terminated or truncated:
            state.obs = final_messages(list(obs), action)
            state.done = True
        elif len(state.turns) >= self.config.max_turns:
            state.turns[-1] = state.turns[-1].model_copy(update={"truncated": True})
            state.done = True

    def critique(self, states: Sequence[EpisodeState],
                 critiques: Sequence[Critique | EpisodeError] | None = None) -> None:
        """Answer the states' critique requests: with ``critiques`` given (computed elsewhere, e.g. by a
        Ray driver) apply those, else one batched call of this engine's critic."""
        if not states:
            return
        if critiques is None:
            critiques = self.request_critiques([s.request for s in states])  # type: ignore[misc]
            critiques = [episode_error("critic", c, len(s.turns) - 1) if isinstance(c, BaseException) else c
                         for s, c in zip(states, critiques)]
        for s, critique in zip(states, critiques):
            if isinstance(critique, EpisodeError):
                s.fail(critique)
            else:
                self._apply_critique(s, critique)

    def request_critiques(self, requests: Sequence[CritiqueRequest]) -> list[Critique | Exception]:
        """One batched ``critic.critique``; if it fails, each request alone. A critique or the exception per request."""
        if not requests:
            return []
        if self.critic is None:
            return [ConfigError(NO_CRITIC) for _ in requests]
        try:
            out: list[Critique | Exception] = list(self.critic.critique(list(requests)))
            if len(out) != len(requests):
                raise RuntimeError(f"critic returned {len(out)} critiques for {len(requests)} requests")
            return out
        except Exception as e:
            if len(requests) > 1:
                return [self.request_critiques([r])[0] for r in requests]
            return [e]

    def _apply_critique(self, s: EpisodeState, critique: Critique) -> None:
        s.request = None
        try:
            obs, terminated, extra = s.env.get_wrapper_attr("apply_critique")(critique)  # type: ignore[union-attr]
        except Exception as e:
            s.fail(episode_error("wrapper", e, len(s.turns) - 1))
            return
        prev = s.turns[-1]
        last = build_turn(prev.index, list(prev.observation), prev.action, prev.reward, terminated, False,
                          {**prev.info, **extra})
        s.turns[-1] = last.model_copy(update={"token_ids": prev.token_ids, "logprobs": prev.logprobs,
                                              "prompt_token_ids": prev.prompt_token_ids})
        s.obs = list(obs)
        s.done = terminated

    def finish(self, state: EpisodeState) -> Episode:
        """Close the environment and return the episode record."""
        if state.env is not None:
            try:
                state.env.close()
            except Exception as e:  # closing is best effort, but still worth recording
                if state.error is None:
                    state.error = episode_error("engine", e, None)
        if state.error is not None:
            logger.debug("episode %d (%s, seed %s) failed at %s: %s: %s", state.index, state.env_id, state.job.seed,
                         state.error.stage, state.error.type, state.error.message[:200])
        return Episode(
            env_id=state.env_id, seed=state.job.seed, task_id=state.task_id, turns=tuple(state.turns),
            messages=tuple(state.obs), error=state.error, metadata=dict(state.job.metadata),
        )


def rollout(jobs: Iterable[Job] | Sequence[Job], policy: Policy, critic: Critic | None = None, *,
            sampling: SamplingParams | None = None, max_concurrency: int = 64, step_workers: int = 1,
            on_episode: Callable[[Episode], None] | None = None) -> list[Episode]:
    """Run ``jobs`` against ``policy`` (and ``critic``); a shortcut for ``RolloutEngine(...).run(jobs)``."""
    config = RolloutConfig(sampling=sampling or SamplingParams(), max_concurrency=max_concurrency,
                           step_workers=step_workers)
    return RolloutEngine(policy, critic, config).run(jobs, on_episode=on_episode)


__all__ = ["RENDER_TOOLS_KEY", "EpisodeState", "Job", "RolloutConfig", "RolloutEngine", "episode_error", "rollout"]
