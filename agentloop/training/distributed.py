"""Multi-process training under ``accelerate``: launch helpers and a reference data-parallel step.

* :class:`DistributedTrainingConfig` is the ``training.distributed`` block of a run config: how many
  processes, DDP or FSDP, CPU (gloo) or GPU (nccl), mixed precision. :func:`launch_command` turns it
  into a command line (``accelerate launch`` on GPUs; ``torch.distributed.run`` for CPU processes,
  because ``accelerate launch --cpu`` starts one process without MPI) and :func:`launch` runs it.
* :func:`global_token_mean_loss` is the loss normalisation that makes N processes match one: every
  process divides its summed token losses by the number of target tokens in the *global* batch
  (all-reduced) and multiplies by the world size, so DDP's gradient averaging yields exactly the
  gradient of the single-process token mean over the same global batch, even when the processes'
  shards hold different numbers of target tokens.
* :func:`launch_env` sets what the processes need (CPU runs: ``ACCELERATE_USE_CPU``, one BLAS thread).
* :func:`shard` gives each process its contiguous block of the global batch.
* :func:`fit_in_processes` runs one training phase of an in-process :class:`Trainer` in a process
  group (``agentloop improve`` does this when ``train.distributed.num_processes > 1``): it saves the
  current weights and the examples, launches :func:`fit_worker` in every process (``python -m
  agentloop.training.distributed --fit SPEC``), and loads the checkpoint rank 0 wrote.
* The reference runs the tests launch with 1 and 2 CPU processes (a bare masked-LM step and the
  project's Trainer under DDP) live with the tests, in ``tests/distributed/reference_runs.py``.
* Handing trained LoRA adapters to a running generation engine is :mod:`agentloop.generation.adapters`
  (``AdapterSync``, ``engine_placement``).

Not covered: multi-node launch (``num_machines > 1`` is passed to the launcher but untested here),
FSDP (refused on CPU; on GPUs the flags are passed to accelerate, untested here). The trainer under
DDP matches one process fitting the same global batches without micro-batching (one process with
``micro_batch_size`` weights micro-batch means by rows, an approximation of the token mean).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agentloop.errors import AgentLoopError, ConfigError

if TYPE_CHECKING:
    import torch

__all__ = [
    "DistributedTrainingConfig", "TrainingLaunchError",
    "fit_in_processes", "fit_worker", "global_token_mean_loss", "launch", "launch_command", "launch_env", "shard",
]


class TrainingLaunchError(AgentLoopError):
    """The launched training processes failed; the message holds their output."""


class DistributedTrainingConfig(BaseModel):
    """How the trainer's processes are launched (the ``training.distributed`` block of a run config)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_processes: int = Field(default=1, ge=1, description="Processes in total (one per GPU, or CPU workers).")
    strategy: Literal["ddp", "fsdp"] = Field(default="ddp", description="Data parallel (ddp) or sharded (fsdp).")
    cpu: bool = Field(default=False, description="Train on CPU processes (gloo backend) instead of GPUs (nccl).")
    mixed_precision: Literal["no", "bf16", "fp16"] = Field(default="no", description="Autocast precision.")
    fsdp_sharding_strategy: Literal["FULL_SHARD", "SHARD_GRAD_OP", "NO_SHARD", "HYBRID_SHARD"] = Field(
        default="FULL_SHARD", description="FSDP sharding strategy (strategy='fsdp' only).")
    num_machines: int = Field(default=1, ge=1, description="Nodes; >1 also needs main_process_ip and machine_rank.")
    machine_rank: int = Field(default=0, ge=0, description="This node's rank (multi-node).")
    main_process_ip: str | None = Field(default=None, description="Address of rank 0 (multi-node).")
    main_process_port: int | None = Field(default=None, ge=1, le=65535,
                                          description="Rendezvous port (None: the launcher's default, 29500).")

    @model_validator(mode="after")
    def _check(self) -> DistributedTrainingConfig:
        if self.num_processes % self.num_machines:
            raise ValueError(f"num_processes={self.num_processes} must be a multiple of num_machines="
                             f"{self.num_machines} (the same number of processes on every node).")
        if self.strategy == "fsdp" and self.cpu:
            raise ValueError("strategy='fsdp' with cpu=True is not supported here: FSDP shards over GPUs; use "
                             "strategy='ddp' for CPU processes.")
        if self.num_machines > 1 and not self.main_process_ip:
            raise ValueError("num_machines > 1 needs main_process_ip (the address of the rank-0 node).")
        if self.machine_rank >= self.num_machines:
            raise ValueError(f"machine_rank={self.machine_rank} must be < num_machines={self.num_machines}.")
        return self


