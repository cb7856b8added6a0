"""The trainer: full fine-tuning or LoRA of a causal LM on :class:`TrainExample` batches.

One class, three objectives (the maths lives in :mod:`agentloop.algorithms.losses`):

* ``sft``: masked NLL of the trained segments, each sequence scaled by its ``weight`` (1 = plain SFT);
* ``rwr``: the same with the weights exp(r / tau) normalised by :func:`~agentloop.algorithms.losses.rwr_weights`
  before they reach the trainer (RISE);
* ``reinforce``: policy gradient with ``weight`` as the (baseline-subtracted) advantage, a clipped
  importance ratio against the behaviour policy (the weights at the start of the ``fit`` call,
  which collected the samples) so the several optimizer steps of one call are corrected for
  reusing the samples, and a per-token KL penalty against a frozen reference (SCoRe) whose
  gradient is that of KL(pi || pi_ref); the reference is the LoRA-disabled model when training
  LoRA, else a frozen copy of the starting weights. The behaviour log-probs come from one no-grad
  pass over the phase's examples before its first step (:meth:`Trainer.behaviour_pass`), cached
  per example: no copy of the weights is kept and none is swapped in. They are recomputed with
  the trainer's own forward rather than taken from the sampler's ``Turn.logprobs``, which a bf16
  generation copy (or another backend) computes with other numerics: the first step's ratio is
  then exactly 1, and every example has them, rendered ones included.

Precision: trainable weights stay float32 (so small updates are not rounded away, docs/methods.md
section 8) and the forward pass runs under bf16 autocast where the hardware supports it (CUDA
with bf16, or a CPU with AVX512-bf16/AMX); ``dtype="float32"`` turns autocast off.
Non-finite steps: a step whose loss or gradient norm is NaN/inf is skipped (no weight changes) and
counted in ``TrainStats.skipped_nonfinite``; if every step of a call is skipped, or a weight ends up
NaN/inf, :meth:`Trainer.fit` raises :class:`NonFiniteTrainingError` so no broken checkpoint is saved.
Gradient checkpointing and LoRA (peft) are config switches. Seeding is deterministic: the
example order of each call to :meth:`Trainer.fit` depends only on ``seed`` and ``call``.
Padding: ``group_by_length`` (default on) sorts each step's examples by length before cutting
micro-batches, and every micro-batch's loss is weighted by its share of the step's loss units, so
the step's gradient is that of the whole batch while little compute goes to padding;
``length_window`` (off by default) also groups lengths across steps. Packing is not done.

What we use from libraries and why: transformers for the model, its chat template and gradient
checkpointing; peft for LoRA adapters (``get_peft_model``, ``disable_adapter`` for the reference,
``merge_and_unload`` when exporting); torch AdamW. TRL's trainers are not used: each expects its
own dataset and loss, and our losses (per-sequence advantages and KL coefficients, RWR weights,
trained-segment masks) are the point of the methods, so the loop here is ~100 lines we test directly.
Data parallel (DDP, e.g. under ``accelerate`` with N processes): pass a model wrapped by
``DistributedDataParallel`` (``accelerator.prepare(model)``) and the *same* examples on every rank.
:meth:`Trainer.fit` then shuffles once globally (same seed everywhere), splits each global batch of
``batch_size`` rows into contiguous per-rank slices, and normalises every loss by the *global*
count of its unit (target tokens for ``reduction="token"``, sequences otherwise; all-reduced), so N
processes produce the gradient of one process fitting the whole global batch without
micro-batching. Checkpoints are written by rank 0 only (the others wait at a barrier); ``is_lora``,
the reference model, ``save`` and ``load_weights`` look through the DDP wrapper (``model.module``).
A process group of > 1 ranks with an unwrapped model is treated as independent single processes.
Not covered: FSDP, optimizer state across ``fit`` calls (each call starts a fresh AdamW, as
expert-iteration methods restart training each iteration).
"""

from __future__ import annotations

import functools
import inspect
import json
import math
import random
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, Field

