"""One small error hierarchy. Every message says how to fix the problem."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence

#: The optional extra (pyproject ``[project.optional-dependencies]``) that installs each optional module.
EXTRA_OF = {"torch": "hf", "transformers": "hf", "peft": "hf", "trl": "hf", "accelerate": "hf", "safetensors": "hf",
            "gguf": "hf", "fastapi": "serve", "uvicorn": "serve", "vllm": "vllm", "ctranslate2": "ct2",
            "llama_cpp": "llamacpp", "docker": "docker", "ray": "ray", "matplotlib": "report", "datasets": "formats",
            "pyarrow": "formats"}


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


def install_hint(modules: Sequence[str]) -> str:
    """How to install ``modules``: the pip command of the extras that provide them (torch first: see the README)."""
    extras = sorted({EXTRA_OF[m.split(".")[0]] for m in modules if m.split(".")[0] in EXTRA_OF})
    if not extras:
        return f"pip install {' '.join(modules)}"
    hint = f"pip install 'agentloop[{','.join(extras)}]'"
    return hint + (" (install torch first, as the README shows, so that pip keeps the build you want)"
                   if "hf" in extras else "")


def require_modules(what: str, modules: Sequence[str]) -> None:
    """Raise a ConfigError naming the install command when a module ``what`` needs cannot be imported here."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(f"{what} needs {', '.join(missing)}, not installed in this Python environment "
                          f"({sys.prefix}): {install_hint(missing)}.")
