"""`check_env`: the public conformance check every registered environment must pass.

It checks, with plain actions (an empty string and a short text):

* ``reset`` returns ``(observation, info)``: a non-empty list of Message records and a dict;
* seeded determinism: the same seed and options give the same observation and info;
* ``step`` returns a 5-tuple with a finite float reward, bool ``terminated``/``truncated``, a dict
  ``info`` that is JSON-serialisable, with ``feedback`` a str and ``success`` a bool once an episode
  (or attempt) ends; observations stay inside ``observation_space``;
* episodes end within ``max_steps`` actions;
* ``close`` can be called twice.

Example::

    >>> from agentloop import check_env, make
    >>> check_env(make("math/arith-v0"))   # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
from typing import Any

import gymnasium as gym

from agentloop.errors import CheckError
from agentloop.types import Message

PROBE_ACTIONS = ("", "I think the answer is 42.")


def _fail(env: gym.Env, msg: str) -> CheckError:
    name = getattr(getattr(env, "spec", None), "id", None) or type(env.unwrapped).__name__
    return CheckError(f"check_env({name}): {msg}")


def _check_obs(env: gym.Env, obs: Any, where: str) -> None:
    if not isinstance(obs, list) or not obs or not all(isinstance(m, Message) for m in obs):
        raise _fail(env, f"{where} must return a non-empty list of agentloop.types.Message, got {type(obs).__name__}.")
    if not env.observation_space.contains(obs):
        raise _fail(env, f"{where}: observation is not in observation_space {env.observation_space!r}.")


def _check_info(env: gym.Env, info: Any, where: str) -> None:
    if not isinstance(info, dict):
        raise _fail(env, f"{where} must return info as a dict, got {type(info).__name__}.")
    try:
        json.dumps(info)
    except (TypeError, ValueError) as e:
        raise _fail(env, f"{where}: info must be JSON-serialisable (convert records with model_dump()): {e}") from e


def _dump(obs: list[Message]) -> list[dict[str, Any]]:
    return [m.model_dump() for m in obs]


def check_env(env: gym.Env, seed: int = 0, max_steps: int = 64, options: dict[str, Any] | None = None) -> None:
    """Raise :class:`~agentloop.errors.CheckError` naming the first broken rule; return None if all pass."""
    from agentloop.env import TextEnv

    if not isinstance(env.unwrapped, TextEnv):
        raise _fail(env, f"the environment must subclass agentloop.TextEnv, got {type(env.unwrapped).__mro__[1:3]}.")
    first = env.reset(seed=seed, options=options)
    if not (isinstance(first, tuple) and len(first) == 2):
        raise _fail(env, "reset must return (observation, info).")
    obs1, info1 = first
    _check_obs(env, obs1, "reset")
    _check_info(env, info1, "reset")
    obs2, info2 = env.reset(seed=seed, options=options)
    if _dump(obs1) != _dump(obs2) or json.dumps(info1, sort_keys=True) != json.dumps(info2, sort_keys=True):
        raise _fail(env, f"reset(seed={seed}) is not deterministic: two resets with the same seed differ.")

    for action in PROBE_ACTIONS:
        env.reset(seed=seed, options=options)
        for t in range(max_steps):
            out = env.step(action)
            if not (isinstance(out, tuple) and len(out) == 5):
                raise _fail(env, "step must return (observation, reward, terminated, truncated, info).")
            obs, reward, terminated, truncated, info = out
            where = f"step {t} with action {action!r}"
            _check_obs(env, obs, where)
            _check_info(env, info, where)
            if isinstance(reward, bool) or not isinstance(reward, (int, float)) or not math.isfinite(reward):
                raise _fail(env, f"{where}: reward must be a finite float, got {reward!r}.")
            if not isinstance(terminated, bool) or not isinstance(truncated, bool):
                raise _fail(env, f"{where}: terminated and truncated must be bool.")
            if "feedback" in info and not isinstance(info["feedback"], str):
                raise _fail(env, f"{where}: info['feedback'] must be a str.")
            if "success" in info and not isinstance(info["success"], bool):
                raise _fail(env, f"{where}: info['success'] must be a bool.")
            if info.get("critique_request") is not None:
                break  # a deferred critique needs a critic; the probe stops here
            if terminated or truncated:
                if "success" not in info or "feedback" not in info:
                    raise _fail(env, f"{where}: the final info must carry 'feedback' (str) and 'success' (bool).")
                break
        else:
            raise _fail(env, f"episode did not end within {max_steps} steps of action {action!r}; add a TurnLimit.")
    env.close()
    try:
        env.close()
    except Exception as e:
        raise _fail(env, f"close() must be idempotent; the second call raised {type(e).__name__}: {e}") from e


__all__ = ["check_env"]