from agentloop.algorithms import losses as L
from agentloop.errors import AgentLoopError, ConfigError
from agentloop.runs import atomic_folder, fault_point
from agentloop.training.data import TrainExample, encode_example
from agentloop.training.config import LoraSettings, TrainConfig

__all__ = ["LoraSettings", "NonFiniteTrainingError", "TrainConfig", "TrainStats", "Trainer", "bf16_supported",
           "load_model", "seed_everything"]

Objective = Literal["sft", "rwr", "reinforce"]


class TrainStats(BaseModel):
    """What one :meth:`Trainer.fit` call did."""

    steps: int = 0
    examples: int = 0
    tokens: int = 0
    truncated: int = 0
    loss_first: float | None = None
    loss_last: float | None = None
    loss_mean: float | None = None
    seconds: float = 0.0
    skipped_nonfinite: int = Field(default=0, description="Steps skipped because their loss or gradient was NaN/inf.")
    tokens_per_s: float | None = Field(default=None, description="Non-padding tokens trained per second (all ranks).")
    padded_tokens: int = Field(default=0, description="Token positions computed, padding included (this rank).")


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def bf16_supported(device: torch.device) -> bool:
    """bf16 autocast is worth it: CUDA with bf16, or a CPU with AVX512-bf16 / AMX."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def trains_in_bf16(config: TrainConfig, device: str | torch.device = "cpu") -> bool:
    """Whether the training forward runs under bf16 autocast (``train.dtype``; auto = where the device supports it)."""
    return config.dtype == "bfloat16" or (config.dtype == "auto" and bf16_supported(torch.device(device)))


def lora_base_dtype(config: TrainConfig, device: str | torch.device = "cpu") -> torch.dtype:
    """The dtype of a LoRA run's frozen base weights (``LoraSettings.base_dtype``); float32 without LoRA."""
    if config.lora is None or config.lora.base_dtype == "float32":
        return torch.float32
    if config.lora.base_dtype == "bfloat16":
        return torch.bfloat16
    return torch.bfloat16 if trains_in_bf16(config, device) else torch.float32


