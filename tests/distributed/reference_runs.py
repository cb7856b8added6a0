"""Reference runs the multi-process training tests launch with 1 and 2 CPU processes.

``python -m tests.distributed.reference_runs --out F`` trains a tiny random-init Llama for a few
steps on a fixed synthetic global batch with a masked LM loss (:func:`reference_run`) and saves the
parameters; ``--trainer`` runs the project's Trainer under accelerate instead (:func:`trainer_run`).
They are the reference the trainers follow, not trainers themselves (no checkpoints, schedule or LoRA).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from agentloop.training.distributed import global_token_mean_loss, shard
from tests.helpers import tiny_model

if TYPE_CHECKING:
    import torch


def synthetic_batch(rows: int, seq_len: int, vocab: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed token ids and a loss mask whose rows hold *different* numbers of target tokens."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (rows, seq_len), generator=gen)
    mask = torch.zeros(rows, seq_len)
    for r in range(rows):
        mask[r, 2 + r % (seq_len - 3):] = 1.0  # prompt of varying length, then the reply to learn
    return ids, mask


def reference_run(out: str | Path, steps: int = 3, global_batch: int = 8, seq_len: int = 12, seed: int = 0,
                  lr: float = 1e-2, optimizer: Literal["adamw", "sgd"] = "adamw") -> dict[str, float]:
    """Train :func:`tiny_model` for ``steps`` steps under the current accelerate state; rank 0 saves the weights."""
    import torch
    from accelerate import Accelerator
    from safetensors.torch import save_file

    accelerator = Accelerator()
    model = tiny_model(seed)
    opt = (torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0) if optimizer == "adamw"
           else torch.optim.SGD(model.parameters(), lr=lr))
    model, opt = accelerator.prepare(model, opt)
    rows = shard(global_batch, accelerator.process_index, accelerator.num_processes)
    losses = []
    vocab = accelerator.unwrap_model(model).config.vocab_size
    ids, mask = synthetic_batch(global_batch, seq_len, vocab, seed)
    ids, mask = ids[rows].to(accelerator.device), mask[rows].to(accelerator.device)
    for _ in range(steps):
        logits = model(input_ids=ids).logits
        loss = global_token_mean_loss(logits, ids, mask, accelerator)
        opt.zero_grad()
        accelerator.backward(loss)
        opt.step()
        losses.append(float(accelerator.reduce(loss.detach(), reduction="mean")))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        state = {k: v.detach().cpu().contiguous() for k, v in accelerator.unwrap_model(model).state_dict().items()}
        state.pop("lm_head.weight", None)  # tied to the embeddings; safetensors refuses shared storage
        save_file(state, str(out))
    accelerator.wait_for_everyone()
    return {"loss_first": losses[0], "loss_last": losses[-1], "processes": accelerator.num_processes}


def trainer_run(out: str | Path, steps: int = 3, global_batch: int = 8, seed: int = 0, lr: float = 1e-3,
                examples: int | None = None, reduction: Literal["token", "sequence"] = "token",
                micro_batch: int | None = None) -> dict[str, float]:
    """The project's :class:`~agentloop.training.trainer.Trainer` under accelerate (DDP when launched on N processes).

    Every process passes the same ``examples`` chat examples (default: ``global_batch``) of varying
    length; the trainer shuffles them once (same seed on every rank) and each of the ``steps``
    optimizer steps trains on a global batch of ``global_batch`` rows split across the processes,
    with the loss normalised over the global batch. ``out`` is a checkpoint folder written by
    :meth:`Trainer.save` (rank 0 only).
    """
    from accelerate import Accelerator
    from transformers import AutoTokenizer

    from agentloop.policies.default_model import default_model_path
    from agentloop.training.data import chat_example
    from agentloop.training.trainer import TrainConfig, Trainer
    from agentloop.types import assistant, user

    accelerator = Accelerator()
    tok = AutoTokenizer.from_pretrained(str(default_model_path()))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = tiny_model(seed, vocab=len(tok))
    n = examples or global_batch
    data = [chat_example(tok, [user(f"Count to {k}."), assistant(" ".join(str(j) for j in range(1, 3 * k + 2)))])
            for k in range(n)]
    model = accelerator.prepare(model)
    config = TrainConfig(lr=lr, batch_size=global_batch, micro_batch_size=micro_batch, max_steps=steps,
                         epochs=-(-steps * global_batch // n), max_len=128, reduction=reduction, dtype="float32",
                         seed=seed)
    trainer = Trainer(model, tok, config)
    stats = trainer.fit(data, objective="sft")
    trainer.save(out)
    return {"loss_first": float(stats.loss_first or 0.0), "loss_last": float(stats.loss_last or 0.0),
            "steps": stats.steps, "tokens": stats.tokens, "processes": accelerator.num_processes}


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Reference data-parallel run: tiny random-init Llama, masked LM loss.")
    ap.add_argument("--out", required=True, help="safetensors file (or --trainer: checkpoint folder), written by rank 0.")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--global-batch", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--optimizer", choices=["adamw", "sgd"], default="adamw")
    ap.add_argument("--trainer", action="store_true", help="Run the project's Trainer (AdamW).")
    ap.add_argument("--examples", type=int, default=None, help="--trainer: examples in the data (default: batch).")
    ap.add_argument("--reduction", choices=["token", "sequence"], default="token")
    ap.add_argument("--micro-batch", type=int, default=None, help="--trainer: micro-batch size per process.")
    a = ap.parse_args(argv)
    if a.trainer:
        stats = trainer_run(a.out, steps=a.steps, global_batch=a.global_batch, seed=a.seed, lr=a.lr,
                            examples=a.examples, reduction=a.reduction, micro_batch=a.micro_batch)
    else:
        stats = reference_run(a.out, steps=a.steps, global_batch=a.global_batch, seed=a.seed, lr=a.lr,
                              optimizer=a.optimizer)
    if int(os.environ.get("RANK", "0")) == 0:
        print(stats, flush=True)


if __name__ == "__main__":
    main()
