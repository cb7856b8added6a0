"""Two CPU processes (gloo) under accelerate end with the same parameters as one process on the same global batch."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from agentloop.training.distributed import DistributedTrainingConfig, launch, launch_command, shard

torch = pytest.importorskip("torch")
pytest.importorskip("accelerate")
pytest.importorskip("transformers")

MODULE = "agentloop.training.distributed"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _single(out, *args: str) -> dict:
    from safetensors.torch import load_file

    subprocess.run([sys.executable, "-m", MODULE, "--out", str(out), *args], check=True, capture_output=True,
                   timeout=300)
    return load_file(str(out))


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def test_config_and_command():
    with pytest.raises(ValueError, match="fsdp"):
        DistributedTrainingConfig(strategy="fsdp", cpu=True)
    with pytest.raises(ValueError, match="main_process_ip"):
        DistributedTrainingConfig(num_processes=4, num_machines=2)
    gpu = launch_command(DistributedTrainingConfig(num_processes=2, mixed_precision="bf16"), "train.py", ["--x"])
    assert gpu[1:3] == ["-m", "accelerate.commands.launch"] and "--multi_gpu" in gpu and gpu[-2:] == ["train.py", "--x"]
    fsdp = launch_command(DistributedTrainingConfig(num_processes=2, strategy="fsdp"), "m", module=True)
    assert "--use_fsdp" in fsdp and fsdp[-2:] == ["-m", "m"]
    assert shard(8, 1, 2) == slice(4, 8)
    with pytest.raises(ValueError, match="divide"):
        shard(7, 0, 2)


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    from safetensors.torch import load_file

    from agentloop.training.distributed import tiny_model

    args = ["--optimizer", "sgd", "--lr", "1.0", "--steps", "3", "--global-batch", "8"]
    one = _single(tmp_path / "one.safetensors", *args)
    config = DistributedTrainingConfig(num_processes=2, cpu=True, main_process_port=_free_port())
    proc = launch(config, MODULE, ["--out", str(tmp_path / "two.safetensors"), *args], module=True, timeout=300)
    assert "'processes': 2" in proc.stdout  # really two ranks, not a silent single-process fallback
    two = load_file(str(tmp_path / "two.safetensors"))
    init = {k: v for k, v in tiny_model(0).state_dict().items() if k in one}
    assert _max_diff(one, init) > 0.05  # training moved the weights
    assert _max_diff(one, two) < 1e-5
    # Control: half the global batch in one process gives different weights, so the match above is not vacuous.
    half = _single(tmp_path / "half.safetensors", *args[:-1], "4")
    assert _max_diff(one, half) > 1e-3


@pytest.mark.slow
def test_project_trainer_two_processes_match_one(tmp_path):
    """The issue-6 Trainer, unchanged, with its model wrapped by accelerate's DDP (AdamW, 3 full-batch steps)."""
    from safetensors.torch import load_file

    args = ["--trainer", "--lr", "1e-3", "--steps", "3", "--global-batch", "8"]
    one = _single(tmp_path / "one.safetensors", *args)
    config = DistributedTrainingConfig(num_processes=2, cpu=True, main_process_port=_free_port())
    proc = launch(config, MODULE, ["--out", str(tmp_path / "two.safetensors"), *args], module=True, timeout=300)
    assert "'processes': 2" in proc.stdout
    two = load_file(str(tmp_path / "two.safetensors"))
    moved = _max_diff(one, {k: v for k, v in _init_of(one).items()})
    assert moved > 1e-3
    assert _max_diff(one, two) < 2e-5 < moved / 50


def _init_of(trained: dict) -> dict:
    from transformers import AutoTokenizer

    from agentloop.policies.default_model import default_model_path
    from agentloop.training.distributed import tiny_model

    vocab = len(AutoTokenizer.from_pretrained(str(default_model_path())))
    return {k: v for k, v in tiny_model(0, vocab=vocab).state_dict().items() if k in trained}
