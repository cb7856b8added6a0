"""agentloop-countdown: an example third-party environment plugin.

Installing this distribution makes ``countdown/Countdown-v0`` (and a two-attempt variant) appear in
``agentloop envs list``; agentloop finds it through the ``agentloop.environments`` entry point.
"""

from __future__ import annotations

from collections.abc import Callable


def register(register: Callable[..., object]) -> None:
    register("countdown/Countdown-v0", entry_point="agentloop_countdown.env:CountdownEnv",
             description="Reach a target number with + - * / over given numbers (Countdown game).")
    register("countdown/Countdown-2attempts-v0", entry_point="agentloop_countdown.env:CountdownEnv",
             max_attempts=2, feedback="env",
             description="Countdown with one retry after the environment's feedback.")
