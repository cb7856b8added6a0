"""`TextEnv`: a gymnasium environment whose observations are chat messages and whose actions are text.

The contract (checked by :func:`agentloop.check_env`):

* ``reset(*, seed=None, options=None) -> (observation, info)``: the observation is the list of
  messages the policy should see next. The same seed and options give the same task.
* ``step(action: str) -> (observation, reward, terminated, truncated, info)``: ``info["feedback"]``
  is the environment's feedback text, ``info["success"]`` the verifier's verdict (bool). Anything
  else in ``info`` is environment-specific and JSON-serialisable. ``info["oracle_feedback"]`` may
  hold feedback that reveals the answer (shown only in the ``oracle`` feedback mode);
  ``info["parse_error"]`` says why an action could not be parsed.

`TaskEnv` is the helper for the common single-turn case (one prompt, one answer, one verdict):
implement ``num_tasks``, ``get_task`` and ``verify``. Multi-attempt behaviour is added by the
:class:`agentloop.wrappers.MultiAttempt` wrapper, never by a flag.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from pydantic import Field, JsonValue

from agentloop.errors import EnvError
from agentloop.types import Message, Record, assistant

__all__ = ["MessagesSpace", "Task", "TaskEnv", "TextEnv", "TextSpace", "Verdict"]


class TextSpace(gym.spaces.Space[str]):
    """Any Python string up to ``max_length`` characters (gymnasium's ``Text`` restricts the charset)."""

    def __init__(self, max_length: int = 1_000_000, seed: int | None = None):
        super().__init__(shape=None, dtype=None, seed=seed)
        self.max_length = max_length

    def contains(self, x: Any) -> bool:
        return isinstance(x, str) and len(x) <= self.max_length

    def sample(self, mask: Any = None, probability: Any = None) -> str:
        length = int(self.np_random.integers(0, 16))
        return "".join(chr(int(c)) for c in self.np_random.integers(32, 127, size=length))

    @property
    def is_np_flattenable(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"TextSpace(max_length={self.max_length})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TextSpace) and other.max_length == self.max_length


class MessagesSpace(gym.spaces.Space[list[Message]]):
    """A non-empty list of :class:`Message` records."""

    def __init__(self, seed: int | None = None):
        super().__init__(shape=None, dtype=None, seed=seed)

    def contains(self, x: Any) -> bool:
        return isinstance(x, list) and len(x) > 0 and all(isinstance(m, Message) for m in x)

    def sample(self, mask: Any = None, probability: Any = None) -> list[Message]:
        return [Message(role="user", content=TextSpace(seed=int(self.np_random.integers(1 << 30))).sample())]

    @property
    def is_np_flattenable(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "MessagesSpace()"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MessagesSpace)


class TextEnv(gym.Env[list[Message], str]):
    """Base class of every agentloop environment. Subclasses implement ``reset`` and ``step``."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}
    observation_space = MessagesSpace()
    action_space = TextSpace()


class Task(Record):
    """One problem of a `TaskEnv`."""

    id: str
    messages: tuple[Message, ...] = Field(description="The prompt the policy sees.")
    answer: JsonValue = Field(default=None, description="Whatever `verify` needs (gold answer, tests, ...).")
    metadata: dict[str, JsonValue] = Field(default_factory=dict)


class Verdict(Record):
    """The result of checking one action against one task."""

    reward: float
    success: bool
    feedback: str = Field(description="Feedback the actor may see; must not reveal the answer.")
    oracle_feedback: str | None = Field(default=None, description="Feedback that may reveal the answer.")
    parse_error: str | None = None
    info: dict[str, JsonValue] = Field(default_factory=dict)


class TaskEnv(TextEnv):
    """Single-turn environment over a set of tasks: prompt -> answer -> verdict.

    Subclasses implement :meth:`num_tasks`, :meth:`get_task` and :meth:`verify`. ``reset`` picks a
    task with the seeded RNG, or the one named by ``options={"task_id": ...}`` or
    ``options={"index": i}``.

    Example::

        class Echo(TaskEnv):
            def num_tasks(self): return 1
            def get_task(self, i): return Task(id="0", messages=(user("say hi"),), answer="hi")
            def verify(self, task, action):
                ok = action.strip() == task.answer
                return Verdict(reward=float(ok), success=ok, feedback="" if ok else "Not 'hi'.")
    """

    #: Instruction used by ``MultiAttempt(feedback="retry")``; environments may override it.
    retry_instruction: ClassVar[str | None] = None

    def __init__(self) -> None:
        super().__init__()
        self._task: Task | None = None
        self._done = False

    # -- to implement -------------------------------------------------------------------------
    def num_tasks(self) -> int:
        raise NotImplementedError

    def get_task(self, index: int) -> Task:
        raise NotImplementedError

    def verify(self, task: Task, action: str) -> Verdict:
        raise NotImplementedError

    @staticmethod
    def feedback_uptake(previous: Mapping[str, Any], action: str, current: Mapping[str, Any]) -> bool | None:
        """Did ``action`` (the next attempt; ``current`` is its verdict's ``info``) do what the verdict on the
        previous attempt (``previous``: that turn's ``info``, whose ``feedback`` is the environment's own text)
        asked? None when that verdict asked nothing one can check (the default). The self-correction report
        (:mod:`agentloop.evaluation.selfcorrection`) counts it under every protocol, whether or not the protocol
        showed the verdict: the rate under ``env`` against ``binary``/``retry`` shows that the feedback is read.
        Override it where the feedback names something checkable (a name to define, a direction to move)."""
        return None

    # -- gymnasium API ------------------------------------------------------------------------
    @property
    def task(self) -> Task:
        if self._task is None:
            raise EnvError(f"{type(self).__name__}: call reset() before using the task.")
        return self._task

    def task_ids(self) -> Sequence[str]:
        return [self.get_task(i).id for i in range(self.num_tasks())]

    def _select(self, options: dict[str, Any] | None) -> Task:
        options = options or {}
        n = self.num_tasks()
        if n <= 0:
            raise EnvError(f"{type(self).__name__} has no tasks; check its data source or filters.")
        if "index" in options:
            return self.get_task(int(options["index"]) % n)
        if "task_id" in options:
            wanted = str(options["task_id"])
            for i in range(n):
                task = self.get_task(i)
                if task.id == wanted:
                    return task
            raise EnvError(f"{type(self).__name__}: no task with id {wanted!r}.")
        return self.get_task(int(self.np_random.integers(n)))

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._task = self._select(options)
        self._done = False
        return list(self._task.messages), {"task_id": self._task.id}

    def step(self, action: str):
        task = self.task
        if self._done:
            raise EnvError(f"{type(self).__name__}: the episode is over; call reset() first.")
        verdict = self.verify(task, action)
        self._done = True
        info: dict[str, Any] = {
            "feedback": verdict.feedback,
            "success": bool(verdict.success),
            "task_id": task.id,
            **verdict.info,
        }
        if verdict.oracle_feedback is not None:
            info["oracle_feedback"] = verdict.oracle_feedback
        if verdict.parse_error is not None:
            info["parse_error"] = verdict.parse_error
        obs = [*task.messages, assistant(action)]
        return obs, float(verdict.reward), True, False, info


def as_rng(seed: int | None) -> np.random.Generator:
    """A numpy Generator from an optional seed (shared helper for task generators)."""
    return np.random.default_rng(seed)
