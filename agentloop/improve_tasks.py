"""The tasks of an improve run: the environment of each split, the held-out indices, and each
iteration's fresh training tasks with every held-out prompt removed (no held-out problem is ever
trained on)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from agentloop.errors import ConfigError
from agentloop.improve_config import EnvSettings

__all__ = ["env_factory", "eval_indices", "prompt_text", "train_indices"]


def env_factory(cfg: EnvSettings, split: Literal["train", "eval"]) -> Callable[[], Any]:
    """A factory of the ``split``'s environment: one attempt (the loop's wrappers add more)."""
    from agentloop.registry import make

    kwargs = cfg.split_kwargs(split)

    def factory() -> Any:
        return make(cfg.id, max_attempts=1, **kwargs)
    return factory


def prompt_text(env: Any, index: int) -> str:
    """The user text of task ``index`` (what held-out deduplication compares)."""
    obs, _ = env.reset(options={"index": index})
    return "\n".join(m.content for m in obs if m.role == "user")


def _num_tasks(env: Any) -> int | None:
    fn = getattr(env.unwrapped, "num_tasks", None)
    return int(fn()) if callable(fn) else None


def eval_indices(cfg: EnvSettings) -> tuple[int, ...]:
    """The held-out task indices: the first ``eval_tasks`` of the held-out split (refused if it has fewer)."""
    env = env_factory(cfg, "eval")()
    n = _num_tasks(env)
    if n is not None and n < cfg.eval_tasks:
        raise ConfigError(f"env.eval_tasks={cfg.eval_tasks} but the held-out split has only {n} tasks; lower it.")
    return tuple(range(cfg.eval_tasks))


def train_indices(cfg: EnvSettings, iteration: int, held_out_prompts: set[str]) -> tuple[int, ...]:
    """Fresh training tasks for ``iteration`` (1-based): the iteration's slice of the task sequence with held-out prompts removed."""
    env = env_factory(cfg, "train")()
    n = _num_tasks(env)
    kept: list[int] = []
    want = iteration * cfg.train_tasks
    i, limit = 0, 50 * want
    while len(kept) < want and i < limit:
        idx = i % n if n else i
        if not (cfg.dedupe and prompt_text(env, idx) in held_out_prompts):
            kept.append(idx)
        i += 1
    if not kept:
        raise ConfigError("every training task also occurs in the held-out split; choose other env.train_kwargs.")
    out = kept[(iteration - 1) * cfg.train_tasks: want]
    return tuple(out) if out else tuple(kept[-cfg.train_tasks:])
