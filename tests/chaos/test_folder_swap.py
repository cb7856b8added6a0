"""One folder swap for every writer: a kill or an error between its two renames never loses the folder.

``swap_folder`` moves the old folder aside, then the new one in; these tests stop it between the two
(a real SIGKILL in a child process, or an exception) and check that the old or the new folder is
complete afterwards, and that each writer (run checkpoints, the trainer, adapter sync, the default
model's and CTranslate2's caches) goes through it and recovers through it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agentloop import runs
from agentloop.runs import RunDir, atomic_folder, recover_folders

ROOT = Path(__file__).resolve().parents[2]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _write(folder: Path, version: str) -> None:
    (folder / "weights.bin").write_bytes(version.encode() * 1000)
    (folder / "state.txt").write_text(version)


def _version(folder: Path) -> str:
    assert (folder / "weights.bin").read_bytes() == (folder / "state.txt").read_text().encode() * 1000  # complete
    return (folder / "state.txt").read_text()


def test_a_kill_between_the_renames_leaves_the_old_folder_which_recovery_puts_back(tmp_path):
    code = f"""
        from pathlib import Path
        from agentloop.runs import atomic_folder
        from tests.chaos.test_folder_swap import _write
        for version in ("v1", "v2"):
            with atomic_folder(Path({str(tmp_path / 'model')!r})) as tmp:
                _write(tmp, version)
    """
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "AGENTLOOP_FAULT": "folder.swap:kill"},
                         timeout=60, check=False)
    assert out.returncode == -signal.SIGKILL, out.stderr
    assert not (tmp_path / "model").exists()  # killed with the old folder aside and the new one not yet in
    assert sorted(p.name.split("-")[0] for p in tmp_path.iterdir()) == [".old", ".tmp"]
    recover_folders(tmp_path)  # a shared cache: the writer is dead, so its folders are fair game
    assert [p.name for p in tmp_path.iterdir()] == ["model"] and _version(tmp_path / "model") == "v1"


def test_a_kill_after_the_commit_leaves_the_new_folder_and_recovery_deletes_the_old(tmp_path):
    _write(_mk(tmp_path / "model"), "v2")
    _write(_mk(tmp_path / f".old-model-{_dead_pid()}"), "v1")
    recover_folders(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["model"] and _version(tmp_path / "model") == "v2"


def test_recovery_leaves_a_live_writers_folders_alone_unless_it_is_the_only_writer(tmp_path):
    live = tmp_path / f".old-model-{os.getppid()}"  # the parent process (pytest's launcher) is alive
    tmp = tmp_path / f".tmp-model-{os.getppid()}.abcd"
    _write(_mk(live), "v1")
    tmp.mkdir()
    recover_folders(tmp_path)
    assert live.exists() and tmp.exists()
    recover_folders(tmp_path, single_writer=True)
    assert [p.name for p in tmp_path.iterdir()] == ["model"] and _version(tmp_path / "model") == "v1"


def _mk(path: Path) -> Path:
    path.mkdir()
    return path


@pytest.fixture()
def fail_between_renames(monkeypatch):
    """Call it to make every later swap raise after moving the old folder aside (the spot of the kill above)."""
    def fault(name: str, detail: str = "") -> None:
        if name == "folder.swap":
            raise OSError("injected: between the renames")

    return lambda: monkeypatch.setattr(runs, "fault_point", fault)


def test_an_error_between_the_renames_puts_the_old_folder_back_at_once(tmp_path, fail_between_renames):
    with atomic_folder(tmp_path / "model") as tmp:
        _write(tmp, "v1")
    fail_between_renames()
    with pytest.raises(OSError, match="between the renames"), atomic_folder(tmp_path / "model") as tmp:
        _write(tmp, "v2")
    assert [p.name for p in tmp_path.iterdir()] == ["model"] and _version(tmp_path / "model") == "v1"


def test_run_checkpoint_error_between_the_renames_keeps_the_old_checkpoint(tmp_path, fail_between_renames):
    run = RunDir.create(tmp_path / "r", {"k": 1})
    with run.checkpoint("latest") as d:
        _write(d, "v1")
    fail_between_renames()
    with pytest.raises(OSError), run.checkpoint("latest") as d:
        _write(d, "v2")
    assert [p.name for p in run.checkpoints_path.iterdir()] == ["latest"]
    assert _version(run.checkpoints_path / "latest") == "v1"


def test_resume_deletes_killed_training_work_folders(tmp_path):
    run = RunDir.create(tmp_path / "r", {"k": 1})
    (run.checkpoints_path / "iter-1").mkdir(parents=True)
    work = run.checkpoints_path / f".fit-iter-2-{_dead_pid()}.x1y2"  # fit_in_processes' folder, killed mid-phase
    (work / "start").mkdir(parents=True)
    (work / "examples.jsonl").write_text("{}\n")
    RunDir.create(tmp_path / "r", {"k": 1}, resume=True)
    assert [p.name for p in run.checkpoints_path.iterdir()] == ["iter-1"]


def test_default_model_cache_recovers_a_conversion_killed_between_the_renames(tmp_path, monkeypatch):
    from agentloop.policies import default_model

    monkeypatch.setenv("AGENTLOOP_CACHE", str(tmp_path))
    models = tmp_path / "models"
    old = _mk(models) / f".old-{default_model.DEFAULT_MODEL_NAME}-{_dead_pid()}"
    old.mkdir()
    (old / "config.json").write_text("{}")
    (old / "model.safetensors").write_bytes(b"w")
    # Found again without converting (which would need the GGUF package and minutes).
    assert default_model.default_model_path() == models / default_model.DEFAULT_MODEL_NAME
    assert [p.name for p in models.iterdir()] == [default_model.DEFAULT_MODEL_NAME]


def test_ct2_cache_recovers_a_conversion_killed_between_the_renames(tmp_path):
    pytest.importorskip("ctranslate2")
    from agentloop.policies.ct2 import convert

    source = _mk(tmp_path / "src")
    (source / "config.json").write_text("{}")
    (source / "model.safetensors").write_bytes(b"w")
    old = _mk(tmp_path / "cache") / f".old-m-int8-{_dead_pid()}"
    old.mkdir()
    (old / "model.bin").write_bytes(b"ct2")
    assert convert(source, dest=tmp_path / "cache" / "m-int8") == tmp_path / "cache" / "m-int8"
    assert (tmp_path / "cache" / "m-int8" / "model.bin").read_bytes() == b"ct2"
