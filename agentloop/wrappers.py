"""Behaviour added to any environment by wrapping it: several attempts, critiques, turn limits, recording.

``MultiAttempt`` is the heart of self-correction: it turns any environment whose episodes end after
one answer (or after one multi-turn attempt) into up to K attempts at the *same* task, with feedback
between attempts chosen by ``feedback``:

========  ==========================================================================================
none      "Please answer again." (no information)
binary    "Your answer is incorrect. Please try again." (the verdict only)
retry     a fixed self-correction instruction that never reveals the verdict (SCoRe)
env       the environment's own feedback text: traceback, failing test, violated constraint
oracle    the environment's answer-revealing feedback (``info["oracle_feedback"]``) plus the verdict
critic    the text of a critique written by a :class:`~agentloop.protocols.Critic`
========  ==========================================================================================

The next attempt is played on a fresh ``reset`` of the inner environment with the same seed and
options, which the environment contract makes the same task; the policy sees the whole history.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from agentloop.errors import ConfigError, EnvError
from agentloop.protocols import Critic, Policy, ToolSchemas
from agentloop.types import (
    Completion,
    Critique,
    CritiqueRequest,
    Episode,
    Feedback,
    FeedbackMode,
    Message,
    SamplingParams,
    Turn,
    assistant,
    user,
)

SCORE_RETRY_INSTRUCTION = (
    "There might be an error in the solution above because of lack of understanding of the question. "
    "Please correct the error, if any, and rewrite the solution."
)


class MultiAttemptConfig(BaseModel):
    """Settings of :class:`MultiAttempt`. Every template may use ``{feedback}`` and ``{question}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_attempts: int = Field(default=2, ge=1, le=64, description="Maximum number of attempts.")
    feedback: FeedbackMode = Field(default="env", description="What the actor is told between attempts.")
    stop_on_success: bool | None = Field(
        default=None,
        description="End the episode at the first successful attempt. Default: True for modes that reveal the "
        "verdict (binary, env, oracle, critic) and False for none/retry, whose point is not to reveal it.",
    )
    critique_all: bool = Field(
        default=False,
        description="Critic mode without an oracle: critique every answer (not only wrong ones) and stop when the "
        "critic judges the answer correct (docs/methods.md section 4).",
    )
    retry_instruction: str | None = Field(
        default=None, description="Override of the retry text; default: the environment's own, else SCoRe's."
    )
    none_template: str = "Please answer the question again."
    binary_wrong_template: str = "Your answer is incorrect. Please try again."
    binary_right_template: str = "Your answer is correct."
    env_template: str = "Your answer is incorrect. Feedback:\n{feedback}\nPlease try again."
    env_right_template: str = "Feedback:\n{feedback}"
    oracle_template: str = "Your answer is incorrect.\n{feedback}\nPlease try again."
    critic_template: str = "Here is a critique of your answer:\n{feedback}\nPlease revise your answer."

    @model_validator(mode="after")
    def _check(self) -> MultiAttemptConfig:
        if self.critique_all and self.feedback != "critic":
            raise ValueError("critique_all=True only applies to feedback='critic'.")
        if self.critique_all and self.stop_on_success:
            raise ValueError(
                "critique_all=True (no oracle) cannot stop_on_success: without an oracle the wrapper may not "
                "use the verifier's verdict; it stops when the critic judges the answer correct instead."
            )
        return self

    @property
    def stops_on_success(self) -> bool:
        if self.stop_on_success is not None:
            return self.stop_on_success
        return self.feedback not in ("none", "retry") and not self.critique_all

    def feedback_text(self, info: dict[str, Any], success: bool, question: str,
                      retry_instruction: str | None = None) -> str:
        """The user turn after an attempt with step ``info`` (the environment's ``feedback`` and
        ``oracle_feedback``) and verdict ``success``, at a task whose question is ``question``.

        ``retry_instruction``: the retry text (default: this config's, else SCoRe's). Critic mode has no
        fixed text (the critic writes it) and raises.
        """
        env_text = str(info.get("feedback", "") or "")
        mode = self.feedback
        if mode == "none":
            return self.none_template.format(question=question, feedback="")
        if mode == "retry":
            return retry_instruction or self.retry_instruction or SCORE_RETRY_INSTRUCTION
        if mode == "binary" or (mode == "env" and not env_text):
            template = self.binary_right_template if success else self.binary_wrong_template
            return template.format(question=question, feedback="")
        if mode == "env":
            template = self.env_right_template if success else self.env_template
            return template.format(feedback=env_text, question=question)
        if mode == "oracle":
            oracle = str(info.get("oracle_feedback") or env_text or "")
            if success:
                return self.binary_right_template.format(question=question, feedback=oracle)
            return self.oracle_template.format(feedback=oracle, question=question)
        raise ConfigError(f"feedback mode {mode!r} has no fixed text (a critic writes it); use binary, env, "
                          "oracle, retry or none.")


