"""Registries of environments, policies and critics, filled through entry points.

Ids of environments look like ``namespace/Name-vN`` (``math/gsm8k-v0``); policies and critics may use
plain names (``hf``, ``openai``, ``llm``). A registration stores a frozen spec; ``make`` builds the
object, validating keyword arguments against the factory's signature, and (for environments) stacks
the wrappers the spec asks for.

Plugins are distributions that declare an entry point in the group ``agentloop.environments``,
``agentloop.critics``, ``agentloop.policies`` or ``agentloop.algorithms`` (self-improvement methods:
``register("name", entry_point="pkg:Algorithm", config="pkg:Config")``). The entry point names a callable that receives the
registry's ``register`` function::

    # pyproject.toml of a plugin
    [project.entry-points."agentloop.environments"]
    countdown = "agentloop_countdown:register"

    # agentloop_countdown/__init__.py
    def register(register):
        register("countdown/Countdown-v0", entry_point="agentloop_countdown.env:CountdownEnv")

Plugins load lazily, on the first ``make``/``spec``/``list`` call, never at ``import agentloop``.
``AGENTLOOP_PLUGINS=a,b`` (entry-point or distribution names) limits which third-party plugins
load; built-ins (distribution ``agentloop``) always load. A plugin that fails to import is reported
with a warning naming the distribution and the exception, and the others still load.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata as md
import inspect
import os
import re
import threading
import logging
import traceback
import typing
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from agentloop.errors import EXTRA_OF, ConfigError, PluginError, RegistryError, install_hint
from agentloop.types import FeedbackMode

logger = logging.getLogger(__name__)

ENV_ID_RE = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+-v\d+$")
NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)?(-v\d+)?$")
PLUGINS_ENV_VAR = "AGENTLOOP_PLUGINS"

Kind = Literal["environments", "policies", "critics", "algorithms"]


class Spec(BaseModel):
    """A registered factory: where it lives and the default keyword arguments."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    id: str
    entry_point: str | Callable[..., Any] = Field(description="'module:attr' or a callable.")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Default keyword arguments.")
    description: str = ""
    source: str = Field(default="", description="Distribution that registered it ('' when registered in code).")

    def load(self) -> Callable[..., Any]:
        """Import and return the factory named by ``entry_point``."""
        if callable(self.entry_point):
            return self.entry_point
        module_name, _, attr = self.entry_point.partition(":")
        if not attr:
            raise ConfigError(f"{self.id}: entry_point {self.entry_point!r} must look like 'package.module:Name'.")
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            missing = (e.name or "").split(".")[0]
            fix = (install_hint([missing]) if missing in EXTRA_OF else "install the package that provides it"
                   + (f" (registered by {self.source})" if self.source else ""))
            raise RegistryError(f"{self.id}: cannot import {module_name!r} ({e}): {fix}.") from e
        try:
            obj = module
            for part in attr.split("."):
                obj = getattr(obj, part)
        except AttributeError as e:
            raise RegistryError(f"{self.id}: {module_name!r} has no attribute {attr!r}.") from e
        return obj


class EnvSpec(Spec):
    """An environment registration, with the wrappers ``make`` stacks by default.

    ``gym_spec`` is its Gymnasium form (:class:`gymnasium.envs.registration.EnvSpec`): ``make`` sets
    it as the environment's ``spec``, so ``env.spec.id`` and ``env.spec.kwargs`` name what was built
    and ``env.spec.additional_wrappers`` lists the wrappers stacked on it (MultiAttempt, TurnLimit,
    with their settings), as users of Gymnasium expect.
    """

    max_attempts: int = Field(default=1, ge=1, description="> 1 wraps the env in MultiAttempt(max_attempts=...).")
    feedback: FeedbackMode = Field(default="env", description="MultiAttempt feedback mode when max_attempts > 1.")
    stop_on_success: bool | None = Field(
        default=None, description="MultiAttempt stop at the first success; None = the feedback mode's rule "
        "(stop when the mode reveals the verdict, play every attempt under none/retry).")
    max_turns: int | None = Field(default=None, ge=1, description="Wrap in TurnLimit(max_turns) when set.")

    def gym_spec(self, kwargs: dict[str, Any]) -> Any:
        """The Gymnasium spec of an environment built from this registration with ``kwargs``."""
        from gymnasium.envs.registration import EnvSpec as GymEnvSpec

        return GymEnvSpec(id=self.id, entry_point=self.entry_point, kwargs=dict(kwargs),
                          max_episode_steps=self.max_turns, order_enforce=False, disable_env_checker=True)


