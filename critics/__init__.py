"""Built-in critics, registered through the ``agentloop.critics`` entry point like any plugin."""

from __future__ import annotations

from collections.abc import Callable


def register(register: Callable[..., object]) -> None:
    del register  # critics are added by their modules' registrations below
