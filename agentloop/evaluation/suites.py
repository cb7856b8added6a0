"""Named evaluation suites: the built-in held-out suites (``suites.yaml`` next to this module) and
user-defined ones from a YAML/TOML file with the same shape.

A suite is a list of :class:`SuiteEntry` (environment id, make kwargs, task limit, label). Plugin
environments are included by id like built-ins. Built-in suites whose environments are not
installed are still listed; running them fails with the registry's "unknown id" error before any
generation starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agentloop.config import format_validation_error, read_config_file
from agentloop.errors import ConfigError

__all__ = ["Suite", "SuiteEntry", "builtin_suites", "get_suite", "load_suites"]

BUILTIN_FILE = Path(__file__).with_name("suites.yaml")


class SuiteEntry(BaseModel):
    """One environment of a suite."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    env: str = Field(description="Registered environment id (built-in or plugin), e.g. 'code/mbpp-v0'.")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments for agentloop.make.")
    limit: int | None = Field(default=None, ge=1, description="Evaluate only the first `limit` tasks.")
    name: str | None = Field(default=None, description="Label in reports; default: the env id (plus kwargs).")

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        if not self.kwargs:
            return self.env
        return self.env + "[" + ",".join(f"{k}={v}" for k, v in sorted(self.kwargs.items())) + "]"


class Suite(BaseModel):
    """A named list of environments."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    envs: tuple[SuiteEntry, ...]

    @field_validator("envs")
    @classmethod
    def _not_empty(cls, v: tuple[SuiteEntry, ...]) -> tuple[SuiteEntry, ...]:
        if not v:
            raise ValueError("a suite needs at least one environment (envs: [{env: ID}, ...])")
        labels = [e.label for e in v]
        dupes = sorted({x for x in labels if labels.count(x) > 1})
        if dupes:
            raise ValueError(f"environment labels must be unique within a suite; repeated: {dupes}. "
                             "Give the entries distinct `name`s.")
        return v


def _parse(data: dict[str, Any], source: str) -> dict[str, Suite]:
    out = {}
    for name, body in data.items():
        if not isinstance(body, dict):
            raise ConfigError(f"{source}: suite {name!r} must be a mapping with an `envs` list.")
        try:
            out[name] = Suite.model_validate({"name": name, **body})
        except ValidationError as e:
            raise ConfigError(format_validation_error(Suite, e, f"{source}, suite {name!r}")) from e
    return out


def builtin_suites() -> dict[str, Suite]:
    return _parse(yaml.safe_load(BUILTIN_FILE.read_text()) or {}, str(BUILTIN_FILE.name))


def load_suites(path: str | Path | None = None) -> dict[str, Suite]:
    """Built-in suites, plus (overriding by name) the suites in ``path``."""
    suites = builtin_suites()
    if path is not None:
        suites.update(_parse(read_config_file(path), str(path)))
    return suites


def get_suite(name: str, path: str | Path | None = None) -> Suite:
    suites = load_suites(path)
    if name not in suites:
        raise ConfigError(f"unknown suite {name!r}; known suites: {', '.join(sorted(suites))}. "
                          "Define your own in a YAML file and pass --suites-file.")
    return suites[name]