class AlgorithmSpec(Spec):
    """A self-improvement method: ``entry_point`` names the :class:`~agentloop.algorithms.base.Algorithm`
    subclass, ``config`` its :class:`~agentloop.algorithms.base.MethodConfig` subclass (whose ``name``
    field is the registered id; it is the ``method`` section of an improve config)."""

    config: str | type = Field(description="'module:ConfigClass' or the class.")

    def load_config(self) -> type:
        """The method's config class."""
        return Spec(id=self.id, entry_point=self.config, source=self.source).load()  # type: ignore[arg-type,return-value]


class PluginInfo(BaseModel):
    """What happened to one entry point during discovery (shown by ``agentloop plugins``)."""

    model_config = ConfigDict(frozen=True)

    group: str
    name: str
    value: str
    distribution: str
    version: str = ""
    status: Literal["loaded", "failed", "skipped"]
    error: str = ""
    registered: tuple[str, ...] = ()


S = TypeVar("S", bound=Spec)


def _validate_kwargs(owner: str, factory: Callable[..., Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """Check keyword arguments against the factory's signature and annotations.

    Raises ConfigError naming the offending field (unknown name or wrong type).
    """
    target = factory.__init__ if inspect.isclass(factory) else factory
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return kwargs
    try:
        hints = typing.get_type_hints(target)
    except Exception:
        hints = {}
    fields: dict[str, Any] = {}
    accepts_any = False
    for name, p in sig.parameters.items():
        if name == "self" or p.kind is p.VAR_POSITIONAL:
            continue
        if p.kind is p.VAR_KEYWORD:
            accepts_any = True
            continue
        ann = hints.get(name, Any)
        fields[name] = (ann, ... if p.default is p.empty else p.default)
    model = create_model(  # type: ignore[call-overload]
        f"{owner.replace('/', '_').replace('-', '_')}_kwargs",
        __config__=ConfigDict(extra="allow" if accepts_any else "forbid", arbitrary_types_allowed=True),
        **fields,
    )
    try:
        validated = model.model_validate(kwargs)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            field = ".".join(str(x) for x in err["loc"]) or "?"
            if err["type"] == "extra_forbidden":
                near = difflib.get_close_matches(field, list(fields), n=1)
                hint = f" (did you mean {near[0]!r}?)" if near else ""
                problems.append(f"unknown field {field!r}{hint}")
            elif err["type"] == "missing":
                problems.append(f"field {field!r} is required")
            else:
                problems.append(f"field {field!r}: {err['msg']} (got {err.get('input')!r})")
        raise ConfigError(
            f"Invalid arguments for {owner!r}: " + "; ".join(problems) + f". Accepted fields: {', '.join(fields) or 'none'}."
        ) from e
    return {k: getattr(validated, k, v) for k, v in kwargs.items()}


class Registry(Generic[S]):
    """Id -> spec mapping for one kind of component, filled from code and from entry points."""

    def __init__(self, kind: Kind, spec_cls: type[S], id_re: re.Pattern[str] = NAME_RE):
        self.kind = kind
        self.group = f"agentloop.{kind}"
        self.spec_cls = spec_cls
        self.id_re = id_re
        self._specs: dict[str, S] = {}
        self._plugins: list[PluginInfo] = []
        self._loaded = False
        self._loading_source = ""
        self._lock = threading.RLock()

    # -- registration ---------------------------------------------------------------------------
    def register(self, id: str, entry_point: str | Callable[..., Any], kwargs: dict[str, Any] | None = None,
                 *, override: bool = False, **spec_fields: Any) -> S:
        """Register ``id``. Re-registering an id raises unless ``override=True``."""
        if not self.id_re.match(id):
            form = "namespace/Name-vN (e.g. 'math/gsm8k-v0')" if self.id_re is ENV_ID_RE else "name or namespace/Name-vN"
            raise RegistryError(f"Invalid {self.kind[:-1]} id {id!r}: ids look like {form}.")
        with self._lock:
            if id in self._specs and not override:
                raise RegistryError(
                    f"{self.kind[:-1].capitalize()} {id!r} is already registered (by {self._specs[id].source or 'code'}); "
                    "pass override=True to replace it or choose another id."
                )
            try:
                spec = self.spec_cls(id=id, entry_point=entry_point, kwargs=dict(kwargs or {}),
                                     source=spec_fields.pop("source", self._loading_source), **spec_fields)
            except ValidationError as e:
                raise ConfigError(f"Invalid registration of {id!r}: {e}") from e
            self._specs[id] = spec
            return spec

    def unregister(self, id: str) -> None:
        with self._lock:
            self._specs.pop(id, None)

    @contextmanager
    def registered(self, id: str, entry_point: str | Callable[..., Any], **kw: Any) -> Iterator[S]:
        """Register for the duration of a ``with`` block (handy in tests)."""
        spec = self.register(id, entry_point, override=True, **kw)
        try:
            yield spec
        finally:
            self.unregister(id)

    # -- discovery ------------------------------------------------------------------------------
    def load_plugins(self, force: bool = False) -> list[PluginInfo]:
        """Discover entry points once (or again with ``force``); returns what happened to each."""
        with self._lock:
            if self._loaded and not force:
                return list(self._plugins)
            self._loaded = True
            self._plugins = []
            allowed = os.environ.get(PLUGINS_ENV_VAR)
            allow = None if allowed is None else {a.strip() for a in allowed.split(",") if a.strip()}
            eps = list(md.entry_points(group=self.group))
            if not any(_dist_name(ep) == "agentloop" for ep in eps):
                # Running from a source tree that was never installed: load built-ins directly.
                eps.insert(0, md.EntryPoint(name="builtin", value=f"agentloop.{self.kind}:register", group=self.group))
            for ep in eps:
                self._plugins.append(self._load_entry_point(ep, allow))
            return list(self._plugins)

    def _load_entry_point(self, ep: md.EntryPoint, allow: set[str] | None) -> PluginInfo:
        dist = _dist_name(ep) or "agentloop"
        version = ep.dist.version if getattr(ep, "dist", None) is not None else ""
        base = dict(group=self.group, name=ep.name, value=ep.value, distribution=dist, version=version)
        if dist != "agentloop" and allow is not None and ep.name not in allow and dist not in allow:
            return PluginInfo(**base, status="skipped", error=f"not listed in {PLUGINS_ENV_VAR}")
        before = set(self._specs)
        self._loading_source = dist
        try:
            obj = ep.load()
            if callable(obj):
                obj(self.register)
        except Exception as e:  # a broken plugin must not take the others down
            err = f"{type(e).__name__}: {e}"
            warnings.warn(
                f"agentloop: plugin {ep.name!r} from distribution {dist!r} ({self.group}) failed to load: {err}. "
                f"Other plugins still load; run 'agentloop plugins' for details.",
                RuntimeWarning, stacklevel=3,
            )
            return PluginInfo(**base, status="failed", error=err + "\n" + traceback.format_exc(limit=3))
        finally:
            self._loading_source = ""
        registered = tuple(sorted(set(self._specs) - before))
        logger.debug("%s: plugin %r from %s registered %s", self.group, ep.name, dist, ", ".join(registered) or "nothing")
        return PluginInfo(**base, status="loaded", registered=registered)

    @property
    def plugins(self) -> list[PluginInfo]:
        return self.load_plugins()

    # -- lookup ---------------------------------------------------------------------------------
    def spec(self, id: str) -> S:
        self.load_plugins()
        try:
            return self._specs[id]
        except KeyError:
            raise RegistryError(self._unknown_message(id)) from None

    def _unknown_message(self, id: str) -> str:
        ids = sorted(self._specs)
        near = difflib.get_close_matches(id, ids, n=3, cutoff=0.5)
        if not near:
            stem = id.split("/")[-1].split("-v")[0].lower()
            near = [i for i in ids if stem and stem in i.lower()][:3]
        msg = f"No {self.kind[:-1]} registered with id {id!r}."
        if near:
            msg += f" Did you mean: {', '.join(near)}?"
        failed = [p for p in self._plugins if p.status == "failed"]
        if failed:
            msg += f" Note: {len(failed)} plugin(s) failed to load ({', '.join(p.distribution for p in failed)})."
        cmd = "agentloop envs list" if self.kind == "environments" else "agentloop plugins"
        msg += f" Run '{cmd}' to see everything registered; is the package that registers it installed?"
        return msg

    def list(self) -> list[S]:
        self.load_plugins()
        return [self._specs[k] for k in sorted(self._specs)]

    def ids(self) -> list[str]:
        return [s.id for s in self.list()]

    def make(self, id: str, **kwargs: Any) -> Any:
        """Build the component registered as ``id`` with its default kwargs updated by ``kwargs``."""
        spec = self.spec(id)
        factory = spec.load()
        merged = _validate_kwargs(id, factory, {**spec.kwargs, **kwargs})
        return factory(**merged)


def _dist_name(ep: md.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return dist.name if dist is not None else ""


class EnvRegistry(Registry[EnvSpec]):
    """The environment registry: ``make`` also stacks MultiAttempt and TurnLimit from the spec."""

    def __init__(self) -> None:
        super().__init__("environments", EnvSpec, ENV_ID_RE)

    def make(self, id: str, *, max_attempts: int | None = None, max_turns: int | None = None, **kwargs: Any) -> Any:
        """Build ``id``: the factory gets the spec's kwargs updated by ``kwargs``; MultiAttempt's own settings
        (``feedback``, ``stop_on_success``, ``critic``, ``critique_all``, templates, ...: every
        :class:`~agentloop.wrappers.MultiAttemptConfig` field) go to the wrapper instead."""
        from agentloop.wrappers import MultiAttempt, MultiAttemptConfig, TurnLimit

        spec = self.spec(id)
        wrapper_keys = (set(MultiAttemptConfig.model_fields) - {"max_attempts"}) | {"critic"}
        popped = {k: kwargs.pop(k) for k in list(kwargs) if k in wrapper_keys}
        attempt_kwargs = {k: v for k, v in popped.items() if v is not None}  # None = the spec's default
        env = super().make(id, **kwargs)
        env.unwrapped.spec = spec.gym_spec({**spec.kwargs, **kwargs})
        n = spec.max_attempts if max_attempts is None else max_attempts
        if n > 1:
            attempt_kwargs.setdefault("feedback", spec.feedback)
            if ("stop_on_success" not in attempt_kwargs and spec.stop_on_success is not None
                    and not attempt_kwargs.get("critique_all")):
                # no oracle under critique_all: the critic's approval ends the episode, not the verifier's verdict
                attempt_kwargs["stop_on_success"] = spec.stop_on_success
            env = MultiAttempt(env, max_attempts=n, **attempt_kwargs)
        elif attempt_kwargs.get("feedback", spec.feedback) != spec.feedback or attempt_kwargs.get("critique_all"):
            raise ConfigError(f"{', '.join(sorted(attempt_kwargs))} need max_attempts > 1 (got {n}): feedback and "
                              "critiques come between attempts.")
        turns = spec.max_turns if max_turns is None else max_turns
        if turns is not None:
            env = TurnLimit(env, max_turns=turns)
        return env


envs = EnvRegistry()
policies: Registry[Spec] = Registry("policies", Spec)
critics: Registry[Spec] = Registry("critics", Spec)
algorithms: Registry[AlgorithmSpec] = Registry("algorithms", AlgorithmSpec)


def register(id: str, entry_point: str | Callable[..., Any], kwargs: dict[str, Any] | None = None, **spec_fields: Any) -> EnvSpec:
    """Register an environment: ``register("ns/Name-v0", entry_point="pkg.mod:Cls", kwargs={...}, max_attempts=2)``."""
    return envs.register(id, entry_point, kwargs, **spec_fields)


def make(id: str, **overrides: Any) -> Any:
    """Build a registered environment; ``overrides`` update its kwargs or its wrappers (max_attempts and any
    MultiAttempt setting: feedback, stop_on_success, critique_all, critic, ...; max_turns for TurnLimit)."""
    return envs.make(id, **overrides)


def spec(id: str) -> EnvSpec:
    return envs.spec(id)


def list_envs() -> list[str]:
    return envs.ids()


def make_policy(id: str, **kwargs: Any) -> Any:
    return policies.make(id, **kwargs)


def make_critic(id: str, **kwargs: Any) -> Any:
    return critics.make(id, **kwargs)


def make_algorithm(config: Any) -> Any:
    """The :class:`~agentloop.algorithms.base.Algorithm` of a method config (its ``name`` is the registered id)."""
    return algorithms.spec(config.name).load()(config)


def method_config(data: Any) -> Any:
    """Validate an improve config's ``method`` section with the config class its ``name`` registers."""
    if not isinstance(data, dict) or "name" not in data:
        raise ValueError(f"method needs a name (one of: {', '.join(algorithms.ids())}), got {data!r}")
    try:
        cls = algorithms.spec(str(data["name"])).load_config()
    except RegistryError as e:
        raise ValueError(str(e)) from None
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        from agentloop.config import format_validation_error

        raise ValueError(format_validation_error(cls, e).replace("\n  ", "\n  method.")) from None


def all_plugins() -> list[PluginInfo]:
    """Discovery results for every group."""
    return [*envs.plugins, *policies.plugins, *critics.plugins, *algorithms.plugins]


__all__ = [
    "AlgorithmSpec", "EnvRegistry", "EnvSpec", "PluginError", "PluginInfo", "Registry", "Spec", "algorithms",
    "all_plugins", "critics", "envs", "list_envs", "make", "make_algorithm", "make_critic", "make_policy",
    "method_config", "policies", "register", "spec",
]
