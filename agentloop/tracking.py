"""Experiment tracking: one small logger interface, TensorBoard by default, W&B / MLflow / trackio on request.

A :class:`Tracker` takes flat ``{tag: float}`` dicts with a step (``log``), the run's config once
(``log_config``) and is closed at the end (``close``). :func:`make_tracker` builds the trackers a
:class:`TrackingConfig` names and fans out to all of them; :func:`flatten_metrics` turns our
records (metrics rows, :class:`~agentloop.training.trainer.TrainStats`, ``Estimate``\\ s, nested
dicts, per-attempt lists) into such scalar tags.

Example::

    tracker = make_tracker(TrackingConfig(), run_dir)          # TensorBoard files in run_dir/tensorboard
    tracker.log_config(config.model_dump(mode="json"))
    tracker.log(flatten_metrics(row, prefix="eval"), step=iteration)
    tracker.close()

Backends (each package is imported only when its backend is configured; install them all with
``pip install 'agentloop[tracking]'``):

* ``tensorboard``: event files written with tensorboardX's ``SummaryWriter`` (no torch, no
  TensorFlow) under ``<run>/tensorboard``; view with ``tensorboard --logdir <run>``.
* ``wandb``: ``wandb.init(mode="offline")`` by default, files under ``<run>/wandb``
  (``wandb sync`` uploads them later). W&B wants one increasing step per run, while we log
  iteration metrics and training-step metrics on different axes, so every tag prefix gets its own
  step metric (``train/loss`` is plotted against ``train/step``, ``eval/*`` against ``eval/step``).
  W&B's service process writes the offline file: it is complete when the process exits (or after
  ``wandb.teardown()``).
* ``mlflow``: an ``MlflowClient`` run in a local SQLite store ``<run>/mlflow.db`` (artifacts in ``<run>/mlartifacts``) unless
  ``mlflow_tracking_uri`` says otherwise (``mlflow ui --backend-store-uri sqlite:///<run>/mlflow.db``;
  MLflow 3 keeps its plain-file store in maintenance mode).
* ``trackio``: ``trackio.init(project, name)``, stored locally in trackio's SQLite files
  (``$TRACKIO_DIR``, default ``~/.cache/huggingface/trackio``); ``trackio show`` opens the dashboard.

A backend that fails while logging is warned about once and switched off: tracking never stops a
run. Not covered: media, tables, histograms; resuming a W&B/MLflow run id after ``--resume`` (a
resumed run starts a new tracker run; TensorBoard simply adds an event file to the same folder).
"""

from __future__ import annotations

import dataclasses
import numbers
import re
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agentloop.errors import ConfigError

__all__ = [
    "MLflowTracker", "MultiTracker", "TensorBoardTracker", "Tracker", "TrackingConfig", "TrackioTracker",
    "WandbTracker", "flatten_metrics", "make_tracker", "resource_metrics", "tag",
]

Backend = Literal["tensorboard", "wandb", "mlflow", "trackio"]
INSTALL_HINT = "pip install 'agentloop[tracking]'"


@runtime_checkable
class Tracker(Protocol):
    """Where metrics go. ``metrics`` are flat scalar tags (see :func:`flatten_metrics`)."""

    def log(self, metrics: Mapping[str, float], step: int) -> None: ...

    def log_config(self, config: Mapping[str, Any]) -> None: ...

    def close(self) -> None: ...


