"""Chaos for the main job: `improve` SIGKILLed at exact moments, a full disk, a changed config at --resume.

A tiny random Llama (the default model's tokenizer) stands in for the model: these tests check the
machinery, not learning. Each kill is placed by the test-only fault hook (``AGENTLOOP_FAULT``, see
agentloop.runs) in a child process; the resumed run must end with exactly the episode keys of an
uninterrupted run (none lost, none duplicated), a loadable last checkpoint, and no temp folders.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from tests.helpers import mounted_tmpfs

from agentloop.improve import ImproveConfig, improve
from agentloop.runs import RunDirError

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(600)


def _config(model: str, **extra) -> dict:
    cfg = {
        "model": model, "threads": 1, "iterations": 1, "seed": 0,
        "env": {"id": "math/arith-v0", "kwargs": {"difficulty": 1, "num_tasks": 1000}, "train_kwargs": {"seed": 0},
                "eval_kwargs": {"seed": 1}, "train_tasks": 4, "eval_tasks": 3},
        # FAFT trains on failed episodes too, so a random model still gets training steps
        "method": {"name": "faft", "success_feedback": "Your final answer is correct."},
        "collect": {"temperature": 1.0, "max_new_tokens": 4, "batch_size": 1},
        "train": {"lr": 1e-3, "batch_size": 2, "dtype": "float32"},
        "eval": {"max_new_tokens": 4, "batch_size": 1},
    }
    cfg.update(extra)
    return cfg


def _keys(run: Path) -> Counter:
    lines = (run / "episodes.jsonl").read_text().splitlines() if (run / "episodes.jsonl").exists() else []
    return Counter(json.loads(line)["metadata"]["run_key"] for line in lines)


@pytest.fixture(scope="module")
def expected(tiny_model_dir, tmp_path_factory) -> Counter:
    """The episode keys of an uninterrupted run."""
    out = tmp_path_factory.mktemp("plain") / "run"
    improve(ImproveConfig.model_validate(_config(tiny_model_dir)), out=out)
    keys = _keys(out)
    assert sum(keys.values()) == len(keys) > 2 * 3
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(r["train_steps"] >= 2 for r in rows if r["iteration"] > 0)  # so a kill can land mid-training
    return keys


# The child runs improve (Trainer._write_checkpoint has the checkpoint.write fault point after the
# weights, tokenizer and trainer state are in the temp folder, before the rename).
CHILD = """
import json, sys
from agentloop.improve import ImproveConfig, improve
improve(ImproveConfig.model_validate(json.loads(sys.argv[1])), out=sys.argv[2], resume=sys.argv[3] == "1")
"""


def _run_child(cfg: dict, out: Path, fault: dict[str, str], resume: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **fault}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(CHILD), json.dumps(cfg), str(out), "1" if resume else "0"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)


def _assert_loadable(ckpt: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(ckpt))
    assert sum(p.numel() for p in model.parameters()) > 0


KILLS = {
    # name: (fault env, what must hold right after the kill)
    "collect": ({"AGENTLOOP_FAULT": "episode.append:kill", "AGENTLOOP_FAULT_MATCH": r"^collect\|.*\|iter=1$",
                 "AGENTLOOP_FAULT_AFTER": "3"}, "iter-1"),
    "train": ({"AGENTLOOP_FAULT": "train.step:kill", "AGENTLOOP_FAULT_AFTER": "2"}, "iter-1"),
    "checkpoint-write": ({"AGENTLOOP_FAULT": "checkpoint.write:kill"}, "iter-1"),
    "eval": ({"AGENTLOOP_FAULT": "episode.append:kill", "AGENTLOOP_FAULT_MATCH": r"^eval\|.*\|iter=1$",
              "AGENTLOOP_FAULT_AFTER": "2"}, None),
    "metrics": ({"AGENTLOOP_FAULT": "metrics.log:kill", "AGENTLOOP_FAULT_AFTER": "2"}, None),
}


@pytest.mark.parametrize("moment", list(KILLS))
def test_sigkill_then_resume_gives_the_episodes_of_an_uninterrupted_run(tiny_model_dir, expected, tmp_path, moment):
    fault, missing_ckpt = KILLS[moment]
    out = tmp_path / "run"
    killed = _run_child(_config(tiny_model_dir), out, fault)
    assert killed.returncode == -signal.SIGKILL, f"the fault did not fire:\n{killed.stderr[-3000:]}"
    partial = _keys(out)
    assert all(n == 1 for n in partial.values()) and set(partial) <= set(expected)
    if moment in ("collect", "eval"):
        assert sum(partial.values()) < sum(expected.values())
    if missing_ckpt is not None:
        assert not (out / "checkpoints" / missing_ckpt).exists()

    resumed = _run_child(_config(tiny_model_dir), out, {}, resume=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _keys(out) == expected  # none lost, none duplicated
    ckpts = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert ckpts == ["iter-1"]  # committed ones only: no temp folder of the killed write is left
    _assert_loadable(out / "checkpoints" / "iter-1")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [0, 1]
    assert rows[1]["train_steps"] >= 2  # the training figures survive a kill between checkpoint and metrics row
    assert json.loads((out / "result.json").read_text())["n"] == 3


def test_config_changed_before_resume_is_refused_naming_the_keys(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    killed = _run_child(_config(tiny_model_dir), out, {"AGENTLOOP_FAULT": "train.step:kill"})
    assert killed.returncode == -signal.SIGKILL
    changed = _config(tiny_model_dir, train={"lr": 1e-2, "batch_size": 2, "dtype": "float32"}, seed=3)
    with pytest.raises(RunDirError) as err:
        improve(ImproveConfig.model_validate(changed), out=out, resume=True)
    msg = str(err.value)
    assert "differs at seed, train.lr" in msg and "train.lr: 0.001 -> 0.01" in msg and "seed: 0 -> 3" in msg


@pytest.fixture
def small_disk(tmp_path):
    """A 16 MiB tmpfs: room for one tiny-model checkpoint (~10 MiB) but not two (needs root: mount)."""
    with mounted_tmpfs(tmp_path, "16m") as mnt:
        yield mnt


def test_disk_full_during_a_checkpoint_keeps_the_last_good_one_and_resume_finishes(tiny_model_dir, small_disk):
    out = small_disk / "run"
    cfg = _config(tiny_model_dir, iterations=2)  # iter-1 fits on the disk, iter-2 does not
    # The trainer's checkpoint write fails (safetensors raises a plain Exception with the OS message); the
    # message names the cause. (improve wrapping Trainer.save in RunDir.disk_guard turns it into DiskFullError.)
    with pytest.raises(Exception, match="No space left on device"):
        improve(ImproveConfig.model_validate(cfg), out=out)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["iter-1"]  # no half-written iter-2
    _assert_loadable(out / "checkpoints" / "iter-1")
    assert all(n == 1 for n in _keys(out).values())

    before = _keys(out)
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)  # space freed
    improve(ImproveConfig.model_validate(cfg), out=out, resume=True)
    after = _keys(out)
    assert all(n == 1 for n in after.values()) and set(before) <= set(after)
    phases = Counter(f"{k.split('|')[0]}|{k.rsplit('|', 1)[1]}" for k in after)  # e.g. "eval|iter=2"
    assert {p for p in phases if p.startswith("eval")} == {"eval|iter=0", "eval|iter=1", "eval|iter=2"}
    assert phases["eval|iter=2"] == 3 and phases["collect|iter=2"] == phases["collect|iter=1"] > 0
    _assert_loadable(out / "checkpoints" / "iter-2")
