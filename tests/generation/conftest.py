"""The generation tests train nothing but copy a tiny model: the trainer tests' tiny random-init Llama."""

from __future__ import annotations

from tests.training.conftest import tiny_model  # noqa: F401  (a fixture, shared)