class TrackingConfig(BaseModel):
    """Which experiment trackers a run logs to, and their settings (every tracker works offline)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backends: tuple[Backend, ...] = Field(
        default=("tensorboard",),
        description="Trackers to log to: any of tensorboard, wandb, mlflow, trackio; [] logs nowhere.")
    project: str = Field(default="agentloop", min_length=1,
                         description="W&B / trackio project and MLflow experiment name.")
    run_name: str | None = Field(default=None, description="Run name in the trackers; None = the run folder's name.")
    tensorboard_dir: str = Field(default="tensorboard",
                                 description="Folder of the TensorBoard event files, relative to the run folder.")
    wandb_mode: Literal["offline", "online", "disabled"] = Field(
        default="offline", description="W&B mode: offline writes <run>/wandb for a later `wandb sync`; online uploads.")
    wandb_entity: str | None = Field(default=None, description="W&B entity (user or team); None = your default.")
    mlflow_tracking_uri: str | None = Field(
        default=None, description="MLflow tracking URI; None = a local SQLite store <run>/mlflow.db.")

    def _differs(self, field: str) -> bool:
        # "set" means "not the default": a resolved config written to a run directory and read back
        # on --resume names every field with its default value, which must stay valid.
        return getattr(self, field) != type(self).model_fields[field].default

    @model_validator(mode="after")
    def _check(self) -> TrackingConfig:
        seen = [b for i, b in enumerate(self.backends) if b in self.backends[:i]]
        if seen:
            raise ValueError(f"tracking.backends lists {seen[0]!r} twice; list each tracker once.")
        owners = {"wandb_entity": "wandb", "mlflow_tracking_uri": "mlflow", "tensorboard_dir": "tensorboard"}
        for field, backend in owners.items():
            if self._differs(field) and backend not in self.backends:
                raise ValueError(f"tracking.{field} is set but {backend!r} is not in tracking.backends "
                                 f"{list(self.backends)}; add {backend!r} to backends or drop {field}.")
        if self._differs("wandb_mode") and "wandb" not in self.backends:
            raise ValueError("tracking.wandb_mode is set but 'wandb' is not in tracking.backends; add it or drop "
                             "wandb_mode.")
        return self


# -- turning records into scalar tags -----------------------------------------------------------------
_RENAMES = (("->", "_to_"), ("@", "_at_"))
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-./]")


def tag(name: str) -> str:
    """A tag every backend accepts (MLflow allows only ``[A-Za-z0-9_-./ ]``): ``acc@t1`` -> ``acc_at_t1``,
    ``delta_i->c`` -> ``delta_i_to_c``, other characters -> ``_``."""
    for old, new in _RENAMES:
        name = name.replace(old, new)
    return _UNSAFE.sub("_", name).strip("/")


def flatten_metrics(record: Any, prefix: str = "") -> dict[str, float]:
    """The scalars in ``record`` as ``{"prefix/key/subkey": value}`` tags (see :func:`tag`).

    Mappings, pydantic models and dataclasses are walked by key; a ``value`` field is the figure of
    its parent (so an ``Estimate`` ``x`` gives ``x``, ``x/lo``, ``x/hi``, ``x/n``); a list or tuple
    of numbers is numbered from 1 (accuracy by attempt ``acc`` -> ``acc/1``, ``acc/2``); booleans
    become 0/1; strings and None are left out. A record with ``tokens`` and ``seconds`` (e.g.
    ``TrainStats``) also gets ``tokens_per_s``.

    Example::

        >>> flatten_metrics({"acc@t1": 0.5, "train": {"loss_last": 1.2, "tokens": 100, "seconds": 4.0}}, "it")
        {'it/acc_at_t1': 0.5, 'it/train/loss_last': 1.2, 'it/train/tokens': 100.0, 'it/train/seconds': 4.0, 'it/train/tokens_per_s': 25.0}
    """
    out: dict[str, float] = {}
    _flatten(record, tag(prefix), out)
    return out


def _join(prefix: str, key: Any) -> str:
    key = tag(str(key))
    return f"{prefix}/{key}" if prefix else key


def _flatten(value: Any, name: str, out: dict[str, float]) -> None:
    if isinstance(value, BaseModel):
        value = value.model_dump()
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, bool):
        out[name] = float(value)
    elif isinstance(value, numbers.Real):
        out[name] = float(value)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _flatten(item, name if key == "value" and name else _join(name, key), out)
        tokens, seconds = value.get("tokens"), value.get("seconds")
        if isinstance(tokens, numbers.Real) and isinstance(seconds, numbers.Real) and seconds > 0:
            out[_join(name, "tokens_per_s")] = float(tokens) / float(seconds)
    elif isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        for i, item in enumerate(value, 1):
            _flatten(item, _join(name, i), out)


def resource_metrics(prefix: str = "memory") -> dict[str, float]:
    """Peak memory of this process: ``memory/rss_peak_mb`` and, when torch is loaded and has CUDA,
    ``memory/cuda_peak_mb`` (peak allocated by torch). Imports nothing heavy."""
    out: dict[str, float] = {}
    try:
        import resource

        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
        out[f"{prefix}/rss_peak_mb"] = rss / (2**20 if sys.platform == "darwin" else 2**10)
    except (ImportError, OSError):  # no `resource` module on Windows
        pass
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        out[f"{prefix}/cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def _scalars(metrics: Mapping[str, float]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, numbers.Real)}


def _import(module: str, backend: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ConfigError(f"tracking backend {backend!r} needs the {module.split('.')[0]!r} package: {INSTALL_HINT} "
                          f"(or remove {backend!r} from tracking.backends) ({e}).") from e


# -- backends -----------------------------------------------------------------------------------------
class TensorBoardTracker:
    """Scalars as TensorBoard event files in ``log_dir`` (written by tensorboardX)."""

    def __init__(self, log_dir: str | Path):
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._writer = _import("tensorboardX", "tensorboard").SummaryWriter(logdir=str(self.log_dir))

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        for key, value in _scalars(metrics).items():
            self._writer.add_scalar(key, value, global_step=step)
        self._writer.flush()

    def log_config(self, config: Mapping[str, Any]) -> None:
        import json

        text = json.dumps(dict(config), indent=2, sort_keys=True, default=str)
        # Markdown code block: TensorBoard's text plugin renders it as-is.
        self._writer.add_text("config", "    " + text.replace("\n", "\n    "), global_step=0)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class WandbTracker:
    """A W&B run (offline by default); each tag prefix is plotted against its own ``<prefix>/step``."""

    def __init__(self, run_dir: str | Path, *, project: str, name: str, mode: str = "offline",
                 entity: str | None = None):
        wandb = _import("wandb", "wandb")
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        self._run = wandb.init(project=project, name=name, entity=entity, dir=str(run_dir), mode=mode,
                               settings=wandb.Settings(silent=True, console="off"))
        self._defined: set[str] = set()

    def _axis(self, key: str) -> str:
        """The step metric ``key`` is plotted against (declared to W&B on first use)."""
        prefix = key.split("/", 1)[0] if "/" in key else None
        axis, pattern = (f"{prefix}/step", f"{prefix}/*") if prefix else ("step", key)
        if pattern not in self._defined:
            if axis not in self._defined:
                self._run.define_metric(axis, hidden=True)
                self._defined.add(axis)
            self._run.define_metric(pattern, step_metric=axis)
            self._defined.add(pattern)
        return axis

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        row: dict[str, float] = {}
        for key, value in _scalars(metrics).items():
            row[self._axis(key)] = step
            row[key] = value
        if row:
            self._run.log(row)

    def log_config(self, config: Mapping[str, Any]) -> None:
        self._run.config.update(dict(config), allow_val_change=True)

    def close(self) -> None:
        self._run.finish()


class MLflowTracker:
    """An MLflow run through ``MlflowClient`` (no global active run), in a local file store by default."""

    def __init__(self, tracking_uri: str, *, experiment: str, name: str, artifact_location: str | None = None):
        tracking = _import("mlflow.tracking", "mlflow")
        self._entities = _import("mlflow.entities", "mlflow")
        try:
            self._client = tracking.MlflowClient(tracking_uri=tracking_uri)
        except ImportError as e:  # the SQLite store needs sqlalchemy and alembic
            raise ConfigError(f"MLflow's store at {tracking_uri} needs more packages: {INSTALL_HINT} ({e}).") from e
        found = self._client.get_experiment_by_name(experiment)
        # A new experiment's artifacts (the config) go to artifact_location; MLflow's default is ./mlruns in the cwd.
        experiment_id = (found.experiment_id if found is not None
                         else self._client.create_experiment(experiment, artifact_location=artifact_location))
        self.run_id: str = self._client.create_run(experiment_id, run_name=name).info.run_id

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        import time

        now = int(time.time() * 1000)
        batch = [self._entities.Metric(key, value, now, step) for key, value in _scalars(metrics).items()]
        if batch:
            self._client.log_batch(self.run_id, metrics=batch)

    def log_config(self, config: Mapping[str, Any]) -> None:
        self._client.log_dict(self.run_id, dict(config), "config.json")
        params = [self._entities.Param(k, str(v)[:6000]) for k, v in _leaves(config).items()]
        for i in range(0, len(params), 100):  # MLflow's log_batch takes at most 100 params
            self._client.log_batch(self.run_id, params=params[i: i + 100])

    def close(self) -> None:
        self._client.set_terminated(self.run_id)


class TrackioTracker:
    """A trackio run, stored in trackio's local SQLite database."""

    def __init__(self, *, project: str, name: str):
        self._trackio = _import("trackio", "trackio")
        # Our own memory metrics instead of trackio's sampling thread.
        self._run = self._trackio.init(project=project, name=name, auto_log_cpu=False, auto_log_gpu=False)

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        scalars = _scalars(metrics)
        if scalars:
            self._run.log(scalars, step=step)

    def log_config(self, config: Mapping[str, Any]) -> None:
        self._run.config.update(dict(config))

    def close(self) -> None:
        self._run.finish()


