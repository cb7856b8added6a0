"""One small error hierarchy. Every message says how to fix the problem."""

from __future__ import annotations


class AgentLoopError(Exception):
    """Base of every error agentloop raises on purpose."""


class ConfigError(AgentLoopError, ValueError):
    """A configuration (or constructor argument) is invalid; the message names the field and the rule."""


class RegistryError(AgentLoopError, KeyError):
    """An id is unknown, malformed or registered twice."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable
        return str(self.args[0]) if self.args else ""


class PluginError(AgentLoopError):
    """A plugin could not be loaded (recorded, and warned about, not raised during discovery)."""


class EnvError(AgentLoopError):
    """An environment was used against its contract (e.g. step before reset)."""


class PolicyError(AgentLoopError):
    """A policy could not generate (model missing, server unreachable after retries, ...)."""


class CriticError(AgentLoopError):
    """A critic could not produce a critique at all (malformed output is *not* an error: see Critique)."""


class SandboxError(AgentLoopError):
    """The sandbox cannot run code safely here; the message says what to install or choose."""


class CheckError(AgentLoopError, AssertionError):
    """An environment failed the conformance check."""