def launch_command(config: DistributedTrainingConfig, target: str, args: Sequence[str] = (), *,
                   module: bool = False) -> list[str]:
    """The command running ``target`` (a script path, or a module with ``module=True``) in every process.

    GPUs: ``accelerate launch``. CPU processes: ``torch.distributed.run`` (torchrun), because
    ``accelerate launch --cpu`` starts a single process unless MPI is set up; the processes still run
    under accelerate, which :func:`launch_env` switches to CPU (``MULTI_CPU``, gloo backend).
    """
    entry = ["-m", target] if module else [target]
    if config.cpu:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node",
               str(config.num_processes // config.num_machines), "--nnodes", str(config.num_machines),
               "--node_rank", str(config.machine_rank)]
        if config.main_process_ip:
            cmd += ["--master_addr", config.main_process_ip]
        if config.main_process_port is not None:
            cmd += ["--master_port", str(config.main_process_port)]
        return cmd + entry + list(args)
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(config.num_processes),
           "--num_machines", str(config.num_machines), "--mixed_precision", config.mixed_precision,
           "--dynamo_backend", "no"]
    if config.strategy == "fsdp":
        cmd += ["--use_fsdp", "--fsdp_sharding_strategy", config.fsdp_sharding_strategy]
    elif config.num_processes > 1:
        cmd.append("--multi_gpu")
    if config.num_machines > 1:
        cmd += ["--machine_rank", str(config.machine_rank), "--main_process_ip", str(config.main_process_ip)]
    if config.main_process_port is not None:
        cmd += ["--main_process_port", str(config.main_process_port)]
    return cmd + entry + list(args)


def launch_env(config: DistributedTrainingConfig) -> dict[str, str]:
    """Environment variables the launched processes need (accelerate reads them when it builds its state)."""
    env = {"ACCELERATE_MIXED_PRECISION": config.mixed_precision}
    if config.cpu:
        # One BLAS thread per process: N processes x all cores each would oversubscribe the CPU.
        env |= {"ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    return env


def launch(config: DistributedTrainingConfig, target: str, args: Sequence[str] = (), *, module: bool = False,
           env: Mapping[str, str] | None = None, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    """Run :func:`launch_command` and wait; raises TrainingLaunchError with the processes' output if it fails."""
    cmd = launch_command(config, target, args, module=module)
    proc = subprocess.run(cmd, env={**os.environ, **launch_env(config), **(env or {})}, capture_output=True,
                          text=True, timeout=timeout)
    if proc.returncode != 0:
        raise TrainingLaunchError(f"training launch failed (exit {proc.returncode}): {' '.join(cmd)}\n"
                                  f"--- output (last 4000 chars) ---\n{(proc.stdout + proc.stderr)[-4000:]}")
    return proc


def shard(n_rows: int, rank: int, world: int) -> slice:
    """The contiguous block of a global batch of ``n_rows`` rows that process ``rank`` of ``world`` trains on."""
    if n_rows % world:
        raise ConfigError(f"the global batch ({n_rows} rows) must divide evenly over {world} processes; "
                          "change the batch size or the number of processes.")
    per = n_rows // world
    return slice(rank * per, (rank + 1) * per)


def global_token_mean_loss(logits: torch.Tensor, input_ids: torch.Tensor, loss_mask: torch.Tensor,
                           accelerator: Any = None) -> torch.Tensor:
    """Masked next-token loss whose DDP-averaged gradient equals the single-process mean over the global batch.

    ``loss_mask[b, t] = 1`` marks tokens to learn (e.g. the assistant's reply). Without an
    accelerator (or with one process) it is the plain token mean.
    """
    import torch
    import torch.nn.functional as F

    targets = input_ids[:, 1:]
    mask = loss_mask[:, 1:].to(logits.dtype)
    token_loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), targets.flatten(), reduction="none")
    total = (token_loss * mask.flatten()).sum()
    count = mask.sum().detach()
    world = 1
    if accelerator is not None and accelerator.num_processes > 1:
        world = accelerator.num_processes
        count = accelerator.reduce(count.clone(), reduction="sum")
    return total * world / torch.clamp(count, min=1.0)


