"""Chaos at the run-directory level: corrupt lines, kills at named write points, a full disk, stale temp folders.

Kills use the test-only fault hook (``AGENTLOOP_FAULT``, see agentloop.runs) in a child process, so
each test hits its exact moment deterministically and runs in about a second. The disk-full tests
mount a small tmpfs (root only; skipped with the reason otherwise).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.helpers import mounted_tmpfs

from agentloop.runs import CorruptLineWarning, DiskFullError, RunDir, RunDirError
from agentloop.types import Episode, Turn, user

ROOT = Path(__file__).resolve().parents[2]


def _ep(task: int, text: str = "a") -> Episode:
    turn = Turn(index=0, observation=(user(f"q{task}"),), action=text, reward=1.0, success=True, terminated=True)
    return Episode(env_id="test/env-v0", seed=task, task_id=str(task), turns=(turn,))


def _child(code: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=timeout, check=False)


# -- corrupt lines --------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [b"garbage\n", b'{"env_id": "test/env-v0", "turns": [\n', b"\x00" * 64 + b"\n",
                                 b"\xff\xfe not utf-8\n", b'{"half": \n'],
                         ids=["garbage", "truncated-json", "nul-bytes", "bad-utf8", "half-object"])
def test_corrupt_lines_anywhere_are_skipped_counted_and_redone_on_resume(tmp_path, bad):
    run = RunDir.create(tmp_path / "r", {"k": 1})
    run.append_episode(_ep(0), key="k0")
    run.append_episode(_ep(1), key="k1")
    data = run.episodes_path.read_bytes().splitlines(keepends=True)
    # line 2 (k1) is damaged in place; k2 follows it, written after the damage
    run.episodes_path.write_bytes(data[0] + bad + data[1][len(bad):] if len(bad) < len(data[1]) else data[0] + bad)
    run = RunDir.create(tmp_path / "r", {"k": 1}, resume=True)
    with pytest.warns(CorruptLineWarning, match="is not a valid episode"):
        done = run.done_keys()
    assert "k0" in done and "k1" not in done  # the damaged episode will be produced again
    assert run.corrupt_lines and all(n >= 2 for n in run.corrupt_lines)
    assert run.append_episode(_ep(1), key="k1")
    with pytest.warns(CorruptLineWarning):
        assert sorted(e.task_id for e in RunDir.open(run.path).episodes()) == ["0", "1"]


# -- kills at named points --------------------------------------------------------------------------------
def test_kill_in_the_middle_of_an_episode_line_loses_only_that_episode(tmp_path):
    code = f"""
        from agentloop.runs import RunDir
        from tests.chaos.test_rundir_chaos import _ep
        run = RunDir.create({str(tmp_path / 'r')!r}, {{"k": 1}})
        for i in range(5):
            run.append_episode(_ep(i, "x" * 500), key=f"k{{i}}")
    """
    out = _child(code, {"AGENTLOOP_FAULT": "episode.append.torn:kill", "AGENTLOOP_FAULT_AFTER": "3"})
    assert out.returncode == -signal.SIGKILL, out.stderr
    assert not (tmp_path / "r" / "episodes.jsonl").read_bytes().endswith(b"\n")  # really torn
    run = RunDir.create(tmp_path / "r", {"k": 1}, resume=True)
    assert run.done_keys() == {"k0", "k1"} and run.corrupt_lines == []
    for i in range(2, 5):
        run.append_episode(_ep(i, "x" * 500), key=f"k{i}")
    assert [e.task_id for e in RunDir.open(run.path).episodes()] == ["0", "1", "2", "3", "4"]


@pytest.mark.parametrize("point", ["checkpoint.write", "folder.swap"])
def test_kill_during_a_checkpoint_keeps_a_loadable_checkpoint(tmp_path, point):
    code = f"""
        from agentloop.runs import RunDir
        run = RunDir.create({str(tmp_path / 'r')!r}, {{"k": 1}})
        for version in ("v1", "v2"):
            with run.checkpoint("latest") as d:
                (d / "weights.bin").write_bytes(version.encode() * 1000)
                (d / "state.json").write_text('{{"version": "' + version + '"}}')
    """
    out = _child(code, {"AGENTLOOP_FAULT": f"{point}:kill", "AGENTLOOP_FAULT_AFTER": "2" if point == "checkpoint.write"
                        else "1"})
    assert out.returncode == -signal.SIGKILL, out.stderr
    ckpts = tmp_path / "r" / "checkpoints"
    assert any(p.name.startswith(".") for p in ckpts.iterdir())  # the kill left a temp folder behind
    run = RunDir.create(tmp_path / "r", {"k": 1}, resume=True)
    assert [p.name for p in ckpts.iterdir()] == ["latest"]  # temp folders gone, the committed one kept
    latest = run.latest_checkpoint()
    assert latest is not None and json.loads((latest / "state.json").read_text())["version"] == "v1"
    assert (latest / "weights.bin").read_bytes() == b"v1" * 1000


def test_resume_removes_stale_temp_folders_of_a_killed_trainer_checkpoint(tmp_path):
    run = RunDir.create(tmp_path / "r", {"k": 1})
    (run.checkpoints_path / ".tmp-iter-2-abc123").mkdir(parents=True)
    (run.checkpoints_path / ".tmp-iter-2-abc123" / "model.safetensors").write_bytes(b"0" * 4096)
    (run.checkpoints_path / "iter-1").mkdir()
    (run.path / ".metrics.json.xyz.tmp").write_text("{")
    RunDir.create(tmp_path / "r", {"k": 1}, resume=True)
    assert sorted(p.name for p in run.checkpoints_path.iterdir()) == ["iter-1"]
    assert not (run.path / ".metrics.json.xyz.tmp").exists()


def test_fault_hook_counts_only_matching_hits(tmp_path):
    code = f"""
        from agentloop.runs import RunDir
        from tests.chaos.test_rundir_chaos import _ep
        run = RunDir.create({str(tmp_path / 'r')!r})
        for i, key in enumerate(["collect|a", "eval|a", "collect|b", "eval|b", "eval|c"]):
            run.append_episode(_ep(i), key=key)
    """
    out = _child(code, {"AGENTLOOP_FAULT": "episode.append:kill", "AGENTLOOP_FAULT_MATCH": r"^eval\|",
                        "AGENTLOOP_FAULT_AFTER": "2"})
    assert out.returncode == -signal.SIGKILL
    assert RunDir.open(tmp_path / "r").done_keys() == {"collect|a", "eval|a", "collect|b"}


# -- config changed between a run and its resume ------------------------------------------------------
def test_changed_config_is_refused_naming_each_key_with_both_values(tmp_path):
    RunDir.create(tmp_path / "r", {"train": {"lr": 0.001, "epochs": 1}, "env": {"id": "a"}, "out": "x"})
    with pytest.raises(RunDirError) as err:
        RunDir.create(tmp_path / "r", {"train": {"lr": 0.01, "epochs": 1}, "env": {"id": "b"}, "out": "y"},
                      resume=True, ignore=("out",))
    msg = str(err.value)
    assert "env.id, train.lr" in msg and "train.lr: 0.001 -> 0.01" in msg and '"a" -> "b"' in msg
    assert "out" not in msg.split("(")[1]


# -- disk full ------------------------------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path):
    """A 3 MiB tmpfs mounted for one test (needs root: mount)."""
    with mounted_tmpfs(tmp_path, "3m") as mnt:
        yield mnt


def _fill(mnt: Path, leave: int) -> Path:
    """Fill the file system up to ``leave`` free bytes."""
    st = os.statvfs(mnt)
    free = st.f_bavail * st.f_frsize
    filler = mnt / "filler"
    with open(filler, "wb") as f:
        f.write(b"\0" * max(free - leave, 0))
    return filler


def test_disk_full_during_an_episode_append_is_clear_and_leaves_the_file_readable(small_disk):
    run = RunDir.create(small_disk / "r", {"k": 1})
    run.append_episode(_ep(0), key="k0")
    with run.checkpoint("iter-1") as d:
        (d / "weights.bin").write_bytes(b"w" * 1000)
    filler = _fill(small_disk, leave=8192)
    with pytest.raises(DiskFullError) as err:
        run.append_episode(_ep(1, "x" * 200_000), key="k1")
    msg = str(err.value)
    assert str(small_disk) in msg and "MiB free" in msg and "iter-1 is intact" in msg and "--resume" in msg
    filler.unlink()  # space freed: the run continues, with no half line in the middle
    assert run.append_episode(_ep(1), key="k1")
    again = RunDir.create(small_disk / "r", {"k": 1}, resume=True)
    assert [e.task_id for e in again.episodes()] == ["0", "1"] and again.corrupt_lines == []


def test_disk_full_during_a_checkpoint_keeps_the_last_good_one(small_disk):
    run = RunDir.create(small_disk / "r", {"k": 1})
    with run.checkpoint("iter-1") as d:
        (d / "weights.bin").write_bytes(b"1" * 100_000)
    _fill(small_disk, leave=50_000)
    with pytest.raises(DiskFullError, match="checkpoint iter-2 .* the disk is full|the disk is full: writing checkpoint"):
        with run.checkpoint("iter-2") as d:
            (d / "weights.bin").write_bytes(b"2" * 1_000_000)
    assert [p.name for p in run.checkpoints_path.iterdir()] == ["iter-1"]  # no temp folder left, iter-1 intact
    assert (run.checkpoints_path / "iter-1" / "weights.bin").read_bytes() == b"1" * 100_000


def test_disk_guard_names_the_disk_for_other_writers(small_disk):
    run = RunDir.create(small_disk / "r", {"k": 1})
    _fill(small_disk, leave=4096)
    with pytest.raises(DiskFullError, match="writing model weights .* mounted at"):
        with run.disk_guard("model weights"), open(small_disk / "r" / "big.bin", "wb") as f:
            f.write(b"x" * 1_000_000)
            f.flush()
    with pytest.raises(ZeroDivisionError), run.disk_guard():
        1 / 0  # noqa: B018 - other errors pass through unchanged


def test_disk_guard_recognises_a_library_error_without_errno(small_disk):
    """safetensors reports ENOSPC as a plain Exception('No space left on device (os error 28)')."""
    torch = pytest.importorskip("torch", reason="needs torch (the hf extra)")
    from safetensors.torch import save_file

    run = RunDir.create(small_disk / "r", {"k": 1})
    _fill(small_disk, leave=4096)
    with pytest.raises(DiskFullError, match="writing checkpoint iter-1 .* No space left on device"):
        with run.disk_guard("checkpoint iter-1"):
            save_file({"w": torch.zeros(1_000_000)}, str(small_disk / "r" / "model.safetensors"))
