import pytest

from agentloop.checker import check_env
from agentloop.errors import CheckError
from agentloop.wrappers import MultiAttempt
from tests.helpers import EchoEnv, SwappableEnv


def test_good_envs_pass():
    check_env(EchoEnv())
    check_env(MultiAttempt(EchoEnv(), max_attempts=3, feedback="env"))


class Nondeterministic(EchoEnv):
    """Ignores the seed: every reset moves to the next task."""

    calls = 0

    def reset(self, *, seed=None, options=None):
        self.calls += 1
        return super().reset(seed=seed, options={"index": self.calls})


class NonFiniteReward(EchoEnv):
    def step(self, action):
        obs, r, term, trunc, info = super().step(action)
        return obs, float("nan"), term, trunc, info


class BadInfo(EchoEnv):
    def step(self, action):
        obs, r, term, trunc, info = super().step(action)
        return obs, r, term, trunc, {**info, "obj": object()}


class NoSuccess(EchoEnv):
    def step(self, action):
        obs, r, term, trunc, info = super().step(action)
        info.pop("success")
        return obs, r, term, trunc, info


class Endless(EchoEnv):
    def step(self, action):
        obs, r, term, trunc, info = super().step(action)
        self._done = False
        return obs, r, False, False, info


class StringObs(EchoEnv):
    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed, options=options)
        return "hello", {}


class CloseTwiceFails(EchoEnv):
    closed = False

    def close(self):
        if self.closed:
            raise RuntimeError("already closed")
        self.closed = True


@pytest.mark.parametrize("env,message", [
    (Nondeterministic(), "not deterministic"),
    (NonFiniteReward(), "finite float"),
    (BadInfo(), "JSON-serialisable"),
    (NoSuccess(), "'success'"),
    (Endless(), "did not end"),
    (StringObs(), "list of agentloop.types.Message"),
    (CloseTwiceFails(), "idempotent"),
])
def test_broken_envs_fail_with_a_precise_message(env, message):
    with pytest.raises(CheckError, match=message):
        check_env(env, max_steps=5)


def test_step_that_raises_propagates_from_the_checker():
    def boom(env, action):
        raise ValueError("boom")

    with pytest.raises(ValueError):
        check_env(SwappableEnv(step_fn=boom))


def test_non_textenv_rejected():
    import gymnasium as gym

    with pytest.raises(CheckError, match="TextEnv"):
        check_env(gym.make("CartPole-v1"))