# -- a training phase in a process group (what ``agentloop improve`` runs with train.distributed) ----
def fit_in_processes(trainer: Any, examples: Sequence[Any], objective: str, out: str | Path, *,
                     model: str | None = None, extra: Mapping[str, Any] | None = None,
                     config: DistributedTrainingConfig | None = None, timeout: float | None = None) -> Any:
    """Run ``trainer.fit(examples, objective)`` in ``config.num_processes`` processes; returns its TrainStats.

    The current weights (full, or the LoRA adapter) are saved next to ``out``, every process loads
    them (:func:`fit_worker`), trains its slice of each global batch under DDP, and rank 0 writes
    the checkpoint ``out`` (:meth:`Trainer.save`, with ``extra``). This process then loads ``out``
    into ``trainer``, so afterwards it holds what an in-process ``fit`` + ``save`` would have (up
    to float rounding, and with the trainer's ``calls`` counter advanced the same way). ``model``
    is the base model folder (None = the embedded default): the base for a LoRA adapter, and the
    KL reference of a fully fine-tuned ``reinforce`` run. ``config`` defaults to
    ``trainer.config.distributed``.
    """
    import json
    import shutil

    from agentloop.runs import temp_folder
    from agentloop.training.trainer import TrainStats

    config = config or trainer.config.distributed
    out = Path(out)
    work = temp_folder(out, prefix=".fit-")  # a killed phase's folder is deleted when the run resumes
    try:
        trainer.save(work / "start")
        with open(work / "examples.jsonl", "w") as f:
            f.writelines(ex.model_dump_json() + "\n" for ex in examples)
        spec = {"model": model, "start": str(work / "start"), "examples": str(work / "examples.jsonl"),
                "objective": objective, "train": trainer.config.model_dump(mode="json"), "out": str(out),
                "stats": str(work / "stats.json"), "extra": dict(extra or {})}
        (work / "spec.json").write_text(json.dumps(spec))
        launch(config, "agentloop.training.distributed", ["--fit", str(work / "spec.json")], module=True,
               timeout=timeout)
        trainer.load_weights(out)
        return TrainStats.model_validate_json((work / "stats.json").read_text())
    finally:
        shutil.rmtree(work, ignore_errors=True)


def fit_worker(spec_path: str | Path) -> None:
    """One process of :func:`fit_in_processes`: load the start weights, fit under accelerate, rank 0 saves."""
    import json

    from accelerate import Accelerator

    from agentloop.training.data import TrainExample
    from agentloop.training.trainer import TrainConfig, Trainer, load_model, lora_base_dtype

    spec = json.loads(Path(spec_path).read_text())
    cfg = TrainConfig.model_validate(spec["train"])
    accelerator = Accelerator()
    device = str(accelerator.device)
    # A full fine-tune's start checkpoint is a whole model folder (tokenizer included, e.g. LeTI's
    # added tokens); a LoRA start checkpoint holds only the adapter, which goes onto the base model.
    model, tok = load_model(spec["model"] if cfg.lora is not None else spec["start"], device=device, lora=cfg.lora,
                            gradient_checkpointing=cfg.gradient_checkpointing, base_dtype=lora_base_dtype(cfg, device))
    ref = None
    if spec["objective"] == "reinforce" and cfg.lora is None:
        ref, _ = load_model(spec["model"], device=device)
        ref.eval().requires_grad_(False)
    trainer = Trainer(accelerator.prepare(model), tok, cfg, ref_model=ref)
    trainer.load_weights(spec["start"])  # the adapter (LoRA) and the trainer's call counter (seeding)
    examples = [TrainExample.model_validate_json(line) for line in Path(spec["examples"]).read_text().splitlines()]
    stats = trainer.fit(examples, spec["objective"])
    trainer.save(spec["out"], extra=spec["extra"])
    if accelerator.is_main_process:
        Path(spec["stats"]).write_text(stats.model_dump_json())
    accelerator.wait_for_everyone()


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="One process of fit_in_processes (launched by it, not by hand).")
    ap.add_argument("--fit", metavar="SPEC", required=True, help="The spec file fit_in_processes wrote.")
    fit_worker(ap.parse_args(argv).fit)


if __name__ == "__main__":
    main()
