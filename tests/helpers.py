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


TOOL_SCHEMA = {"type": "function", "function": {"name": "add", "description": "Add.", "parameters": {
    "type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}}}


class ToolsEnv(EchoEnv):
    """EchoEnv that asks the policy to render one tool natively (reset info ``render_tools``)."""

    def reset(self, *, seed=None, options=None):
        from agentloop.rollout import RENDER_TOOLS_KEY

        obs, info = super().reset(seed=seed, options=options)
        return obs, {**info, RENDER_TOOLS_KEY: [TOOL_SCHEMA]}


class RecordingPolicy:
    """A policy whose generate takes ``tools``: records the tools of every call, answers like ``reply``."""

    def __init__(self, reply: Callable | None = None):
        self.tools: list = []
        self.reply = reply or (lambda conversation: "x")

    def generate(self, conversations, sampling, tools=None):
        from agentloop.types import Completion

        self.tools.append(tools)
        return [Completion(text=self.reply(c)) for c in conversations]
