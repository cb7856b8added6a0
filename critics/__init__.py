"""Built-in critics, registered through the ``agentloop.critics`` entry point like any plugin."""

from __future__ import annotations

from collections.abc import Callable


def register(register: Callable[..., object]) -> None:
    register("llm", "agentloop.critics.llm:LLMCritic",
             description="Prompts a policy for a step-level critique (docs/methods.md section 4) and parses it.")
    register("verifier", "agentloop.critics.verifier:VerifierCritic",
             description="Turns the environment's own feedback and verdict into a critique (the oracle critic).")
