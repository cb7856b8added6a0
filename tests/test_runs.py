"""RunDir: durable appends, torn-line repair, resume keys, atomic metrics and checkpoints."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from agentloop.runs import CorruptLineWarning, RunDir, RunDirError, episode_key, key_of
from agentloop.types import Episode, Turn, user


def _ep(task: int, ok: bool = True) -> Episode:
    turn = Turn(index=0, observation=(user(f"q{task}"),), action="a", reward=float(ok), success=ok, terminated=True)
    return Episode(env_id="test/env-v0", seed=task, task_id=str(task), turns=(turn,))


def test_create_write_read_roundtrip(tmp_path):
    run = RunDir.create(tmp_path / "r", {"env": "x", "k": 2}, kind="eval")
    assert run.kind == "eval"
    assert run.read_config() == {"env": "x", "k": 2}
    assert (run.path / "config.yaml").read_text().strip().startswith("env: x")
    for i in range(3):
        assert run.append_episode(_ep(i), key=episode_key("test/env-v0", task=i))
    eps = RunDir.open(run.path).episodes()
    assert [e.task_id for e in eps] == ["0", "1", "2"]
    assert key_of(eps[1]) == "test/env-v0|task=1|sample=0"
    assert eps[0].turns[0].success is True


def test_duplicate_key_is_not_written(tmp_path):
    run = RunDir.create(tmp_path / "r")
    assert run.append_episode(_ep(0), key="k0")
    assert not run.append_episode(_ep(0), key="k0")
    assert len(RunDir.open(run.path).episodes()) == 1
    assert RunDir.open(run.path).done_keys() == {"k0"}


def test_existing_run_needs_resume_and_same_config(tmp_path):
    RunDir.create(tmp_path / "r", {"env": "x", "k": 2, "resume": False})
    with pytest.raises(RunDirError, match="--resume"):
        RunDir.create(tmp_path / "r", {"env": "x", "k": 2})
    with pytest.raises(RunDirError, match="differs at k"):
        RunDir.create(tmp_path / "r", {"env": "x", "k": 3}, resume=True)
    RunDir.create(tmp_path / "r", {"env": "x", "k": 2, "resume": True}, resume=True)  # 'resume' is ignored


def test_torn_last_line_is_cut_on_open(tmp_path):
    run = RunDir.create(tmp_path / "r")
    run.append_episode(_ep(0), key="a")
    run.append_episode(_ep(1), key="b")
    with open(run.episodes_path, "a") as f:
        f.write(_ep(2).model_dump_json()[:40])  # a kill in the middle of a write
    assert [e.task_id for e in RunDir(run.path).episodes()] == ["0", "1"]  # readers tolerate it
    again = RunDir.open(run.path)
    assert again.episodes_path.read_text().endswith("}\n")
    again.append_episode(_ep(2), key="c")
    assert [e.task_id for e in RunDir.open(run.path).episodes()] == ["0", "1", "2"]


def test_complete_last_line_without_newline_is_kept(tmp_path):
    run = RunDir.create(tmp_path / "r")
    with open(run.episodes_path, "w") as f:
        f.write(_ep(0).model_dump_json())
    assert len(RunDir.open(run.path).episodes()) == 1
    assert run.episodes_path.read_text().endswith("\n")


def test_corrupt_middle_line_is_skipped_with_a_warning_and_counted(tmp_path):
    run = RunDir.create(tmp_path / "r")
    run.append_episode(_ep(0), key="a")
    with open(run.episodes_path, "a") as f:
        f.write("garbage\n")
    run.append_episode(_ep(1), key="b")
    again = RunDir.open(run.path)
    with pytest.warns(CorruptLineWarning, match=":2 is not a valid episode"):
        assert [e.task_id for e in again.episodes()] == ["0", "1"]
    assert again.corrupt_lines == [2]


def test_sigkill_loses_nothing_finished(tmp_path):
    script = textwrap.dedent(f"""
        import sys, time
        from agentloop.runs import RunDir
        from agentloop.types import Episode
        run = RunDir.create({str(tmp_path / 'r')!r})
        for i in range(10_000):
            run.append_episode(Episode(env_id="e", task_id=str(i), metadata={{"pad": "x" * 5000}}), key=str(i))
            print(i, flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    seen = -1
    for line in proc.stdout:
        seen = int(line)
        if seen >= 20:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    eps = RunDir.open(tmp_path / "r").episodes()
    assert len(eps) >= seen + 1  # every episode reported as written is there
    assert [e.task_id for e in eps] == [str(i) for i in range(len(eps))]


def test_metrics_atomic_and_history(tmp_path):
    run = RunDir.create(tmp_path / "r")
    run.write_metrics({"acc": 0.5})
    run.write_metrics({"acc": 0.75})
    assert run.read_metrics() == {"acc": 0.75}
    assert not [p for p in run.path.iterdir() if p.name.endswith(".tmp")]
    run.log_metrics({"iteration": 0, "acc": 0.1})
    run.log_metrics({"iteration": 1, "acc": 0.2})
    with open(run.history_path, "a") as f:
        f.write('{"iteration": 2, "ac')
    assert [r["iteration"] for r in run.history()] == [0, 1]


def test_checkpoint_commit_and_failure(tmp_path):
    run = RunDir.create(tmp_path / "r")
    with run.checkpoint("iter-0") as d:
        (d / "w.bin").write_text("0")
    with pytest.raises(RuntimeError), run.checkpoint("iter-1") as d:
        (d / "w.bin").write_text("partial")
        raise RuntimeError("crash while saving")
    assert [p.name for p in run.checkpoints()] == ["iter-0"]
    with run.checkpoint("iter-0") as d:
        (d / "w.bin").write_text("new")
    assert (run.latest_checkpoint() / "w.bin").read_text() == "new"
    assert [p.name for p in run.checkpoints_path.iterdir()] == ["iter-0"]
    with pytest.raises(RunDirError, match="plain folder name"), run.checkpoint("../x"):
        pass


def test_open_missing_is_clear(tmp_path):
    with pytest.raises(RunDirError, match="does not exist"):
        RunDir.open(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunDirError, match="not a run directory"):
        RunDir.open(tmp_path / "empty")