def load_model(path: str | Path | None, *, device: str = "cpu", lora: LoraSettings | None = None,
               gradient_checkpointing: bool = False, base_dtype: torch.dtype = torch.float32) -> tuple[Any, Any]:
    """(model, tokenizer) for training; None = the embedded default model.

    Full fine-tuning always loads float32 (master) weights. With ``lora`` the frozen base is loaded in
    ``base_dtype`` (see :func:`lora_base_dtype`) and peft keeps the adapter in float32.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if path is None:
        from agentloop.policies.default_model import default_model_path

        path = default_model_path()
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    dtype = base_dtype if lora is not None else torch.float32
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype).to(device)
    if gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    if lora is not None:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                                                 target_modules=list(lora.target_modules), task_type="CAUSAL_LM"))
        if gradient_checkpointing:
            model.enable_input_require_grads()
    return model, tokenizer


class NonFiniteTrainingError(AgentLoopError):
    """Training produced no usable update (every step NaN/inf) or non-finite weights; nothing should be saved."""


def _check_finite(model: Any, steps: int, skipped: int) -> None:
    """Stop the run, before anything is saved, when every step was skipped or a weight became NaN/inf."""
    if steps and skipped == steps:
        raise NonFiniteTrainingError(
            f"every one of the {steps} training steps had a NaN/inf loss or gradient, so none was applied: check the "
            "examples' weights (advantages, RWR weights) and lower train.lr, or use train.dtype: float32.")
    bad = [name for name, p in model.named_parameters() if p.requires_grad and not bool(torch.isfinite(p).all())]
    if bad:
        raise NonFiniteTrainingError(
            f"training made {len(bad)} weight tensors NaN/inf (e.g. {', '.join(bad[:3])}); no checkpoint was written "
            "from them. Lower train.lr (or train.max_grad_norm) and start again from the last checkpoint.")


def first_loss_position(mask: torch.Tensor) -> int:
    """The first column of a ``[B, T-1]`` loss mask that is non-zero in any row (0 when none is).

    Column ``j`` is the prediction of token ``j + 1`` from position ``j``'s logits, so no logits before
    position ``j`` are needed for the loss (:meth:`Trainer._logp`'s ``keep_from``).
    """
    cols = torch.nonzero(mask.detach().sum(0))
    return int(cols[0, 0]) if cols.numel() else 0


class Trainer:
    """Updates ``model`` on lists of :class:`TrainExample` (see the module docstring).

    Example::

        model, tok = load_model(None)
        trainer = Trainer(model, tok, TrainConfig(lr=2e-5))
        stats = trainer.fit(examples, objective="sft")
        trainer.save("runs/x/checkpoints/iter-1")
    """

    def __init__(self, model: Any, tokenizer: Any, config: TrainConfig | None = None, ref_model: Any = None):
        self.model = model
        self.tokenizer = tokenizer
        self.config = config or TrainConfig()
        self.device = next(model.parameters()).device
        self.calls = 0
        self._ref = ref_model
        self._behaviour: dict[int, torch.Tensor] = {}  # this fit call's behaviour log-probs (behaviour_pass)
        self.autocast_dtype = torch.bfloat16 if trains_in_bf16(self.config, self.device) else None

    @property
    def unwrapped(self) -> Any:
        """The model inside a DistributedDataParallel wrapper (``model.module``), else the model itself."""
        return self.model.module if isinstance(self.model, torch.nn.parallel.DistributedDataParallel) else self.model

    @property
    def is_lora(self) -> bool:
        inner = self.unwrapped
        return hasattr(inner, "disable_adapter") and hasattr(inner, "peft_config")

    def data_parallel(self) -> tuple[int, int] | None:
        """(rank, world size) when the model is DDP-wrapped in a process group of > 1 ranks, else None."""
        dist = torch.distributed
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
            return None
        if not isinstance(self.model, torch.nn.parallel.DistributedDataParallel):
            return None  # without DDP gradients are not averaged: each rank trains on its own
        return dist.get_rank(), dist.get_world_size()

    # -- log-probabilities --------------------------------------------------------------------------
    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.autocast_dtype or torch.float32,
                              enabled=self.autocast_dtype is not None)

    def _logp(self, model: Any, ids: torch.Tensor, attn: torch.Tensor, keep_from: int = 0) -> torch.Tensor:
        """Token log-probs ``[B, T-1]``; with ``keep_from`` > 0 the model computes logits only from that position on.

        Positions before ``keep_from`` carry no loss in this micro-batch (see :func:`first_loss_position`), so
        the output projection and the float32 log-softmax over the vocabulary (49152 x 4 bytes per position for
        the default model: most of a training step's memory) run only where they are used; the columns before
        are zeros. Models whose ``forward`` takes no ``logits_to_keep`` get full logits.
        """
        keep_from = keep_from if keep_from > 0 and self._keeps_logits else 0
        with self._autocast():
            if keep_from:
                logits = model(input_ids=ids, attention_mask=attn, logits_to_keep=ids.shape[1] - keep_from).logits
            else:
                logits = model(input_ids=ids, attention_mask=attn).logits
        logp = L.token_logprobs(logits, ids[:, keep_from:])
        return torch.nn.functional.pad(logp, (keep_from, 0)) if keep_from else logp

    @functools.cached_property
    def _keeps_logits(self) -> bool:
        """Whether the model's forward takes ``logits_to_keep`` (looked up once, not at every forward)."""
        inner = self.unwrapped
        base = inner.get_base_model() if hasattr(inner, "get_base_model") else inner
        return "logits_to_keep" in inspect.signature(base.forward).parameters

    @torch.no_grad()
    def _ref_logp(self, ids: torch.Tensor, attn: torch.Tensor, keep_from: int = 0) -> torch.Tensor:
        if self.is_lora:
            # The unwrapped model: a no-grad forward needs no DDP gradient hooks.
            with self.unwrapped.disable_adapter():
                return self._logp(self.unwrapped, ids, attn, keep_from)
        if self._ref is None:
            import copy

            # The reference is the policy as it was when KL was first needed: the starting weights.
            self._ref = copy.deepcopy(self.unwrapped).eval()
            for p in self._ref.parameters():
                p.requires_grad_(False)
        return self._logp(self._ref, ids, attn, keep_from)

    @torch.no_grad()
    def behaviour_pass(self, batches: Sequence[Sequence[TrainExample]]) -> dict[int, torch.Tensor]:
        """Log-probs of every example of a training phase under the weights it starts with, keyed by ``id(example)``.

        The improve loop collects with the current weights and then fits, so the weights at the start
        of a ``fit`` call are the policy that sampled its examples (the behaviour policy of the
        importance ratio). One no-grad forward per example, before the first optimizer step, over the
        same micro-batches the steps will use (this rank's rows under DDP), so the first step's ratio
        is exactly 1; each row is kept on the CPU (``[len(ids) - 1]`` floats). No copy of the weights
        is made, so it costs no memory for full fine-tuning and works wherever a forward does.
        """
        cache: dict[int, torch.Tensor] = {}
        model, was_training = self.unwrapped, self.unwrapped.training
        model.eval()  # the sampler's mode: no dropout
        try:
            for batch in batches:
                rows = self._rank_rows(batch)[0]
                micro = self.config.micro_batch_size or len(rows)
                for part in self._micro_batches(rows, micro):
                    todo = [ex for ex in part if id(ex) not in cache]
                    if not todo:
                        continue
                    collated = self.collate(part)
                    mask = collated["loss_mask"] * collated["attention_mask"][:, 1:]
                    logp = self._logp(model, collated["input_ids"], collated["attention_mask"],
                                      first_loss_position(mask)).float().cpu()
                    lengths = collated["attention_mask"].sum(-1).tolist()
                    for i, ex in enumerate(part):
                        cache.setdefault(id(ex), logp[i, : max(int(lengths[i]) - 1, 0)].clone())
        finally:
            model.train(was_training)
        return cache

    def _rank_rows(self, batch: Sequence[TrainExample]) -> tuple[list[TrainExample], bool]:
        """The rows of ``batch`` this process trains, and whether it is idle (see :meth:`_ddp_step`)."""
        dp = self.data_parallel()
        if dp is None:
            return list(batch), False
        rank, world = dp
        bounds = [len(batch) * r // world for r in range(world + 1)]
        mine = list(batch[bounds[rank]: bounds[rank + 1]])
        return (mine, False) if mine else (list(batch[:1]), True)

    def collate(self, examples: Sequence[TrainExample]) -> dict[str, torch.Tensor]:
        """Right-padded ids, attention mask, loss mask (shifted to align with token_logprobs), weights, KL coefs."""
        encoded = [encode_example(self.tokenizer, ex, self.config.max_len) for ex in examples]
        width = max(len(ids) for ids, _, _ in encoded)
        pad = int(self.tokenizer.pad_token_id or 0)
        ids = torch.full((len(encoded), width), pad, dtype=torch.long)
        attn = torch.zeros((len(encoded), width), dtype=torch.long)
        mask = torch.zeros((len(encoded), width), dtype=torch.float32)
        for i, (toks, m, _) in enumerate(encoded):
            ids[i, : len(toks)] = torch.tensor(toks)
            attn[i, : len(toks)] = 1
            mask[i, : len(m)] = torch.tensor(m, dtype=torch.float32)
        return {
            "input_ids": ids.to(self.device), "attention_mask": attn.to(self.device),
            "loss_mask": mask[:, 1:].to(self.device),
            "weights": torch.tensor([ex.weight for ex in examples], dtype=torch.float32, device=self.device),
            "kl_coef": torch.tensor([ex.kl_coef for ex in examples], dtype=torch.float32, device=self.device),
            "truncated": torch.tensor(sum(c for _, _, c in encoded)),
            **self._cached_behaviour(examples, width),
        }

    def _cached_behaviour(self, examples: Sequence[TrainExample], width: int) -> dict[str, torch.Tensor]:
        """``{"behaviour_logp": [B, width - 1]}`` from this phase's :meth:`behaviour_pass`, when it has every row."""
        rows = [self._behaviour.get(id(ex)) for ex in examples]
        if not self._behaviour or any(r is None for r in rows):
            return {}
        old = torch.zeros((len(examples), max(width - 1, 0)), dtype=torch.float32)
        for i, r in enumerate(rows):
            old[i, : len(r)] = r  # type: ignore[arg-type]
        return {"behaviour_logp": old.to(self.device)}

    def loss(self, batch: dict[str, torch.Tensor], objective: Objective, weighted: bool | None = None) -> torch.Tensor:
        """The objective's loss on one collated micro-batch.

        ``weighted`` picks the per-sequence weighted NLL for sft/rwr; None decides from this
        micro-batch (weighted unless objective is sft with every weight 1).
        """
        mask = batch["loss_mask"] * batch["attention_mask"][:, 1:]
        keep = first_loss_position(mask)
        # Behaviour log-probs come from the phase's no-grad pass (collate attaches them); a batch without
        # them (loss called outside fit) is taken to be on-policy: ratio 1.
        old = batch.get("behaviour_logp") if objective == "reinforce" else None
        logp = self._logp(self.model, batch["input_ids"], batch["attention_mask"], keep)
        if objective in ("sft", "rwr"):
            if weighted is None:
                weighted = not (objective == "sft" and bool((batch["weights"] == 1).all()))
            if objective == "sft" and not weighted:
                return L.sft_loss(logp, mask, self.config.reduction)
            return L.weighted_sft_loss(logp, mask, batch["weights"])
        if objective == "reinforce":
            kl = batch["kl_coef"]
            ref = self._ref_logp(batch["input_ids"], batch["attention_mask"], keep) if bool((kl > 0).any()) else None
            return L.reinforce_loss(logp, mask, batch["weights"], ref_logp=ref, kl_coef=kl,
                                    estimator=self.config.kl_estimator, reduction=self.config.reduction,
                                    old_logp=old, clip_eps=self.config.clip_eps)
        raise ConfigError(f"unknown objective {objective!r}; use 'sft', 'rwr' or 'reinforce'.")

    # -- the loop -----------------------------------------------------------------------------------
    def fit(self, examples: Sequence[TrainExample], objective: Objective = "sft",
            progress: Callable[[int, int, float], None] | None = None) -> TrainStats:
        """Train on ``examples`` for ``config.epochs`` passes; ``progress(step, total, loss)`` after each step.

        Under DDP (:meth:`data_parallel`) every rank passes the same ``examples``: ``batch_size`` is
        the global batch, of which each rank trains its slice (see the module docstring).
        """
        cfg = self.config
        stats = TrainStats()
        if not examples:
            return stats
        seed_everything(cfg.seed + 1000 * self.calls)
        self.calls += 1
        order = torch.Generator().manual_seed(cfg.seed + self.calls)
        batches = [batch for _ in range(cfg.epochs) for batch in self._epoch_batches(examples, order)]
        if cfg.max_steps is not None:
            batches = batches[: cfg.max_steps]
        params = [p for p in self.model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / (cfg.warmup_steps + 1)))
        start, losses = time.perf_counter(), []
        dp = self.data_parallel()
        # Behaviour log-probs of the whole phase before any step (no weight copy), used by every step's ratio;
        # a one-step phase is on-policy throughout (ratio 1) and needs none.
        self._behaviour = self.behaviour_pass(batches) if objective == "reinforce" and len(batches) > 1 else {}
        self.model.train()
        try:
            for step, batch in enumerate(batches):
                total = self._local_step(batch, objective, stats) if dp is None else self._ddp_step(batch, objective,
                                                                                                  stats, *dp)
                grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                # A NaN/inf loss or gradient would poison every weight: skip the step (the same on every DDP rank,
                # as both the step loss and the gradients are all-reduced) and count it.
                if math.isfinite(total) and bool(torch.isfinite(grad_norm)):
                    opt.step()
                    sched.step()
                    losses.append(total)
                    fault_point("train.step", str(step))  # test-only fault injection (agentloop.runs); no-op otherwise
                else:
                    stats.skipped_nonfinite += 1
                opt.zero_grad(set_to_none=True)
                stats.examples += len(batch)
                if progress is not None:
                    progress(step + 1, len(batches), total)
        finally:
            self._behaviour = {}  # this phase's only
        self.model.eval()
        _check_finite(self.unwrapped, len(batches), stats.skipped_nonfinite)
        if dp is not None:  # tokens / truncation counted on every rank's slice
            counts = torch.tensor([stats.tokens, stats.truncated], dtype=torch.float64, device=self.device)
            torch.distributed.all_reduce(counts)
            stats.tokens, stats.truncated = int(counts[0]), int(counts[1])
        finite = [x for x in losses if math.isfinite(x)]
        stats.steps = len(losses)  # optimizer steps taken (skipped ones are in skipped_nonfinite)
        stats.loss_first, stats.loss_last = losses[0], losses[-1]
        stats.loss_mean = sum(finite) / len(finite) if finite else None
        stats.seconds = time.perf_counter() - start
        stats.tokens_per_s = round(stats.tokens / stats.seconds, 1) if stats.seconds > 0 else None
        return stats

    def _epoch_batches(self, examples: Sequence[TrainExample], order: torch.Generator) -> list[list[TrainExample]]:
        """One epoch's optimizer-step batches: a seeded shuffle, optionally length-grouped within windows."""
        size = self.config.batch_size
        perm = [int(j) for j in torch.randperm(len(examples), generator=order)]
        window = self.config.length_window * size
        if not window:
            return [[examples[j] for j in perm[i: i + size]] for i in range(0, len(perm), size)]
        batches: list[list[TrainExample]] = []
        for w in range(0, len(perm), window):
            chunk = sorted(perm[w: w + window], key=lambda j: self._length(examples[j]))  # stable: ties keep the shuffle
            cut = [[examples[j] for j in chunk[i: i + size]] for i in range(0, len(chunk), size)]
            batches += [cut[int(k)] for k in torch.randperm(len(cut), generator=order)]
        return batches

    def _length(self, example: TrainExample) -> int:
        return len(encode_example(self.tokenizer, example, self.config.max_len)[0])

    def _micro_batches(self, batch: Sequence[TrainExample], micro_size: int) -> list[list[TrainExample]]:
        """``batch`` cut into micro-batches, of similar lengths under ``group_by_length``."""
        rows = list(batch)
        if self.config.group_by_length and micro_size < len(rows):
            rows = sorted(rows, key=self._length)
        return [rows[i: i + micro_size] for i in range(0, len(rows), micro_size)]

    def _local_step(self, batch: Sequence[TrainExample], objective: Objective, stats: TrainStats) -> float:
        """Accumulate one optimizer step's gradients in a single process; returns the step's loss.

        Each micro-batch's mean loss is scaled by its share of the step's loss units (target tokens or
        sequences, :meth:`_loss_units`), so the accumulated gradient is the one of the whole step as a
        single batch, whichever way the step is cut into micro-batches.
        """
        total = 0.0
        micro_size = self.config.micro_batch_size or self.config.batch_size
        micros = [self.collate(m) for m in self._micro_batches(batch, micro_size)]
        weighted = objective == "rwr" or any(ex.weight != 1 for ex in batch)  # decided on the whole step
        units = [self._loss_units(c, objective, weighted) for c in micros]
        denom = max(sum(units), 1.0)
        for collated, unit in zip(micros, units):
            loss = self.loss(collated, objective, weighted=weighted) * (unit / denom)
            loss.backward()
            total += float(loss.detach())
            stats.tokens += int(collated["attention_mask"].sum())
            stats.padded_tokens += int(collated["attention_mask"].numel())
            stats.truncated += int(collated["truncated"])
        return total

    def _loss_units(self, batch: dict[str, torch.Tensor], objective: Objective, weighted: bool) -> float:
        """What the objective's loss on ``batch`` is a mean over: target tokens, or (non-empty) sequences."""
        mask = batch["loss_mask"] * batch["attention_mask"][:, 1:]
        if objective in ("sft", "rwr") and (weighted or objective == "rwr"):
            return float(mask.shape[0])  # weighted_sft_loss divides by the rows
        if self.config.reduction == "token":
            return float(mask.sum())
        return float((mask.sum(-1) > 0).sum())

    def _ddp_step(self, batch: Sequence[TrainExample], objective: Objective, stats: TrainStats,
                  rank: int, world: int) -> float:
        """This rank's share of one global step; the DDP-averaged gradient is the single-process one.

        Each micro-batch's mean loss is rescaled to ``sum * world / global_units`` (units all-reduced
        over ranks), so DDP's average over ``world`` ranks is the mean over the whole global batch.
        """
        # Contiguous, near-even slices; a rank left without rows runs the first row with weight 0 so
        # that every rank still takes part in DDP's gradient all-reduce.
        mine, idle = self._rank_rows(batch)
        weighted = objective == "rwr" or any(ex.weight != 1 for ex in batch)  # decided on the global batch
        micro_size = self.config.micro_batch_size or len(mine)
        micros = [self.collate(m) for m in self._micro_batches(mine, micro_size)]
        units = [0.0 if idle else self._loss_units(c, objective, weighted) for c in micros]
        global_units = torch.tensor(sum(units), dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(global_units)
        denom = max(float(global_units), 1.0)
        total = 0.0
        for k, collated in enumerate(micros):
            # Gradients are all-reduced once per step, on the last micro-batch's backward.
            with self.model.no_sync() if k < len(micros) - 1 else nullcontext():
                loss = self.loss(collated, objective, weighted=weighted) * (units[k] * world / denom)
                loss.backward()
            total += float(loss.detach())
            if not idle:
                stats.tokens += int(collated["attention_mask"].sum())
                stats.padded_tokens += int(collated["attention_mask"].numel())
                stats.truncated += int(collated["truncated"])
        step_loss = torch.tensor(total / world, dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(step_loss)  # the global batch's loss, the same on every rank
        return float(step_loss)

    # -- checkpoints --------------------------------------------------------------------------------
    def save(self, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Save a checkpoint atomically (all or nothing) that other tools load directly.

        The folder is a Hugging Face one: full weights load with
        ``AutoModelForCausalLM.from_pretrained(path)``; a LoRA adapter with
        ``PeftModel.from_pretrained(base, path)``, ``AutoPeftModelForCausalLM.from_pretrained(path)`` or
        ``AutoModelForCausalLM.from_pretrained(path)`` (transformers' peft integration finds the base
        through ``base_model_name_or_path``, made absolute for a local base). Both carry the tokenizer
        with its chat template, a README saying how to load and serve it, and ``trainer_state.json``
        (``calls``, the train config, ``extra``) for :meth:`load_weights` and resume; full weights also
        their generation config, with the KV cache on (gradient checkpointing turns it off in training).
        """
        path = Path(path)
        if self.data_parallel() is not None:
            # Rank 0 writes; the others wait so that no rank reads the checkpoint before it exists.
            if torch.distributed.get_rank() == 0:
                self._write_checkpoint(path, extra)
            torch.distributed.barrier()
            return path
        return self._write_checkpoint(path, extra)

    def _write_checkpoint(self, path: Path, extra: dict[str, Any] | None) -> Path:
        with atomic_folder(path) as tmp:
            self.unwrapped.save_pretrained(tmp, safe_serialization=True)
            self.tokenizer.save_pretrained(tmp)
            lora, base = self.is_lora, None
            if lora:
                base = _portable_adapter_config(tmp)
            else:
                _portable_model_config(tmp)
            (tmp / "README.md").write_text(_checkpoint_readme(path, lora, base), encoding="utf-8")
            state = {"calls": self.calls, "config": self.config.model_dump(mode="json"), **(extra or {})}
            (tmp / "trainer_state.json").write_text(json.dumps(state, indent=2))
            fault_point("checkpoint.write", str(tmp))  # test-only kill/ENOSPC point (agentloop.runs)
        return path

    def load_weights(self, path: str | Path) -> None:
        """Load weights saved by :meth:`save` into this trainer's model (same architecture / adapter)."""
        from safetensors.torch import load_file

        path = Path(path)
        files = sorted(path.glob("*.safetensors"))
        if not files:
            raise ConfigError(f"{path} holds no .safetensors weights; is it a checkpoint written by Trainer.save?")
        state: dict[str, torch.Tensor] = {}
        for f in files:
            state.update(load_file(str(f)))
        if self.is_lora:
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(self.unwrapped, state)
        else:
            missing, unexpected = self.unwrapped.load_state_dict(state, strict=False)
            real_missing = [m for m in missing if "lm_head" not in m]  # tied embeddings are not saved twice
            if real_missing or unexpected:
                raise ConfigError(f"checkpoint {path} does not match the model: missing {real_missing[:3]}, "
                                  f"unexpected {unexpected[:3]}.")
        meta = path / "trainer_state.json"
        if meta.exists():
            self.calls = int(json.loads(meta.read_text()).get("calls", self.calls))


# -- checkpoint helpers -------------------------------------------------------------------------------
def _portable_model_config(folder: Path) -> None:
    """Undo training-only settings in a saved ``config.json``: gradient checkpointing turns the KV cache off,
    which would make every generation from the checkpoint elsewhere recompute the whole prefix per token."""
    file = folder / "config.json"
    config = json.loads(file.read_text())
    if config.get("use_cache") is False:
        config["use_cache"] = True
        file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _portable_adapter_config(folder: Path) -> str | None:
    """Make a saved adapter's ``base_model_name_or_path`` absolute when it is a local folder (so the adapter
    loads from any working directory); returns the base, None when unknown (an in-memory base model)."""
    file = folder / "adapter_config.json"
    config = json.loads(file.read_text())
    base = config.get("base_model_name_or_path") or None
    if base and Path(base).expanduser().is_dir():
        base = str(Path(base).expanduser().resolve())
        config["base_model_name_or_path"] = base
        file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return base


def _checkpoint_readme(path: Path, lora: bool, lora_base: str | None) -> str:
    """A short model card: what the folder is and the lines that load or serve it."""
    name = path.name
    if lora:
        lora_base = lora_base or "<the base model the adapter was trained on>"
        return (f"---\nlibrary_name: peft\nbase_model: {lora_base}\ntags: [agentloop, lora]\n---\n\n"
                f"# {name}\n\nA LoRA adapter trained by agentloop on top of `{lora_base}`, with the tokenizer "
                "and its chat template.\n\n```python\nfrom peft import AutoPeftModelForCausalLM\n"
                "from transformers import AutoTokenizer\n\n"
                f"model = AutoPeftModelForCausalLM.from_pretrained(\"{name}\")  # loads the base, then the adapter\n"
                f"tokenizer = AutoTokenizer.from_pretrained(\"{name}\")\n```\n\n"
                f"Serve it: `agentloop serve --model {lora_base} --adapter {name}`.\n")
    return (f"---\nlibrary_name: transformers\ntags: [agentloop]\n---\n\n# {name}\n\nA causal LM checkpoint "
            "trained by agentloop, with the tokenizer and its chat template.\n\n```python\n"
            "from transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
            f"model = AutoModelForCausalLM.from_pretrained(\"{name}\")\n"
            f"tokenizer = AutoTokenizer.from_pretrained(\"{name}\")\n```\n\n"
            f"Serve it: `agentloop serve --model {name}`.\n")