class MultiAttempt(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Up to ``max_attempts`` attempts at the same task with feedback between them.

    Example::

        env = MultiAttempt(agentloop.make("math/arith-v0"), max_attempts=2, feedback="retry")
        obs, info = env.reset(seed=0)
        obs, r, term, trunc, info = env.step("The answer is 3")   # term is False: a second attempt follows

    In ``critic`` mode with no ``critic`` given, the wrapper defers: ``step`` returns with
    ``info["critique_request"]`` set and the driver (the rollout engine) must call
    ``apply_critique(critique)`` before the next step; the engine batches these across episodes.
    """

    def __init__(self, env: gym.Env, max_attempts: int = 2, feedback: FeedbackMode = "env", critic: Critic | None = None,
                 stop_on_success: bool | None = None, **options: Any):
        if "k" in options:  # renamed in 0.1: one name for the number of attempts everywhere
            raise ConfigError(f"MultiAttempt(k=...) was renamed: write max_attempts={options['k']!r}.")
        # recorded on env.spec.additional_wrappers; the critic object is not a setting and is left out
        gym.utils.RecordConstructorArgs.__init__(self, max_attempts=max_attempts, feedback=feedback,
                                                 stop_on_success=stop_on_success, **options)
        gym.Wrapper.__init__(self, env)
        try:
            self.config = MultiAttemptConfig(max_attempts=max_attempts, feedback=feedback,
                                             stop_on_success=stop_on_success, **options)
        except Exception as e:
            raise ConfigError(f"MultiAttempt: {e}") from e
        if critic is not None and not hasattr(critic, "critique"):
            raise ConfigError(f"MultiAttempt: critic must have a critique(requests) method, got {type(critic).__name__}.")
        self.critic = critic
        self._rng = np.random.default_rng()
        self._seed: int | None = None
        self._options: dict[str, Any] | None = None
        self._history: list[Message] = []
        self._prompt_len = 0
        self._attempt = 0
        self._pending: CritiqueRequest | None = None
        self._question = ""

    @property
    def attempt(self) -> int:
        return self._attempt

    @property
    def awaiting_critique(self) -> bool:
        return self._pending is not None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        # Every attempt replays the same task, so the inner env always gets an explicit seed.
        self._seed = int(self._rng.integers(2**31 - 1)) if seed is None else seed
        self._options = options
        obs, info = self.env.reset(seed=self._seed, options=options)
        self._history = list(obs)
        self._prompt_len = len(obs)
        self._question = next((m.content for m in reversed(obs) if m.role == "user"), "")
        self._attempt = 0
        self._pending = None
        return list(obs), {**info, "attempt": 0}

    def _current(self, inner_obs: list[Message]) -> list[Message]:
        return self._history + list(inner_obs[self._prompt_len:])

    def step(self, action: str):
        if self._pending is not None:
            raise EnvError("MultiAttempt is waiting for a critique: call apply_critique() before the next step.")
        obs, reward, terminated, truncated, info = self.env.step(action)
        info = {**info, "attempt": self._attempt}
        current = self._current(obs)
        if not (terminated or truncated):
            return current, reward, False, False, info
        success = bool(info.get("success", False))
        last = self._attempt + 1 >= self.config.max_attempts
        stop = last or (success and self.config.stops_on_success)
        if self.config.feedback == "critic" and not stop and (self.config.critique_all or not success):
            request = CritiqueRequest(question=self._question, answer=action, messages=tuple(current),
                                      env_feedback=str(info.get("feedback", "")) or None,
                                      # oracle mode critiques only wrong answers, so the verdict is known; the
                                      # no-oracle mode (critique_all) must not reveal it.
                                      success=None if self.config.critique_all else success)
            self._history = current
            if self.critic is None:
                self._pending = request
                return current, reward, False, False, {**info, "critique_request": request.model_dump(mode="json")}
            critique = self.critic.critique([request])[0]
            new_obs, stopped, extra = self._after_critique(critique)
            return new_obs, reward, stopped, False, {**info, **extra}
        if stop:
            return current, reward, True, bool(truncated and not terminated), info
        text = self._feedback_text(info, success)
        self._history = [*current, user(text)]
        self._next_attempt()
        fb = Feedback(mode=self.config.feedback, text=text, success=success)
        return list(self._history), reward, False, False, {**info, "feedback_given": fb.model_dump(mode="json")}

    def apply_critique(self, critique: Critique) -> tuple[list[Message], bool, dict[str, Any]]:
        """Give the pending critique to the actor. Returns (observation, terminated, info)."""
        if self._pending is None:
            raise EnvError("apply_critique() called but no critique was requested.")
        self._pending = None
        return self._after_critique(critique)

    def _after_critique(self, critique: Critique) -> tuple[list[Message], bool, dict[str, Any]]:
        extra: dict[str, Any] = {"critique": critique.model_dump(mode="json")}
        if self.config.critique_all and critique.final_correct is True:
            return list(self._history), True, extra
        text = self.config.critic_template.format(feedback=critique.text, question=self._question)
        self._history = [*self._history, user(text)]
        self._next_attempt()
        extra["feedback_given"] = Feedback(mode="critic", text=text, success=None).model_dump(mode="json")
        return list(self._history), False, extra

    def _next_attempt(self) -> None:
        self._attempt += 1
        self.env.reset(seed=self._seed, options=self._options)

    def _feedback_text(self, info: dict[str, Any], success: bool) -> str:
        retry = self.config.retry_instruction or getattr(self.env.unwrapped, "retry_instruction", None)
        return self.config.feedback_text(info, success, self._question, retry_instruction=retry)


class CritiqueInTheLoop(MultiAttempt):
    """Actor answers, critic critiques, actor refines: up to ``max_attempts - 1`` refinements (docs/methods.md section 4).

    ``oracle=True`` critiques only wrong answers (the verifier decides); ``oracle=False`` critiques
    every answer and stops when the critic judges the answer correct.
    """

    def __init__(self, env: gym.Env, critic: Critic | None = None, max_attempts: int = 2, oracle: bool = True,
                 **options: Any):
        if "rounds" in options:  # renamed in 0.1: rounds of critique = max_attempts - 1
            raise ConfigError("CritiqueInTheLoop(rounds=R) was renamed: write max_attempts=R + 1.")
        super().__init__(env, max_attempts=max_attempts, feedback="critic", critic=critic,
                         stop_on_success=True if oracle else False, critique_all=not oracle, **options)


class TurnLimit(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Truncate the episode after ``max_turns`` actions."""

    def __init__(self, env: gym.Env, max_turns: int):
        gym.utils.RecordConstructorArgs.__init__(self, max_turns=max_turns)
        gym.Wrapper.__init__(self, env)
        if max_turns < 1:
            raise ConfigError(f"TurnLimit: max_turns must be >= 1, got {max_turns}.")
        self.max_turns = max_turns
        self._turns = 0

    def reset(self, **kwargs: Any):
        self._turns = 0
        return self.env.reset(**kwargs)

    def step(self, action: str):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._turns += 1
        if not terminated and self._turns >= self.max_turns:
            truncated = True
            info = {**info, "truncated_by": "TurnLimit"}
        return obs, reward, terminated, truncated, info


class Branch(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Start from a recorded state and play one more step: the branch of a best-of-N search.

    ``reset(options={..., "prefix": [a1, a2]})`` resets the inner environment with the remaining options
    and replays the recorded actions (no policy involved), so the first observation is the state the
    recorded episode was in after them, feedback included; the policy's next action then ends the
    episode (``truncated`` with ``info["truncated_by"] = "Branch"`` where the inner episode would go on).
    RISE samples N such branches per state and keeps the best (:mod:`agentloop.algorithms.rise`).
    Replay needs an environment that repeats the same task for the same seed and options (the
    environment contract) and a wrapper stack that needs no driver between steps (no deferred critique).
    """

    def __init__(self, env: gym.Env):
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        options = dict(options or {})
        prefix = [str(a) for a in options.pop("prefix", [])]
        obs, info = self.env.reset(seed=seed, options=options)
        for i, action in enumerate(prefix):
            obs, _, terminated, truncated, info = self.env.step(action)
            if info.get("critique_request") is not None:
                raise EnvError("Branch cannot replay through a deferred critique: build the wrapper stack with a "
                               "critic object, or branch from states before the critique.")
            if terminated or truncated:
                raise EnvError(f"Branch: the recorded prefix ended the episode at action {i + 1} of {len(prefix)}; "
                               "branch only from states where the episode went on (same seed and options).")
        return obs, {**info, "prefix_len": len(prefix)}

    def step(self, action: str):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if not (terminated or truncated):
            truncated, info = True, {**info, "truncated_by": "Branch"}
        return obs, reward, terminated, truncated, info


def build_turn(index: int, observation: list[Message], action: str, reward: float, terminated: bool,
               truncated: bool, info: dict[str, Any], **extra: Any) -> Turn:
    """The Turn record of one step (shared by the rollout engine and RecordEpisode)."""
    fb = info.get("feedback_given")
    crit = info.get("critique")
    skip = {"feedback_given", "critique", "critique_request"}
    return Turn(
        index=index,
        attempt=int(info.get("attempt", 0)),
        observation=tuple(observation),
        action=action,
        reward=float(reward),
        success=info.get("success") if isinstance(info.get("success"), bool) else None,
        terminated=bool(terminated),
        truncated=bool(truncated),
        feedback=Feedback.model_validate(fb) if fb else None,
        critique=Critique.model_validate(crit) if crit else None,
        parse_error=info.get("parse_error"),
        info={k: v for k, v in info.items() if k not in skip},
        **extra,
    )


def final_messages(obs: list[Message], action: str) -> list[Message]:
    """The conversation at the end of an episode: the last observation, plus the action if it is not echoed."""
    msgs = list(obs)
    if not (msgs and msgs[-1].role == "assistant" and msgs[-1].content == action):
        msgs.append(assistant(action))
    return msgs


class RecordEpisode(gym.Wrapper):
    """Record every step into an :class:`Episode`; optionally append each finished one to a JSONL file.

    ``env.episode`` is the current (or last finished) episode; ``env.episodes`` all finished ones.
    """

    def __init__(self, env: gym.Env, path: str | Path | None = None, env_id: str | None = None):
        super().__init__(env)
        self.path = Path(path) if path is not None else None
        self.env_id = env_id or (env.spec.id if env.spec is not None else type(env.unwrapped).__name__)
        self.episodes: list[Episode] = []
        self._turns: list[Turn] = []
        self._obs: list[Message] = []
        self._seed: int | None = None
        self._task: str | None = None
        self.episode: Episode | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        self._turns, self._obs, self._seed = [], list(obs), seed
        self._task = info.get("task_id")
        self.episode = Episode(env_id=self.env_id, seed=seed, task_id=self._task, messages=tuple(obs))
        return obs, info

    def step(self, action: str):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._turns.append(build_turn(len(self._turns), self._obs, action, reward, terminated, truncated, info))
        self._obs = list(obs)
        done = terminated or truncated
        self.episode = Episode(env_id=self.env_id, seed=self._seed, task_id=self._task, turns=tuple(self._turns),
                               messages=tuple(final_messages(obs, action) if done else obs))
        if done:
            self.episodes.append(self.episode)
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a", encoding="utf-8") as f:
                    f.write(self.episode.model_dump_json() + "\n")
        return obs, reward, terminated, truncated, info


class PolicyWrapper:
    """Base class of policies that wrap another policy: every ``generate`` argument passes through.

    A subclass overrides :meth:`generate` (or only :meth:`conversations`) and calls
    ``super().generate(...)``; the optional ``tools`` argument reaches the inner policy whenever it
    can take it, so native-tool environments keep working through any stack of wrappers. Attributes
    the wrapper does not define are read from the inner policy (``wrapper.model`` is the model of an
    hf policy); ``unwrapped`` is the innermost policy.

    Example::

        class Shouting(PolicyWrapper):
            def conversations(self, conversations):
                return [[m.model_copy(update={"content": m.content.upper()}) for m in c] for c in conversations]
    """

    def __init__(self, policy: Policy):
        if not hasattr(policy, "generate"):
            raise ConfigError(f"PolicyWrapper: policy must have a generate method, got {type(policy).__name__}.")
        self.policy = policy

    @property
    def takes_tools(self) -> bool:
        """Whether the innermost policy renders tools natively (the rollout engine asks this)."""
        from agentloop.protocols import accepts_tools

        inner = self.policy
        return inner.takes_tools if isinstance(inner, PolicyWrapper) else accepts_tools(inner)

    @property
    def unwrapped(self) -> Any:
        inner = self.policy
        return inner.unwrapped if isinstance(inner, PolicyWrapper) else inner

    def conversations(self, conversations: Sequence[Sequence[Message]]) -> list[list[Message]]:
        """The conversations the inner policy sees (default: unchanged)."""
        return [list(c) for c in conversations]

    def generate(self, conversations: Sequence[Sequence[Message]], sampling: SamplingParams,
                 tools: Sequence[ToolSchemas | None] | None = None) -> list[Completion]:
        convs = self.conversations(conversations)
        if tools is None or not any(tools):
            return self.policy.generate(convs, sampling)
        if not self.takes_tools:
            raise ConfigError(f"{type(self).__name__} got tools for native rendering, but the policy it wraps "
                              f"({type(self.unwrapped).__name__}) takes no tools argument; use a policy that does "
                              "(hf, vllm, openai) or the environment's text tool prompt")
        return self.policy.generate(convs, sampling, tools=tools)  # type: ignore[call-arg]

    def __getattr__(self, name: str) -> Any:
        if name == "policy":  # not set yet (during unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.policy, name)


__all__ = [
    "SCORE_RETRY_INSTRUCTION", "Branch", "CritiqueInTheLoop", "MultiAttempt", "MultiAttemptConfig", "PolicyWrapper",
    "RecordEpisode", "TurnLimit", "build_turn", "final_messages",
]

