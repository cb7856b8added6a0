"""Self-improvement methods: SCoRe, RISE, LeTI, critique-in-the-loop, FAFT, and the rejection-sampling baseline.

Each method is one module with a pydantic config (``name`` selects it) and an :class:`Algorithm`
subclass that says (1) which episodes to collect, (2) how episodes become
:class:`~agentloop.training.data.TrainExample` s, and (3) which objective trains them. Rollout
collection is shared (:mod:`agentloop.algorithms.base`); the loss maths is in
:mod:`agentloop.algorithms.losses`. Importing this package does not import torch.

Methods are registered like environments: the built-ins through :func:`register` (the
``agentloop.algorithms`` entry point of this distribution), third-party methods through their own
entry point in that group, or in code with :func:`register_method`;
``agentloop.registry.make_algorithm(config)`` builds one.
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
    "gold_sft": ("agentloop.algorithms.gold_sft:GoldSFT", "agentloop.algorithms.gold_sft:GoldSFTConfig"),
}


def register(register: Callable[..., Any]) -> None:
    """The built-in methods (entry point ``agentloop.algorithms:register``)."""
    for name, (algorithm, config) in METHODS.items():
        register(name, algorithm, config=config)


def register_method(name: str, config_cls: type, algorithm_cls: type, *, override: bool = False) -> Any:
    """Register a self-improvement method from code, as a plugin's entry point would::

        class FirstTryConfig(MethodConfig):
            name: Literal["first_try"] = "first_try"

        agentloop.register_method("first_try", FirstTryConfig, FirstTry)
        agentloop.improve(ImproveConfig(method=FirstTryConfig(), ...))

    ``config_cls`` is a :class:`~agentloop.algorithms.base.MethodConfig` subclass whose ``name`` field
    defaults to ``name``; ``algorithm_cls`` an :class:`~agentloop.algorithms.base.Algorithm` subclass.
    Re-registering a name raises unless ``override=True``. Returns the stored spec.
    """
    from agentloop.algorithms.base import Algorithm, MethodConfig
    from agentloop.errors import RegistryError
    from agentloop.registry import algorithms

    if not (isinstance(config_cls, type) and issubclass(config_cls, MethodConfig)):
        raise RegistryError(f"register_method({name!r}, ...): config_cls must be a MethodConfig subclass, "
                            f"got {config_cls!r}; subclass agentloop.MethodConfig and fix its name field.")
    if not (isinstance(algorithm_cls, type) and issubclass(algorithm_cls, Algorithm)):
        raise RegistryError(f"register_method({name!r}, ...): algorithm_cls must be an Algorithm subclass, "
                            f"got {algorithm_cls!r}; subclass agentloop.Algorithm.")
    field = config_cls.model_fields.get("name")
    if field is None or field.default != name:
        raise RegistryError(f"register_method({name!r}, ...): {config_cls.__name__}.name must default to {name!r} "
                            f"(write `name: Literal[{name!r}] = {name!r}`), so that `method: {{name: {name}}}` "
                            "in an improve config selects this class.")
    return algorithms.register(name, algorithm_cls, config=config_cls, override=override)


__all__ = ["METHODS", "register", "register_method"]
