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
from the file, when the directory is opened again. A corrupt line in the *middle* (an edited file,
a disk error) is skipped with a :class:`CorruptLineWarning` and counted in
:attr:`RunDir.corrupt_lines`; its episode is not in :meth:`RunDir.done_keys`, so a resumed run
produces it again. Resuming (``create(..., resume=True)``) also removes the temp folders a kill
left in ``checkpoints/`` (``.tmp-*``, ``.old-*``: uncommitted, each as large as a checkpoint).

Disk full: every write here that fails for lack of space (ENOSPC, EDQUOT) raises
:class:`DiskFullError` naming the file system, its free space and the last committed checkpoint;
a half-written episode line is cut off again, so the file stays readable and the run can
``--resume`` once space is freed. Other writers (e.g. the trainer's checkpoint) get the same
message by running inside :meth:`RunDir.disk_guard`.

Fault injection (tests only): with ``AGENTLOOP_FAULT=POINT:ACTION`` in the environment,
:func:`fault_point` makes the named point fail: ``kill`` (SIGKILL this process), ``enospc`` (raise
the disk-full OSError) or ``raise`` (RuntimeError). ``AGENTLOOP_FAULT_AFTER=N`` fires at the N-th
hit (default 1) and ``AGENTLOOP_FAULT_MATCH=REGEX`` counts only hits whose detail (an episode key,
a path) matches REGEX (``re.search``). Points here: ``episode.append`` (before the line is written),
``episode.append.torn`` (half the line written), ``metrics.log``, ``metrics.write``,
``checkpoint.write`` (files written, not yet committed), ``folder.swap`` (in :func:`swap_folder`,
between moving the old folder aside and the new one in). Nothing happens when the variable is unset.

Folders (checkpoints, adapters, converted models) are replaced with :func:`swap_folder` /
:func:`atomic_folder` only: the new folder is written complete under a temp name, the old one is
renamed aside, the new one renamed in, then the old one deleted; a kill at any step leaves a complete
old or new folder, which :func:`recover_folders` puts back in place (a resumed run calls it).

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
import errno
import json
import os
import re
import shutil
import signal
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from agentloop.errors import AgentLoopError
from agentloop.types import Episode

__all__ = ["CorruptLineWarning", "DiskFullError", "RunDir", "RunDirError", "atomic_folder", "atomic_write_text",
           "episode_key", "fault_point", "key_of", "recover_folders", "swap_folder", "temp_folder"]

KEY_FIELD = "run_key"


class RunDirError(AgentLoopError):
    """A run directory is missing, corrupt, or does not match the run being resumed."""


class DiskFullError(RunDirError):
    """A write failed because the disk (or quota) holding the run directory is full."""


class CorruptLineWarning(UserWarning):
    """A line of episodes.jsonl is not a valid episode and was skipped."""


FAULT_ENV = "AGENTLOOP_FAULT"
_fault_hits: dict[str, int] = {}


def fault_point(name: str, detail: str = "") -> None:
    """Test-only fault injection: fail here when ``AGENTLOOP_FAULT`` names this point (see the module docstring)."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    point, _, action = spec.partition(":")
    if point != name or not re.search(os.environ.get("AGENTLOOP_FAULT_MATCH", ""), detail):
        return
    _fault_hits[name] = hits = _fault_hits.get(name, 0) + 1
    if hits != int(os.environ.get("AGENTLOOP_FAULT_AFTER", "1")):
        return
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "enospc":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), detail or name)
    elif action == "raise":
        raise RuntimeError(f"injected fault at {name} ({detail})")
    else:
        raise ValueError(f"{FAULT_ENV}={spec!r}: the action must be kill, enospc or raise.")


_DISK_FULL_TEXT = (os.strerror(errno.ENOSPC), os.strerror(errno.EDQUOT), f"os error {errno.ENOSPC}")


def _is_disk_full(e: BaseException) -> bool:
    """ENOSPC/EDQUOT, as an OSError or as the message of a library's own error (safetensors raises Exception)."""
    if isinstance(e, OSError) and e.errno is not None:
        return e.errno in (errno.ENOSPC, errno.EDQUOT)
    return any(t in str(e) for t in _DISK_FULL_TEXT)


def _mount_point(path: Path) -> Path:
    path = path.resolve()
    while not path.exists() or (not os.path.ismount(path) and path != path.parent):
        path = path.parent
    return path


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


TEMP_PREFIXES = (".tmp-", ".old-", ".fit-")  # folders a writer owns until it commits (see recover_folders)


def temp_folder(final: str | Path, prefix: str = ".tmp-") -> Path:
    """A new empty folder next to ``final`` (same file system, so the commit is a rename) named after it and this process."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{final.name}-{os.getpid()}.", dir=final.parent))


def swap_folder(tmp: str | Path, final: str | Path) -> None:
    """Make the complete folder ``tmp`` the folder ``final``, replacing any folder there.

    A directory cannot be renamed over a non-empty one, so this takes two renames: the old folder
    goes aside as ``.old-NAME-PID``, then ``tmp`` becomes ``final``, then the old one is deleted. A
    kill between the renames leaves only the complete old folder, which :func:`recover_folders` puts
    back; an exception between them puts it back at once.
    """
    tmp, final = Path(tmp), Path(final)
    old = None
    if final.exists():
        old = final.with_name(f".old-{final.name}-{os.getpid()}")
        if old.exists():  # left by an earlier swap of this process that could not delete it
            shutil.rmtree(old)
        os.replace(final, old)
    try:
        if old is not None:
            fault_point("folder.swap", str(final))
        os.replace(tmp, final)
    except BaseException:
        if old is not None and not final.exists():
            os.replace(old, final)
        raise
    _fsync_dir(final.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_folder(final: str | Path) -> Iterator[Path]:
    """Write a folder's files into the yielded temp folder; it replaces ``final`` only if the block succeeds.

    ::

        with atomic_folder(cache / "model") as tmp:
            model.save_pretrained(tmp)
    """
    tmp = temp_folder(final)
    try:
        yield tmp
        swap_folder(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already after a commit


def _fsync_dir(path: Path) -> None:
    """Persist a rename in ``path`` (best effort: not every file system lets a directory be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _writer_pid(name: str) -> int | None:
    """The process id in a temp folder's name (``.tmp-NAME-PID.xxxx``, ``.old-NAME-PID``), None if it has none."""
    stem = name if name.startswith(".old-") else name.rsplit(".", 1)[0]
    tail = stem.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def recover_folders(parent: str | Path, *, single_writer: bool = False) -> None:
    """Finish what killed writers left in ``parent``: put a lone ``.old-NAME-PID`` back as NAME, delete other temp folders.

    With ``single_writer`` (a run directory: one writer, which is the caller) every ``.tmp-*``,
    ``.old-*`` and ``.fit-*`` entry is stale; otherwise (a shared cache) only those whose writer
    process is gone are touched, so a concurrent writer's work is left alone.
    """
    parent = Path(parent)
    if not parent.is_dir():
        return
    for p in sorted(parent.iterdir()):
        if not p.name.startswith(TEMP_PREFIXES):
            continue
        pid = _writer_pid(p.name)
        if not single_writer and (pid is None or pid == os.getpid() or _alive(pid)):
            continue
        if p.name.startswith(".old-") and p.is_dir():
            name = p.name[len(".old-"):].rsplit("-", 1)[0]
            if name and not (parent / name).exists():
                os.replace(p, parent / name)
                continue
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                p.unlink()


def _plain(config: BaseModel | Mapping[str, Any] | None) -> dict[str, Any]:
    if config is None:
        return {}
    if isinstance(config, BaseModel):
        return config.model_dump(mode="json")
    return json.loads(json.dumps(dict(config), default=str))


def _at(value: Any, dotted: str) -> Any:
    for part in dotted.split(".") if dotted != "<root>" else ():
        value = value.get(part) if isinstance(value, dict) else None
    return value


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
        self.corrupt_lines: list[int] = []  # line numbers of episodes.jsonl skipped as not valid episodes

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
            if config is not None:
                run.check_resume_config(new, ignore)
            run._repair()
            run._remove_uncommitted()
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

    def check_resume_config(self, config: BaseModel | Mapping[str, Any],
                            ignore: tuple[str, ...] = ("resume",)) -> None:
        """Refuse (RunDirError) when ``config`` differs from the stored one outside the dotted paths in ``ignore``.

        The message names every differing key with its stored and new value.
        """
        old, new = self.read_config(), _plain(config)
        changed = [d for d in _diff(old, new) if not any(d == i or d.startswith(i + ".") for i in ignore)]
        if changed:
            def value(v: Any) -> str:
                text = json.dumps(v, default=str)
                return text if len(text) <= 80 else text[:77] + "..."
            shown = "; ".join(f"{d}: {value(_at(old, d))} -> {value(_at(new, d))}" for d in changed[:10])
            more = f" (and {len(changed) - 10} more)" if len(changed) > 10 else ""
            raise RunDirError(f"cannot resume {self.path}: the config differs at {', '.join(changed)} ({shown}{more}); "
                              "resume with the same settings, or write to a new directory.")

    # -- config and metadata --------------------------------------------------------------------
    def write_config(self, config: BaseModel | Mapping[str, Any]) -> None:
        """Write the resolved config as config.json (authoritative) and config.yaml (for reading)."""
        plain = _plain(config)
        with self.disk_guard("config.json"):
            atomic_write_text(self.path / "config.json", json.dumps(plain, indent=2, sort_keys=True) + "\n")
            atomic_write_text(self.path / "config.yaml", yaml.safe_dump(plain, sort_keys=True))

    @contextlib.contextmanager
    def disk_guard(self, what: str = "the run directory") -> Iterator[None]:
        """Turn a disk-full OSError raised inside the block into a :class:`DiskFullError` that says what to do.

        Example (the trainer's checkpoint, written outside this class)::

            with run.disk_guard("checkpoint iter-3"):
                trainer.save(run.checkpoints_path / "iter-3")
        """
        try:
            yield
        except DiskFullError:
            raise
        except Exception as e:
            if not _is_disk_full(e):
                raise
            raise self._disk_full(what, e) from e

    def _disk_full(self, what: str, e: Exception) -> DiskFullError:
        mount = _mount_point(self.path)
        try:
            st = os.statvfs(mount)
            space = f"{st.f_bavail * st.f_frsize / 2**20:.1f} MiB free of {st.f_blocks * st.f_frsize / 2**20:.1f} MiB"
        except OSError:
            space = "free space unknown"
        last = self.latest_checkpoint()
        kept = f"the last good checkpoint {last} is intact" if last is not None else "no checkpoint was committed yet"
        return DiskFullError(f"the disk is full: writing {what} of {self.path} failed on the file system mounted at "
                             f"{mount} ({space}; {getattr(e, 'strerror', None) or e}). Every recorded episode is kept and {kept}; "
                             "free space there (or move the run to a larger disk) and continue with --resume.")

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
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.readlines()
        corrupt = []
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                yield Episode.model_validate_json(line)
            except ValueError as e:
                if n == len(lines) and not line.endswith("\n"):
                    break  # torn last line of a run that is still being written
                corrupt.append(n)
                warnings.warn(f"{path}:{n} is not a valid episode ({str(e).splitlines()[0]}); skipped, so a resumed "
                              "run produces that episode again.", CorruptLineWarning, stacklevel=2)
        self.corrupt_lines = corrupt

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
            line = (episode.model_dump_json() + "\n").encode("utf-8")
            fault_point("episode.append", key)
            with self.disk_guard(f"episode {key}"), open(self.episodes_path, "ab") as f:
                size = f.tell()
                try:
                    if os.environ.get(FAULT_ENV, "").startswith("episode.append.torn:"):
                        f.write(line[: len(line) // 2])
                        f.flush()
                        fault_point("episode.append.torn", key)
                        line = line[len(line) // 2:]
                    f.write(line)
                    f.flush()
                    os.fsync(f.fileno())
                except BaseException:
                    # A partial line (e.g. disk full mid-write) would corrupt the next append: cut it off.
                    with contextlib.suppress(OSError):
                        f.truncate(size)
                    raise
            known.add(key)
        return True

    # -- metrics --------------------------------------------------------------------------------
    def write_metrics(self, metrics: Mapping[str, Any]) -> None:
        """Replace metrics.json atomically."""
        fault_point("metrics.write", str(self.metrics_path))
        with self.disk_guard("metrics.json"):
            atomic_write_text(self.metrics_path, json.dumps(_plain(metrics), indent=2, sort_keys=True) + "\n")

    def read_metrics(self) -> dict[str, Any]:
        return json.loads(self.metrics_path.read_text()) if self.metrics_path.exists() else {}

    def log_metrics(self, row: Mapping[str, Any]) -> None:
        """Append one row (e.g. ``{"iteration": 2, "acc@t1": 0.4, "loss": 1.3}``) to metrics.jsonl."""
        fault_point("metrics.log", str(self.history_path))
        with self._lock, self.disk_guard("metrics.jsonl"), open(self.history_path, "ab") as f:
            size = f.tell()
            try:
                f.write((json.dumps(_plain(row), sort_keys=True) + "\n").encode("utf-8"))
                f.flush()
                os.fsync(f.fileno())
            except BaseException:
                with contextlib.suppress(OSError):
                    f.truncate(size)  # no partial row for the next append to follow
                raise

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
        with self.disk_guard(f"checkpoint {name}"):
            tmp = temp_folder(self.checkpoints_path / name)
            try:
                yield tmp
                fault_point("checkpoint.write", str(tmp))
                swap_folder(tmp, self.checkpoints_path / name)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)

    def _remove_uncommitted(self) -> None:
        """Delete the temp files and folders a killed writer left (called by the one writer, when it resumes).

        Checkpoint temp folders (``.tmp-*``) and multi-process training's work folders (``.fit-*``) are
        deleted; a kill between moving an old checkpoint aside and committing its replacement leaves only
        ``.old-NAME-PID``, which is put back as NAME (:func:`recover_folders`).
        """
        for p in self.path.glob(".*.tmp"):  # atomic_write_text's temp files
            with contextlib.suppress(OSError):
                p.unlink()
        recover_folders(self.checkpoints_path, single_writer=True)

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
