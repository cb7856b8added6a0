"""`RunDir`: the directory one eval or improve run writes, and reads back when it resumes.

Layout::

    RUN/
      run.json            kind ("eval", "improve", ...), creation time, agentloop version
      config.json         the resolved config (the source of truth; config.yaml is a readable copy)
      config.yaml
      episodes.jsonl      one Episode per line, appended as each finishes (flushed and fsynced)
      metrics.json        the latest metrics (replaced atomically)
      metrics.jsonl       per-iteration metric rows of improve runs (training curves), appended
      checkpoints/NAME/   committed checkpoints (written in a temp folder, then renamed)

Crash safety: an episode is on disk once :meth:`RunDir.append_episode` returns, so SIGKILL loses
only unfinished episodes. A torn last line (a kill in the middle of a write) is dropped, and cut
from the file, when the directory is opened again. A corrupt line in the *middle* is not a crash
artefact and raises :class:`RunDirError`.

Resume: every episode carries a stable key in ``metadata["run_key"]`` (see :func:`episode_key`);
:meth:`RunDir.done_keys` tells the caller which jobs to skip, and :meth:`append_episode` refuses
to write a key twice, so a resumed run never duplicates an episode.

Not covered: several *processes* writing one run directory at once (one writer per run; threads
of one process are serialised by a lock).

Example::

    run = RunDir.create("runs/eval-1", config={"env": "math/arith-v0"}, kind="eval")
    key = episode_key("math/arith-v0", task=3, sample=0)
    if key not in run.done_keys():
        run.append_episode(episode, key=key)
    run.write_metrics({"acc@t1": 0.5})
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from agentloop.errors import AgentLoopError
from agentloop.types import Episode

__all__ = ["RunDir", "RunDirError", "atomic_write_text", "episode_key", "key_of"]

KEY_FIELD = "run_key"


class RunDirError(AgentLoopError):
    """A run directory is missing, corrupt, or does not match the run being resumed."""


def episode_key(env_id: str, task: int | str | None = None, sample: int = 0, iteration: int | None = None,
                seed: int | None = None) -> str:
    """The stable key of one episode: env id, task (index or id), sample index, and optional iteration/seed.

    >>> episode_key("math/arith-v0", task=3, sample=1)
    'math/arith-v0|task=3|sample=1'
    """
    parts = [env_id, f"task={task}", f"sample={sample}"]
    if seed is not None:
        parts.append(f"seed={seed}")
    if iteration is not None:
        parts.append(f"iter={iteration}")
    return "|".join(parts)


def key_of(episode: Episode) -> str:
    """The run key stored on ``episode`` (or one derived from env id, task id and seed if none was stored)."""
    key = episode.metadata.get(KEY_FIELD)
    if isinstance(key, str):
        return key
    return episode_key(episode.env_id, task=episode.task_id, sample=0, seed=episode.seed)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` so readers see the old or the new content, never a half-written file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _plain(config: BaseModel | Mapping[str, Any] | None) -> dict[str, Any]:
    if config is None:
        return {}
    if isinstance(config, BaseModel):
        return config.model_dump(mode="json")
    return json.loads(json.dumps(dict(config), default=str))


def _diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted paths where two JSON values differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for k in sorted(set(a) | set(b)):
            out += _diff(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else str(k))
        return out
    return [] if a == b else [prefix or "<root>"]


class RunDir:
    """One run directory (see the module docstring). Use :meth:`create` or :meth:`open`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._keys: set[str] | None = None

    # -- paths ----------------------------------------------------------------------------------
    @property
    def episodes_path(self) -> Path:
        return self.path / "episodes.jsonl"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.json"

    @property
    def history_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def checkpoints_path(self) -> Path:
        return self.path / "checkpoints"

    # -- create / open --------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, config: BaseModel | Mapping[str, Any] | None = None, *, kind: str = "run",
               resume: bool = False, ignore: tuple[str, ...] = ("resume",)) -> RunDir:
        """Create a run directory, or reopen it with ``resume=True``.

        Refuses to reuse a directory that already holds episodes unless ``resume`` is set; when
        resuming, the stored config must equal ``config`` except at the dotted paths in ``ignore``
        (changing the model or the environment halfway would mix two runs in one file).
        """
        run = cls(path)
        new = _plain(config)
        if run.path.exists() and (run.path / "config.json").exists():
            if not resume:
                raise RunDirError(f"{run.path} already holds a run; pass --resume to continue it, "
                                  "or choose another --out directory.")
            old = run.read_config()
            changed = [d for d in _diff(old, new) if not any(d == i or d.startswith(i + ".") for i in ignore)]
            if config is not None and changed:
                raise RunDirError(f"cannot resume {run.path}: the config differs at {', '.join(changed)}; "
                                  "resume with the same settings, or write to a new directory.")
            run._repair()
            return run
        run.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run.path / "run.json", json.dumps(
            {"kind": kind, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
             "agentloop_version": _version()}, indent=2) + "\n")
        run.write_config(new)
        return run

    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        """Open an existing run directory for reading (or appending); repairs a torn last line."""
        run = cls(path)
        if not run.path.is_dir():
            raise RunDirError(f"{run.path} is not a run directory (it does not exist); check the path.")
        if not (run.path / "config.json").exists() and not run.episodes_path.exists():
            raise RunDirError(f"{run.path} is not a run directory: it has neither config.json nor episodes.jsonl.")
        run._repair()
        return run

    # -- config and metadata --------------------------------------------------------------------
    def write_config(self, config: BaseModel | Mapping[str, Any]) -> None:
        """Write the resolved config as config.json (authoritative) and config.yaml (for reading)."""
        plain = _plain(config)
        atomic_write_text(self.path / "config.json", json.dumps(plain, indent=2, sort_keys=True) + "\n")
        atomic_write_text(self.path / "config.yaml", yaml.safe_dump(plain, sort_keys=True))

    def read_config(self) -> dict[str, Any]:
        path = self.path / "config.json"
        return json.loads(path.read_text()) if path.exists() else {}

    @property
    def kind(self) -> str:
        path = self.path / "run.json"
        return str(json.loads(path.read_text()).get("kind", "run")) if path.exists() else "run"

    # -- episodes -------------------------------------------------------------------------------
    def _repair(self) -> None:
        """Cut a torn last line left by a kill mid-write, so the next append starts on a clean line."""
        path = self.episodes_path
        if not path.exists():
            return
        data = path.read_bytes()
        if not data or data.endswith(b"\n"):
            return
        # A write is one line ending in a newline, so only the last line can be torn.
        last_nl = data.rfind(b"\n") + 1
        try:
            Episode.model_validate_json(data[last_nl:])
            complete = True  # a whole record that only lacks its newline
        except ValueError:
            complete = False
        with open(path, "r+b") as f:
            if complete:
                f.seek(len(data))
                f.write(b"\n")
            else:
                f.truncate(last_nl)
            f.flush()
            os.fsync(f.fileno())

    def episodes(self) -> list[Episode]:
        """Every recorded episode, in the order written."""
        return list(self.iter_episodes())

    def iter_episodes(self) -> Iterator[Episode]:
        path = self.episodes_path
        if not path.exists():
            return
        with open(path, encoding="utf-8") as f:
            lines = f.readlines()
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                yield Episode.model_validate_json(line)
            except ValueError as e:
                if n == len(lines) and not line.endswith("\n"):
                    return  # torn last line of a run that is still being written
                raise RunDirError(f"{path}:{n} is not a valid episode ({str(e).splitlines()[0]}); "
                                  "the file was edited or corrupted: remove that line to continue.") from e

    def done_keys(self) -> set[str]:
        """Keys of the episodes already recorded (what a resumed run skips)."""
        with self._lock:
            return set(self._known())

    def _known(self) -> set[str]:
        """The cached key set (call with the lock held); loaded from disk once."""
        if self._keys is None:
            self._keys = {key_of(ep) for ep in self.iter_episodes()}
        return self._keys

    def append_episode(self, episode: Episode, key: str | None = None) -> bool:
        """Append ``episode`` durably (flush + fsync). Returns False, writing nothing, if its key is recorded.

        ``key`` (else ``episode.metadata["run_key"]``, else one derived by :func:`key_of`) is stored
        in ``metadata["run_key"]``.
        """
        key = key or key_of(episode)
        if episode.metadata.get(KEY_FIELD) != key:
            episode = episode.model_copy(update={"metadata": {**episode.metadata, KEY_FIELD: key}})
        with self._lock:
            known = self._known()
            if key in known:
                return False
            line = episode.model_dump_json() + "\n"
            with open(self.episodes_path, "a", encoding="utf-8") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
            known.add(key)
        return True

    # -- metrics --------------------------------------------------------------------------------
    def write_metrics(self, metrics: Mapping[str, Any]) -> None:
        """Replace metrics.json atomically."""
        atomic_write_text(self.metrics_path, json.dumps(_plain(metrics), indent=2, sort_keys=True) + "\n")

    def read_metrics(self) -> dict[str, Any]:
        return json.loads(self.metrics_path.read_text()) if self.metrics_path.exists() else {}

    def log_metrics(self, row: Mapping[str, Any]) -> None:
        """Append one row (e.g. ``{"iteration": 2, "acc@t1": 0.4, "loss": 1.3}``) to metrics.jsonl."""
        with self._lock, open(self.history_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(_plain(row), sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def history(self) -> list[dict[str, Any]]:
        """The rows of metrics.jsonl (a torn last row is skipped)."""
        if not self.history_path.exists():
            return []
        rows = []
        for line in self.history_path.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(ValueError):
                rows.append(json.loads(line))
        return rows

    # -- checkpoints ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def checkpoint(self, name: str) -> Iterator[Path]:
        """Write a checkpoint into the yielded temp folder; it becomes ``checkpoints/NAME`` only on success.

        An existing checkpoint of that name is replaced. If the block raises, nothing is committed.
        """
        if not name or "/" in name or name.startswith("."):
            raise RunDirError(f"checkpoint name {name!r} must be a plain folder name (no '/', not starting with '.').")
        self.checkpoints_path.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=self.checkpoints_path))
        try:
            yield tmp
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        final = self.checkpoints_path / name
        old = None
        if final.exists():
            old = self.checkpoints_path / f".old-{name}-{os.getpid()}"
            os.replace(final, old)
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def checkpoints(self) -> list[Path]:
        """Committed checkpoints, oldest first (by modification time, then name)."""
        if not self.checkpoints_path.is_dir():
            return []
        found = [p for p in self.checkpoints_path.iterdir() if p.is_dir() and not p.name.startswith(".")]
        return sorted(found, key=lambda p: (p.stat().st_mtime, p.name))

    def latest_checkpoint(self) -> Path | None:
        found = self.checkpoints()
        return found[-1] if found else None


def _version() -> str:
    try:
        from agentloop import __version__
    except ImportError:  # during a partial import
        return "unknown"
    return __version__
