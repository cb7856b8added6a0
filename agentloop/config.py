"""Pydantic configs loaded from YAML or TOML files plus command-line dotted overrides.

::

    cfg = load_config(EvalConfig, "configs/eval.yaml", ["max_attempts=3", "policy.kwargs.device=cuda"])

* A file is YAML (``.yaml``/``.yml``) or TOML (``.toml``); its top level is a mapping.
* The configs of ``configs/`` ship inside the package (``agentloop/configs/`` once installed):
  :func:`find_config` turns a name such as ``default`` or ``score-arith-cpu`` into the shipped file,
  so ``agentloop improve`` works outside a checkout.
* An override is ``dotted.path=value``; the value is parsed as YAML (``3`` is an int, ``true`` a bool,
  ``[1, 2]`` a list, ``null`` None; quote it to keep a string: ``name='007'``). Overrides apply after
  the file, in order; intermediate mappings are created as needed.
* Validation errors become :class:`~agentloop.errors.ConfigError` naming every bad field by its
  dotted path, with the rule it broke and, for an unknown field, the fields that exist there.

Not covered: environment-variable interpolation and config inheritance (``defaults:`` lists).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import tomllib  # standard library from 3.11, the oldest Python agentloop supports (pyproject.toml)

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agentloop.errors import ConfigError

__all__ = ["ComponentRef", "apply_overrides", "find_config", "format_validation_error", "load_config", "merge",
           "parse_override", "read_config_file", "shipped_configs"]

M = TypeVar("M", bound=BaseModel)


class ComponentRef(BaseModel):
    """A registered component in a config: its registry id and constructor kwargs.

    The one way configs name policies, critics and teachers (``{id: llm, kwargs: {max_new_tokens: 256}}``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(description="Registry id (policies: hf, vllm, openai, scripted; critics: llm, verifier; or a plugin's).")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Constructor kwargs, checked against the factory.")

    def make_policy(self, **extra: Any) -> Any:
        """Build the registered policy ``id`` with ``kwargs`` updated by ``extra``."""
        from agentloop.registry import make_policy

        return make_policy(self.id, **{**self.kwargs, **extra})

    def critiques_with_actor(self) -> bool:
        """Whether the critic takes the actor's policy: its factory has a ``policy`` parameter (the ``llm``
        critic, or a plugin's) that ``kwargs`` leaves unset. No critic id is special-cased here."""
        import inspect

        from agentloop.registry import critics

        if "policy" in self.kwargs:
            return False
        try:
            return "policy" in inspect.signature(critics.spec(self.id).load()).parameters
        except (TypeError, ValueError):
            return False

    def make_critic(self, actor: Any = None) -> Any:
        """Build the registered critic ``id``; one that takes a policy and is given none in ``kwargs``
        critiques with ``actor`` (:meth:`critiques_with_actor`), e.g. a self-critiquing ``llm`` critic."""
        from agentloop.registry import make_critic

        kwargs = dict(self.kwargs)
        if actor is not None and self.critiques_with_actor():
            kwargs["policy"] = actor
        return make_critic(self.id, **kwargs)


def shipped_configs() -> Path:
    """The folder of the configs that ship with agentloop: ``agentloop/configs`` installed, ``configs/`` in a checkout."""
    from importlib import resources

    packaged = resources.files("agentloop") / "configs"  # where pip puts configs/ (setup.py: package data)
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parent.parent / "configs"  # a source checkout or an editable install


def find_config(name: str | Path) -> Path:
    """The config file ``name``: a path that exists, else a shipped config by name.

    ``find_config("score-arith-cpu")`` and ``find_config("score-arith-cpu.yaml")`` give the shipped file; an
    unknown name raises :class:`ConfigError` listing the shipped ones.
    """
    path = Path(name)
    if path.exists():
        return path
    base = shipped_configs()
    for candidate in (base / path, base / f"{path}.yaml"):
        if candidate.is_file():
            return candidate
    known = sorted(p.stem for p in base.glob("*.yaml")) if base.is_dir() else []  # efficacy/ holds benchmark cells
    raise ConfigError(f"config {str(name)!r} is neither a file nor a shipped config; shipped configs: "
                      f"{', '.join(known) or '(none found in ' + str(base) + ')'}.")


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML or TOML file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; check the path (or omit --config to use defaults).")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml", ".json"):
            data = yaml.safe_load(text)  # JSON is YAML
        else:
            raise ConfigError(f"config file {path}: unknown format {path.suffix!r}; use .yaml, .yml, .toml or .json.")
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"config file {path} is not valid {path.suffix[1:].upper()}: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: the top level must be a mapping of field names, got {type(data).__name__}.")
    return data


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"eval.max_attempts=3"`` -> ``(["eval", "max_attempts"], 3)``."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like dotted.field=value (e.g. eval.max_attempts=3).")
    key, raw = item.split("=", 1)
    path = key.strip().split(".")
    if not all(path):
        raise ConfigError(f"override {item!r}: {key!r} is not a dotted field path (e.g. eval.max_attempts).")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw  # not YAML: keep the text as written
    return path, value


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """A copy of ``data`` with each ``dotted.path=value`` override applied in order."""
    out: dict[str, Any] = json.loads(json.dumps(dict(data), default=str))
    for item in overrides:
        path, value = parse_override(item)
        node = out
        for i, part in enumerate(path[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                where = ".".join(path[: i + 1])
                raise ConfigError(f"override {item!r}: {where} is a {type(child).__name__}, not a section, "
                                  f"so it has no field {path[i + 1]!r}.")
            node = child
        node[path[-1]] = value
    return out


def _fields_at(model: type[BaseModel], loc: Sequence[Any]) -> list[str] | None:
    """The field names of the (nested) model at ``loc``, if it is a model."""
    current: Any = model
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(str(part))
        if field is None:
            return None
        current = field.annotation
        args = getattr(current, "__args__", None)  # Optional[Model] / Model | None
        if args:
            current = next((a for a in args if isinstance(a, type) and issubclass(a, BaseModel)), current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return None


def format_validation_error(model: type[BaseModel], err: ValidationError, source: str = "") -> str:
    """One readable line per problem, each naming the dotted field."""
    lines = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "<top level>"
        if e["type"] == "extra_forbidden":
            known = _fields_at(model, e["loc"][:-1])
            hint = f"; known fields here: {', '.join(known)}" if known else ""
            lines.append(f"  {where}: unknown field{hint}")
        else:
            lines.append(f"  {where}: {e['msg']} (got {e.get('input')!r})")
    src = f" from {source}" if source else ""
    return f"invalid {model.__name__}{src}:\n" + "\n".join(lines)


def load_config(model: type[M], path: str | Path | None = None, overrides: Sequence[str] = (),
                base: Mapping[str, Any] | None = None) -> M:
    """Build ``model`` from ``base``, then the file at ``path``, then ``overrides``; errors name the field."""
    data: dict[str, Any] = dict(base or {})
    if path is not None:
        data = merge(data, read_config_file(path))
    data = apply_overrides(data, overrides)
    try:
        return model.model_validate(data)
    except ValidationError as e:
        source = " + ".join([str(path)] * (path is not None) + ["overrides"] * bool(overrides))
        raise ConfigError(format_validation_error(model, e, source)) from e


def merge(a: dict[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """``a`` updated by ``b``, recursing into mappings present in both."""
    out = dict(a)
    for k, v in b.items():
        out[k] = merge(out[k], v) if isinstance(out.get(k), dict) and isinstance(v, Mapping) else v
    return out
