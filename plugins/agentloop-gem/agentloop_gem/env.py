"""A GEM game as a multi-turn :class:`~agentloop.env.TextEnv`.

The first observation is the game's instructions as a user message. Each action (the model's reply;
GEM games read the move inside ``\\boxed{...}``) is passed to the game; the game's reply, followed by
its prompt for the next move (GEM's ``suffix``), becomes the next user message, so the observation
is the whole conversation. The reward of each step is GEM's (shaped: partial progress, -0.1 for a
move that cannot be read); the episode ends when the game says so (``terminated``) or at the game's
own turn limit (``truncated``).

``info["feedback"]`` is the game's reply to the last move: it describes the state of the game
(higher/lower, pegs, the board), never a solution, except the congratulation after a win.
``info["success"]`` is True when the game ended by itself (not at its turn limit) with a positive
reward: the win condition common to these games (a format error ends some games with -0.1, a mine
ends Minesweeper with 0).

Seeding: GEM games draw from Python's global ``random`` (and numpy's global state), which GEM's
``reset(seed)`` reseeds; this environment always passes a seed (from its own seeded generator when
``reset`` gets none), so the same seed gives the same game, at the cost of resetting those global
generators, as GEM itself does.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from typing import Any

from agentloop.env import TextEnv
from agentloop.errors import ConfigError, EnvError
from agentloop.types import Message, assistant, user


def _gem_make(game: str, kwargs: dict[str, Any]) -> Any:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        from gem.envs.registration import ENV_REGISTRY, make
    finally:  # gem calls logging.basicConfig(level=INFO) at import; keep the host's logging as it was
        root.handlers[:] = handlers
        root.setLevel(level)
    if game not in ENV_REGISTRY:
        near = sorted(i for i in ENV_REGISTRY if i.startswith("game:"))
        raise ConfigError(f"GEM has no game {game!r}; its games are {near}.")
    entry = ENV_REGISTRY[game].entry_point
    if isinstance(entry, str):
        module, name = entry.split(":")
        entry = getattr(importlib.import_module(module), name)
    known = {p.name for p in inspect.signature(entry).parameters.values()
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"}
    unknown = sorted(set(kwargs) - known)  # GEM games swallow unknown keywords (**_): catch typos here
    if unknown:
        raise ConfigError(f"GEM game {game!r} rejected env_kwargs {unknown}; it takes {sorted(known)}.")
    try:
        return make(game, **kwargs)
    except TypeError as e:
        raise ConfigError(f"GEM game {game!r} rejected env_kwargs {kwargs!r} ({e}).") from e


class GemGameEnv(TextEnv):
    """``make("gem/GuessTheNumber-easy-v0")``; ``env_kwargs`` override the GEM game's (e.g. ``max_turns``)."""

    def __init__(self, game: str, env_kwargs: dict[str, Any] | None = None):
        super().__init__()
        self.game_id = game
        self.game = _gem_make(game, dict(env_kwargs or {}))
        self._messages: list[Message] = []
        self._done = True

    @staticmethod
    def _text(obs: str, info: dict[str, Any], done: bool) -> str:
        suffix = info.get("suffix") if isinstance(info, dict) else None
        return obs if done or not suffix else f"{obs}\n{suffix}"

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        game_seed = int(self.np_random.integers(2**31 - 1))
        obs, info = self.game.reset(seed=game_seed)
        self._messages = [user(self._text(str(obs), info, False))]
        self._done = False
        return list(self._messages), {"game": self.game_id, "game_seed": game_seed}

    def step(self, action: str):
        if self._done:
            raise EnvError(f"{self.game_id}: the episode is over; call reset() first.")
        obs, reward, terminated, truncated, info = self.game.step(action)
        terminated, truncated, reward = bool(terminated), bool(truncated), float(reward)
        done = terminated or truncated
        self._done = done
        success = terminated and not truncated and reward > 0
        self._messages += [assistant(action)]
        if not done:
            self._messages.append(user(self._text(str(obs), info, False)))
        return list(self._messages), reward, terminated, truncated, {
            "feedback": str(obs), "success": success, "game_reward": reward}


__all__ = ["GemGameEnv"]
