"""A reasoning-gym dataset as a single-turn :class:`~agentloop.env.TaskEnv`.

The policy sees reasoning-gym's default system prompt (think, then give the final answer inside
``<answer></answer>``) and the item's question. The verifier is the dataset's own ``score_answer``
applied to the text inside the last ``<answer>`` tags (reasoning-gym's ``extract_answer``): the reward
is that score (in [0, 1]; some datasets give partial credit) and ``success`` means a full score.

Feedback never contains the reference answer: it says whether the answer was missing, wrong or partly
right; ``oracle_feedback`` adds the reference answer (or says the dataset has none: datasets such as
``graph_color`` or ``rush_hour`` accept any valid solution and ship no single answer). A dataset
whose scorer raises on an odd answer gives reward 0 with the error in ``info``, never a crash.

Items are generated on demand by reasoning-gym from ``(seed, index)``, so ``size`` costs nothing until
items are drawn and the same seed always gives the same task.
"""

from __future__ import annotations

from typing import Any

from agentloop.env import Task, TaskEnv, Verdict
from agentloop.errors import ConfigError
from agentloop.types import system, user

FULL_SCORE = 1.0 - 1e-9


class ReasoningGymEnv(TaskEnv):
    """``make("rg/basic_arithmetic-v0", size=500, seed=0, config={...})``; ``config`` goes to the dataset."""

    def __init__(self, dataset: str, size: int = 500, seed: int = 0, config: dict[str, Any] | None = None,
                 system_prompt: str = "default"):
        super().__init__()
        import reasoning_gym
        from reasoning_gym.utils import SYSTEM_PROMPTS

        if size < 1:
            raise ConfigError(f"rg/{dataset}-v0: size must be >= 1, got {size}.")
        if system_prompt not in SYSTEM_PROMPTS:
            raise ConfigError(f"rg/{dataset}-v0: system_prompt must be one of {sorted(SYSTEM_PROMPTS)}, got {system_prompt!r}.")
        try:
            self.dataset = reasoning_gym.create_dataset(dataset, seed=seed, size=size, **(config or {}))
        except (TypeError, ValueError, AssertionError) as e:
            raise ConfigError(f"rg/{dataset}-v0: reasoning-gym rejected the dataset config {config!r} ({e}); "
                              "see the dataset's config class in reasoning_gym for its fields.") from e
        self.name = dataset
        self.system_prompt = SYSTEM_PROMPTS[system_prompt]
        self._entries: dict[int, dict[str, Any]] = {}

    def entry(self, index: int) -> dict[str, Any]:
        if index not in self._entries:
            self._entries[index] = self.dataset[index]
        return self._entries[index]

    def num_tasks(self) -> int:
        return len(self.dataset)

    def get_task(self, index: int) -> Task:
        e = self.entry(index)
        answer = e.get("answer")
        return Task(id=f"{self.name}-{index}", messages=(system(self.system_prompt), user(str(e["question"]))),
                    answer=None if answer is None else str(answer), metadata={"index": index})

    def verify(self, task: Task, action: str) -> Verdict:
        from reasoning_gym.utils import extract_answer

        entry = self.entry(int(task.metadata["index"]))  # type: ignore[arg-type]
        oracle = f"The correct answer is {task.answer}." if task.answer is not None else \
            "This task has no single reference answer; any valid solution scores."
        answer = extract_answer(action)
        if answer is None:
            return Verdict(reward=0.0, success=False, parse_error="no <answer> tags",
                           feedback="No final answer found: put it inside <answer></answer> tags.",
                           oracle_feedback=f"No final answer found. {oracle}", info={"score": 0.0})
        info: dict[str, Any] = {}
        try:
            score = float(self.dataset.score_answer(answer, entry) or 0.0)
        except Exception as e:  # a scorer that chokes on an odd answer: a wrong answer, not a crash
            score, info["score_error"] = 0.0, f"{type(e).__name__}: {e}"[:300]
        score = min(max(score, 0.0), 1.0) if score == score else 0.0
        if score >= FULL_SCORE:
            return Verdict(reward=1.0, success=True, feedback="Your answer is correct.", info={"score": 1.0})
        feedback = "Your answer is incorrect." if score == 0.0 else \
            f"Your answer is partly right (score {score:.2f} out of 1)."
        return Verdict(reward=score, success=False, feedback=feedback + " Check your reasoning and try again.",
                       oracle_feedback=f"{feedback} {oracle}", info={"score": score, **info})

    def gold_reply(self, task: Task) -> str | None:
        """The reference answer in the expected format (None for datasets without one)."""
        return None if task.answer is None else f"<answer>{task.answer}</answer>"


__all__ = ["ReasoningGymEnv"]
