"""agentloop-reasoning-gym: every reasoning-gym dataset as an agentloop environment.

Installing this distribution registers ``rg/<dataset>-v0`` for each dataset of
:data:`~agentloop_reasoning_gym.names.DATASET_NAMES` (e.g. ``rg/basic_arithmetic-v0``,
``rg/leg_counting-v0``) through the ``agentloop.environments`` entry point. Registering imports
nothing heavy; reasoning-gym loads when the first environment is made.

    agentloop envs list | grep rg/
    agentloop envs check rg/basic_arithmetic-v0
"""

from __future__ import annotations

from collections.abc import Callable

from agentloop_reasoning_gym.names import DATASET_NAMES


def register(register: Callable[..., object]) -> None:
    for name in DATASET_NAMES:
        register(f"rg/{name}-v0", entry_point="agentloop_reasoning_gym.env:ReasoningGymEnv", kwargs={"dataset": name},
                 description=f"reasoning-gym '{name}', scored by its score_answer; answer in <answer> tags.")
