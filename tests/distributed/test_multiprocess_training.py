"""Two CPU processes (gloo) under accelerate end with the same parameters as one process on the same global batches.

Covers the bare reference step, the project Trainer under DDP (multi-step, uneven last batch,
token reduction, micro-batches), the Trainer seeing through the DDP wrapper, and
``fit_in_processes`` (what ``agentloop improve`` runs with ``train.distributed``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from agentloop.training.distributed import (
    DistributedTrainingConfig,
    launch,
    launch_command,
    shard,
)

torch = pytest.importorskip("torch")
pytest.importorskip("accelerate")
pytest.importorskip("transformers")

MODULE = "tests.distributed.reference_runs"  # run with the repository root on the path
ROOT = Path(__file__).resolve().parents[2]


_PATH = {"PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")])}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _single(out, *args: str) -> dict:
    """One process (no launcher); ``--trainer`` runs write a checkpoint folder, the reference run a file."""
    from safetensors.torch import load_file

    subprocess.run([sys.executable, "-m", MODULE, "--out", str(out), *args], check=True, capture_output=True,
                   timeout=300, cwd=ROOT)
    return load_file(str(out / "model.safetensors" if "--trainer" in args else out))


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

    from tests.helpers import tiny_model

    args = ["--optimizer", "sgd", "--lr", "1.0", "--steps", "3", "--global-batch", "8"]
    one = _single(tmp_path / "one.safetensors", *args)
    config = DistributedTrainingConfig(num_processes=2, cpu=True, main_process_port=_free_port())
    proc = launch(config, MODULE, ["--out", str(tmp_path / "two.safetensors"), *args], module=True, timeout=300,
                  env=_PATH)
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
    """The Trainer under accelerate's DDP: several AdamW steps on global batches smaller than the data (the last
    one uneven: 3 rows over 2 processes), "token" reduction, micro-batches of 1 row on the two processes."""
    from safetensors.torch import load_file

    args = ["--trainer", "--lr", "1e-3", "--steps", "4", "--global-batch", "4", "--examples", "11"]
    one = _single(tmp_path / "one", *args)  # one process, no micro-batching: the exact token mean of each batch
    config = DistributedTrainingConfig(num_processes=2, cpu=True, main_process_port=_free_port())
    proc = launch(config, MODULE, ["--out", str(tmp_path / "two"), *args, "--micro-batch", "1"], module=True,
                  timeout=300, env=_PATH)
    assert "'processes': 2" in proc.stdout and "'steps': 4" in proc.stdout
    two = load_file(str(tmp_path / "two" / "model.safetensors"))
    assert not list(tmp_path.glob(".tmp-*"))  # one writer (rank 0): no half-written or competing checkpoint
    moved = _max_diff(one, _init_of(one))
    assert moved > 1e-3
    assert _max_diff(one, two) < 2e-5 < moved / 50
    # Control: other global batches (2 rows) give other weights, so the match above is not vacuous.
    other = _single(tmp_path / "other", *args[:-4], "--global-batch", "2", "--examples", "11")
    assert _max_diff(one, other) > 1e-4


def test_trainer_looks_through_ddp_wrapper(tmp_path):
    """is_lora, save and load_weights see the peft model inside DistributedDataParallel (a 1-process gloo group)."""
    import torch.distributed as dist
    from agentloop.policies.default_model import default_model_path
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer

    from agentloop.training.data import chat_example
    from tests.helpers import tiny_model
    from agentloop.training.trainer import TrainConfig, Trainer
    from agentloop.types import assistant, user

    tok = AutoTokenizer.from_pretrained(str(default_model_path()))
    model = get_peft_model(tiny_model(0, vocab=len(tok)), LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        trainer = Trainer(torch.nn.parallel.DistributedDataParallel(model), tok,
                          TrainConfig(lr=1e-2, batch_size=2, dtype="float32", max_len=32))
        assert trainer.is_lora and trainer.unwrapped is model
        assert trainer.data_parallel() is None  # one rank: the plain single-process path
        ex = [chat_example(tok, [user(f"Say {k}."), assistant(str(k))]) for k in range(2)]
        assert trainer.fit(ex, objective="sft").steps == 1
        path = trainer.save(tmp_path / "ckpt")
    finally:
        dist.destroy_process_group()
    assert (path / "adapter_model.safetensors").exists() and not (path / "model.safetensors").exists()
    fresh = Trainer(get_peft_model(tiny_model(0, vocab=len(tok)), LoraConfig(r=2, target_modules=["q_proj", "v_proj"])),
                    tok, TrainConfig())
    fresh.load_weights(path)
    trained, loaded = model.state_dict(), fresh.model.state_dict()
    assert all(torch.equal(trained[k], loaded[k]) for k in trained if "lora_" in k)
    assert fresh.calls == 1


@pytest.mark.slow
@pytest.mark.parametrize(("lora", "objective", "extra"), [
    (False, "sft", {}),
    (True, "sft", {}),
    (False, "reinforce", {}),  # signed advantages, KL against the reference loaded by every process
    (False, "rwr", {"micro_batch_size": 1, "reduction": "sequence"}),  # per-sequence weighted NLL
])
def test_fit_in_processes_matches_in_process_fit(tiny_model_dir, tmp_path, lora, objective, extra):
    """What `agentloop improve` runs with train.distributed: 2 CPU processes == trainer.fit in this process."""
    from agentloop.training.data import chat_example
    from agentloop.training.distributed import fit_in_processes
    from agentloop.training.trainer import (
        LoraSettings,
        TrainConfig,
        Trainer,
        load_model,
    )
    from agentloop.types import assistant, user

    dist_cfg = DistributedTrainingConfig(num_processes=2, cpu=True, main_process_port=_free_port())
    cfg = TrainConfig(lr=1e-2 if lora else 1e-3, batch_size=4, epochs=1, max_len=96, dtype="float32",
                      lora=LoraSettings(r=4, alpha=8) if lora else None, distributed=dist_cfg, **extra)
    trainers = []
    for _ in range(2):
        torch.manual_seed(0)  # the same random LoRA initialisation in both trainers
        model, tok = load_model(tiny_model_dir, lora=cfg.lora)
        trainers.append(Trainer(model, tok, cfg))
    data = [chat_example(tok, [user(f"Count to {k}."), assistant(" ".join(map(str, range(1, 2 * k + 2))))],
                         weight=1.0 if objective == "sft" else (k % 3) - 0.8, kl_coef=0.1 * (objective == "reinforce"))
            for k in range(10)]
    local, multi = trainers
    before = {k: v.clone() for k, v in local.model.state_dict().items()}
    ref = local.fit(data, objective=objective)
    stats = fit_in_processes(multi, data, objective, tmp_path / "iter-1", model=tiny_model_dir, extra={"iteration": 1})
    assert (stats.steps, stats.examples, stats.tokens) == (ref.steps, ref.examples, ref.tokens) == (3, 10, ref.tokens)
    assert abs(stats.loss_first - ref.loss_first) < 1e-5
    a, b = local.model.state_dict(), multi.model.state_dict()
    keys = [k for k in a if "lora_" in k] if lora else list(a)
    moved = max(float((a[k] - before[k]).abs().max()) for k in keys)
    assert moved > 1e-3
    assert max(float((a[k] - b[k]).abs().max()) for k in keys) < moved / 50
    assert max(float((a[k] - b[k]).abs().max()) for k in keys) < 2e-5
    assert multi.calls == local.calls == 1
    assert (tmp_path / "iter-1" / "trainer_state.json").exists() and not list(tmp_path.glob(".fit-*"))


@pytest.mark.slow
def test_improve_trains_in_two_processes(tiny_model_dir, tmp_path):
    """`agentloop improve` with train.distributed (2 CPU processes) writes the checkpoint a 1-process run writes.

    LeTI: full fine-tuning with reward tokens added to the tokenizer and embeddings, which the
    processes must pick up from the saved start checkpoint."""
    from safetensors.torch import load_file

    from agentloop.improve import ImproveConfig, improve

    def config(**train):
        return ImproveConfig.model_validate({
            "model": tiny_model_dir, "threads": 1, "iterations": 1, "seed": 0,
            "env": {"id": "math/arith-v0", "kwargs": {"difficulty": 1, "num_tasks": 100}, "train_kwargs": {"seed": 0},
                    "eval_kwargs": {"seed": 1}, "train_tasks": 4, "eval_tasks": 2},
            "method": {"name": "leti", "samples_per_task": 2},  # trains on every episode (a random model never succeeds)
            "collect": {"temperature": 1.0, "max_new_tokens": 6, "batch_size": 8},
            "train": {"lr": 1e-3, "batch_size": 4, "dtype": "float32", **train},
            "eval": {"max_new_tokens": 4, "batch_size": 2}})

    one = improve(config(), out=tmp_path / "one")
    two = improve(config(distributed={"num_processes": 2, "cpu": True, "main_process_port": _free_port()}),
                  out=tmp_path / "two")
    rows = [next(r for r in res.iterations if r.get("iteration") == 1) for res in (one, two)]
    assert rows[0]["train_steps"] == rows[1]["train_steps"] >= 2
    a, b = (load_file(str(tmp_path / run / "checkpoints" / "iter-1" / "model.safetensors")) for run in ("one", "two"))
    init = load_file(str(Path(tiny_model_dir) / "model.safetensors"))
    moved = max(float((a[k] - init[k]).abs().max()) for k in a if a[k].shape == init[k].shape)  # LeTI adds tokens
    assert abs(rows[0]["train_loss_first"] - rows[1]["train_loss_first"]) < 1e-5
    assert moved > 1e-4 and max(float((a[k] - b[k]).abs().max()) for k in a) < moved / 50
    assert one.before == two.before and len(one.iterations) == len(two.iterations)


def _init_of(trained: dict) -> dict:
    from agentloop.policies.default_model import default_model_path
    from transformers import AutoTokenizer

    from tests.helpers import tiny_model

    vocab = len(AutoTokenizer.from_pretrained(str(default_model_path())))
    return {k: v for k, v in tiny_model(0, vocab=vocab).state_dict().items() if k in trained}