def _leaves(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            out.update(_leaves(value, name))
        else:
            out[name] = value
    return out


class MultiTracker:
    """Fans every call out to several trackers; one that raises is warned about once and dropped."""

    def __init__(self, trackers: Sequence[Tracker]):
        self.trackers: list[Tracker] = list(trackers)

    def _each(self, call: str, *args: Any, **kwargs: Any) -> None:
        for tracker in list(self.trackers):
            try:
                getattr(tracker, call)(*args, **kwargs)
            except Exception as e:  # a tracker problem must not stop training
                self.trackers.remove(tracker)
                warnings.warn(f"tracker {type(tracker).__name__} failed in {call}() and is switched off for the rest "
                              f"of the run: {type(e).__name__}: {e}", RuntimeWarning, stacklevel=3)

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        self._each("log", metrics, step)

    def log_config(self, config: Mapping[str, Any]) -> None:
        self._each("log_config", config)

    def close(self) -> None:
        self._each("close")
        self.trackers.clear()

    def __enter__(self) -> MultiTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_tracker(config: TrackingConfig | None, run_dir: str | Path) -> MultiTracker:
    """The trackers ``config`` names for the run in ``run_dir``, behind one fan-out (none = logs nowhere).

    A missing package raises :class:`~agentloop.errors.ConfigError` naming the extra to install.
    """
    config = config or TrackingConfig()
    run_dir = Path(run_dir)
    name = config.run_name or run_dir.resolve().name
    built: list[Tracker] = []
    try:
        for backend in config.backends:
            if backend == "tensorboard":
                built.append(TensorBoardTracker(run_dir / config.tensorboard_dir))
            elif backend == "wandb":
                built.append(WandbTracker(run_dir, project=config.project, name=name, mode=config.wandb_mode,
                                          entity=config.wandb_entity))
            elif backend == "mlflow":
                local = config.mlflow_tracking_uri is None
                uri = config.mlflow_tracking_uri or f"sqlite:///{(run_dir / 'mlflow.db').resolve()}"
                artifacts = (run_dir / "mlartifacts").resolve().as_uri() if local else None
                built.append(MLflowTracker(uri, experiment=config.project, name=name, artifact_location=artifacts))
            elif backend == "trackio":
                built.append(TrackioTracker(project=config.project, name=name))
    except BaseException:
        MultiTracker(built).close()
        raise
    return MultiTracker(built)
