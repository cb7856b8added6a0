"""Small real environments for tests: no model, GPU or network needed."""

from __future__ import annotations

from collections.abc import Callable

from agentloop.env import Task, TaskEnv, Verdict
from agentloop.types import user


class EchoEnv(TaskEnv):
    """Task i asks the policy to reply with the word ``word{i}``; feedback names the wanted length only."""

    def __init__(self, n_tasks: int = 5, prefix: str = "word"):
        super().__init__()
        self.n_tasks, self.prefix = n_tasks, prefix

    def num_tasks(self) -> int:
        return self.n_tasks

    def get_task(self, index: int) -> Task:
        word = f"{self.prefix}{index}"
        return Task(id=str(index), messages=(user(f"Reply with exactly: {word}"),), answer=word)

    def verify(self, task: Task, action: str) -> Verdict:
        ok = action.strip() == task.answer
        return Verdict(reward=float(ok), success=ok,
                       feedback="" if ok else f"Wrong: the reply should have {len(str(task.answer))} characters.",
                       oracle_feedback=None if ok else f"The expected reply is {task.answer}.")


class SwappableEnv(EchoEnv):
    """EchoEnv whose step (or reset) can be replaced, to test failure handling."""

    def __init__(self, step_fn: Callable | None = None, reset_fn: Callable | None = None, **kw):
        super().__init__(**kw)
        self.step_fn, self.reset_fn = step_fn, reset_fn

    def reset(self, *, seed=None, options=None):
        if self.reset_fn is not None:
            self.reset_fn(self)
        return super().reset(seed=seed, options=options)

    def step(self, action):
        if self.step_fn is not None:
            return self.step_fn(self, action)
        return super().step(action)


def answer_of(conversation) -> str:
    """The word the EchoEnv prompt in ``conversation`` asks for."""
    prompt = next(m.content for m in conversation if m.role == "user")
    return prompt.rsplit(" ", 1)[-1]
