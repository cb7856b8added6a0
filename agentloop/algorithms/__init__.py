"""Self-improvement methods: SCoRe, RISE, LeTI, critique-in-the-loop, FAFT, and the rejection-sampling baseline.

Each method is one module with a pydantic config (``name`` selects it) and an :class:`Algorithm`
subclass that says (1) which episodes to collect, (2) how episodes become
:class:`~agentloop.training.data.TrainExample` s, and (3) which objective trains them. Rollout
collection is shared (:mod:`agentloop.algorithms.base`); the loss maths is in
:mod:`agentloop.algorithms.losses`. Importing this package does not import torch.

Methods are registered like environments: the built-ins through :func:`register` (the
``agentloop.algorithms`` entry point of this distribution), third-party methods through their own
entry point in that group; ``agentloop.registry.make_algorithm(config)`` builds one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

METHODS = {
    "rs_sft": ("agentloop.algorithms.rs_sft:RejectionSamplingSFT", "agentloop.algorithms.rs_sft:RSSFTConfig"),
    "rise": ("agentloop.algorithms.rise:RISE", "agentloop.algorithms.rise:RISEConfig"),
    "score": ("agentloop.algorithms.score:SCoRe", "agentloop.algorithms.score:SCoReConfig"),
    "leti": ("agentloop.algorithms.leti:LeTI", "agentloop.algorithms.leti:LeTIConfig"),
    "critique_loop": ("agentloop.algorithms.critique_loop:CritiqueLoop",
                      "agentloop.algorithms.critique_loop:CritiqueLoopConfig"),
    "faft": ("agentloop.algorithms.faft:FAFT", "agentloop.algorithms.faft:FAFTConfig"),
}


def register(register: Callable[..., Any]) -> None:
    """The built-in methods (entry point ``agentloop.algorithms:register``)."""
    for name, (algorithm, config) in METHODS.items():
        register(name, algorithm, config=config)


def build_algorithm(config: Any) -> Any:
    """The Algorithm for a method config (its ``name`` is the registered id)."""
    from agentloop.registry import make_algorithm

    return make_algorithm(config)


__all__ = ["METHODS", "build_algorithm", "register"]
