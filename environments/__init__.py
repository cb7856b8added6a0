"""Built-in environments, registered through the ``agentloop.environments`` entry point like any plugin."""

from __future__ import annotations

from collections.abc import Callable


def register(register: Callable[..., object]) -> None:
    del register  # each environment family adds its registrations here
