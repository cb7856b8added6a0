"""Records and settings shared by every sandbox backend: `ExecResult`, `SandboxConfig`, the `Sandbox` protocol."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, field_validator

UID_BASE, UID_BLOCK, UID_BLOCKS = 100_000, 64, 1000
_uid_counter = 0
_uid_lock = threading.Lock()

ExecStatus = Literal["ok", "error", "timeout", "killed", "sandbox_error"]


class ExecResult(BaseModel):
    """What happened to one program.

    ``status``: ``ok`` (exit code 0), ``error`` (non-zero exit, e.g. an uncaught exception: the
    traceback is in ``stderr``), ``timeout`` (wall-clock or CPU limit), ``killed`` (ended by a
    signal, e.g. a memory limit hit inside C code), ``sandbox_error`` (the sandbox itself failed;
    the program may not have run).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    status: ExecStatus
    exit_code: int | None = Field(default=None, description="Exit code; -N when ended by signal N; None on timeout.")
    stdout: str = ""
    stderr: str = ""
    duration_s: float = Field(default=0.0, description="Wall-clock time of the program.")
    cleanup_s: float = Field(default=0.0, description="Wall-clock time the sandbox spent cleaning up after the "
                             "program (killing what it left running, discarding its files); not in duration_s.")
    output_truncated: bool = Field(default=False, description="stdout or stderr exceeded the output cap.")

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class SandboxConfig(BaseModel):
    """Limits applied to every program, whatever the backend."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    workers: int | None = Field(default=None, ge=1,
                                description="Pre-started workers (parallel programs); default: the number of CPUs.")
    memory_mb: int = Field(default=1024, ge=64, description="Memory limit, MiB: the address space of each process "
                           "(RLIMIT_AS) and, where a memory cgroup can be made (local backend as root), the memory "
                           "of the whole program: every process it starts and the files it writes, together.")
    file_size_mb: int = Field(default=16, ge=1, description="Largest file a program may write (RLIMIT_FSIZE), MiB.")
    tmp_size_mb: int = Field(default=64, ge=4, description="Size of the temp filesystem each program gets (a fresh "
                             "one per run with the local backend as root, else one per worker), MiB.")
    tmp_inodes: int = Field(default=16384, ge=64, description="Files and directories a program may create in its "
                            "per-run temp filesystem.")
    max_processes: int = Field(default=32, ge=1, description="Processes and threads per program's uid (RLIMIT_NPROC).")
    max_open_files: int = Field(default=64, ge=16, description="Open file descriptors per program (RLIMIT_NOFILE).")
    output_kb: int = Field(default=64, ge=1, description="Captured stdout and stderr, each, KiB; the rest is dropped.")
    uid: int | None = Field(default=None, ge=1, description="First unprivileged uid; worker i runs programs as uid + i "
                            "(only when started as root). Default: a block of 64 uids from 100000 chosen per sandbox, "
                            "so that concurrent sandboxes never share a uid (nor its process limit).")
    python: str | None = Field(default=None, description="Interpreter that runs programs; default: the fastest to "
                               "start and fork among this Python's base interpreter and the other builds of the same "
                               "minor version with a standard library (never a virtualenv, so that no project files "
                               "are needed inside); see agentloop.sandbox.pool.fastest_interpreter.")
    start_timeout_s: float = Field(default=30.0, gt=0, description="How long a worker may take to start.")

    @field_validator("workers")
    @classmethod
    def _fits_uid_block(cls, v: int | None) -> int | None:
        if v is not None and v > UID_BLOCK:
            raise ValueError(f"workers must be <= {UID_BLOCK} (each worker needs its own uid in a block of {UID_BLOCK}).")
        return v

    def worker_uids(self, n: int) -> list[int]:
        """The uid of each of ``n`` workers' programs (a fresh block per call when ``uid`` is not set)."""
        if self.uid is not None:
            return [self.uid + i for i in range(n)]
        global _uid_counter
        with _uid_lock:
            _uid_counter += 1
            block = (os.getpid() * 7919 + _uid_counter) % UID_BLOCKS
        return [UID_BASE + block * UID_BLOCK + i for i in range(n)]


@runtime_checkable
class Sandbox(Protocol):
    """Runs untrusted Python programs. ``run_many`` runs them in parallel, results in input order."""

    def run(self, code: str, *, timeout_s: float = 5.0, stdin: str = "") -> ExecResult: ...

    def run_many(self, codes: Sequence[str], *, timeout_s: float = 5.0) -> list[ExecResult]: ...

    def close(self) -> None: ...


__all__ = ["ExecResult", "ExecStatus", "Sandbox", "SandboxConfig"]
