"""Self-improvement methods: SCoRe, RISE, LeTI, critique-in-the-loop, FAFT, and the rejection-sampling baseline.

Each method is one module with a pydantic config (``name`` selects it) and an :class:`Algorithm`
subclass that says (1) which episodes to collect, (2) how episodes become
:class:`~agentloop.training.data.TrainExample` s, and (3) which objective trains them. Rollout
collection is shared (:mod:`agentloop.algorithms.base`); the loss maths is in
:mod:`agentloop.algorithms.losses`. Importing this package does not import torch.
"""

from __future__ import annotations

from typing import Any

METHODS = {
    "rs_sft": "agentloop.algorithms.rs_sft:RejectionSamplingSFT",
    "rise": "agentloop.algorithms.rise:RISE",
    "score": "agentloop.algorithms.score:SCoRe",
    "leti": "agentloop.algorithms.leti:LeTI",
    "critique_loop": "agentloop.algorithms.critique_loop:CritiqueLoop",
    "faft": "agentloop.algorithms.faft:FAFT",
}


def build_algorithm(config: Any) -> Any:
    """The Algorithm for a method config (its ``name`` field picks the class)."""
    import importlib

    module, cls = METHODS[config.name].split(":")
    return getattr(importlib.import_module(module), cls)(config)


__all__ = ["METHODS", "build_algorithm"]
