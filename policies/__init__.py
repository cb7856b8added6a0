"""Built-in policies, registered through the ``agentloop.policies`` entry point like any plugin."""

from __future__ import annotations

from collections.abc import Callable


def register(register: Callable[..., object]) -> None:
    register("scripted", "agentloop.policies.scripted:ScriptedPolicy",
             description="Replies from a script (list by turn, dict by prompt, or a function); tests and demos.")
