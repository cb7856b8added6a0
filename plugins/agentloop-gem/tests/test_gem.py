"""agentloop-gem: GEM games as multi-turn environments; registration, win/lose verdicts, rollouts."""

from __future__ import annotations

import logging
import re
import subprocess
import sys

import pytest

pytest.importorskip("gem", reason="the agentloop-gem plugin is not installed (scripts/setup.sh)")
pytest.importorskip("agentloop_gem", reason="the agentloop-gem plugin is not installed (scripts/setup.sh)")

import agentloop  # noqa: E402
from agentloop import Job, rollout  # noqa: E402
from agentloop.errors import ConfigError, EnvError  # noqa: E402
from agentloop.policies.scripted import ScriptedPolicy  # noqa: E402
from agentloop_gem import GAMES  # noqa: E402


def test_games_are_registered_and_exist_in_gem():
    from gem.envs.registration import ENV_REGISTRY

    ids = set(agentloop.list_envs())
    assert set(GAMES) <= ids and len(GAMES) == 17
    assert set(GAMES.values()) <= set(ENV_REGISTRY)
    assert agentloop.spec("gem/GuessTheNumber-easy-v0").source == "agentloop-gem"


@pytest.mark.parametrize("env_id", sorted(GAMES))
def test_check_env(env_id):
    agentloop.check_env(agentloop.make(env_id))


def bisect(conversation) -> str:
    """Binary search over GuessTheNumber's hints."""
    first = conversation[0].content
    lo, hi = map(int, re.search(r"between (\d+) and (\d+)", first).groups())
    for m in conversation[1:]:
        if m.role == "user":
            guess, hint = re.search(r"you guessed (\d+), and the target number is (higher|lower)", m.content).groups()
            lo, hi = (int(guess) + 1, hi) if hint == "higher" else (lo, int(guess) - 1)
    return f"My guess: \\boxed{{{(lo + hi) // 2}}}"


def test_winning_play_is_a_success_and_hints_are_the_feedback():
    env = agentloop.make("gem/GuessTheNumber-hard-v0")
    obs, info = env.reset(seed=5)
    assert obs[0].role == "user" and "Guess The Number" in obs[0].content
    for _ in range(10):
        obs, reward, terminated, truncated, info = env.step(bisect(obs))
        if terminated or truncated:
            break
        assert info["feedback"].startswith("At turn") and not info["success"]
        assert obs[-1].content.endswith("Enter your next guess.")
    assert terminated and not truncated and info["success"] and reward == 1.0
    with pytest.raises(EnvError, match="call reset"):
        env.step("\\boxed{1}")


def test_unreadable_move_ends_the_game_as_a_failure():
    env = agentloop.make("gem/Sudoku-easy-v0")
    env.reset(seed=1)
    _, reward, terminated, _, info = env.step("no idea")
    assert terminated and reward < 0 and not info["success"]


def test_same_seed_same_game_and_env_kwargs():
    env = agentloop.make("gem/Mastermind-random-v0")
    assert env.reset(seed=7)[0] == env.reset(seed=7)[0]
    short = agentloop.make("gem/GuessTheNumber-easy-v0", env_kwargs={"max_turns": 1})
    short.reset(seed=0)
    _, _, _, truncated, info = short.step("\\boxed{1}")
    assert info["success"] or truncated
    with pytest.raises(ConfigError, match="rejected env_kwargs"):
        agentloop.make("gem/GuessTheNumber-easy-v0", env_kwargs={"colour": 1})


def test_importing_gem_leaves_the_root_logger_alone():
    # in a fresh interpreter: gem's import-time logging.basicConfig(level=INFO) must not leak out
    code = ("import logging, agentloop; agentloop.make('gem/TowerofHanoi-easy-v0'); r = logging.getLogger(); "
            "print(len(r.handlers), r.level)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["0", str(logging.WARNING)]


def test_rollout_records_multi_turn_episodes():
    episodes = rollout([Job("gem/GuessTheNumber-hard-v0", seed=s) for s in range(3)], ScriptedPolicy(bisect))
    assert all(e.error is None and e.success for e in episodes)
    assert all(len(e.turns) >= 1 for e in episodes) and any(len(e.turns) > 1 for e in episodes)
