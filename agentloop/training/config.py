"""The training section of a config (:class:`TrainConfig`, :class:`LoraSettings`), apart from the trainer.

Kept out of :mod:`agentloop.training.trainer` (which imports torch) so that validating a config,
``agentloop improve --dry-run`` or a config test, needs no model stack.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agentloop.training.distributed import DistributedTrainingConfig

__all__ = ["LoraSettings", "TrainConfig"]


class LoraSettings(BaseModel):
    """LoRA adapter settings (peft)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    r: int = Field(default=16, ge=1, description="Adapter rank.")
    alpha: int = Field(default=32, ge=1, description="Scaling numerator (scale = alpha / r).")
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    target_modules: tuple[str, ...] = Field(
        default=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
        description="Module names that get adapters (Llama-style names by default).")
    base_dtype: Literal["auto", "bfloat16", "float32"] = Field(
        default="auto", description="Precision of the frozen base weights. auto = bf16 when the training forward "
        "runs under bf16 autocast (train.dtype), where every matmul casts them to bf16 anyway: half the memory, no "
        "per-step cast, and the forward the bf16 generation copy runs. The adapter stays float32 either way.")


class TrainConfig(BaseModel):
    """How one training phase runs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lr: float = Field(default=2e-5, gt=0, description="AdamW learning rate.")
    epochs: int = Field(default=1, ge=1, description="Passes over the examples of one phase.")
    batch_size: int = Field(default=8, ge=1, description="Sequences per optimizer step (split into micro-batches).")
    micro_batch_size: int | None = Field(default=None, ge=1,
                                         description="Sequences per forward pass (memory knob); None = batch_size.")
    max_len: int = Field(default=512, ge=8, description="Tokens per sequence; longer ones keep their end.")
    max_steps: int | None = Field(default=None, ge=1, description="Cap on optimizer steps per phase.")
    weight_decay: float = Field(default=0.0, ge=0.0)
    max_grad_norm: float = Field(default=1.0, gt=0)
    warmup_steps: int = Field(default=0, ge=0, description="Linear warm-up steps.")
    lora: LoraSettings | None = Field(default=None, description="Train a LoRA adapter instead of all weights.")
    dtype: Literal["auto", "bfloat16", "float32"] = Field(
        default="auto", description="Autocast precision of the forward pass; auto = bf16 where supported.")
    gradient_checkpointing: bool = Field(default=False, description="Trade compute for activation memory.")
    kl_estimator: Literal["k1", "k2", "k3"] = Field(
        default="k3", description="Per-token KL estimator reported in the reinforce loss; the gradient is always "
        "that of KL(pi || pi_ref) (see agentloop.algorithms.losses.kl_penalty).")
    clip_eps: float = Field(default=0.2, gt=0, description="Reinforce: clip range of the importance ratio "
                            "pi / pi_behaviour (PPO/GRPO-style) when samples serve several optimizer steps.")
    reduction: Literal["token", "sequence"] = Field(default="token", description="Loss normalisation.")
    group_by_length: bool = Field(
        default=True, description="Cut each optimizer step's batch into micro-batches of similar encoded length "
        "(sorted by length), so little compute goes to padding. The step's examples, loss and gradient are those "
        "of the unsorted step (each micro-batch's loss is scaled by its share of the step's loss units), up to "
        "float rounding; it saves compute only when micro_batch_size < batch_size.")
    length_window: int = Field(
        default=0, ge=0, description="> 0: after the seeded shuffle, sort each window of length_window * batch_size "
        "examples by encoded length, cut it into optimizer-step batches and shuffle their order (seeded), so a step's "
        "examples have similar lengths even without micro-batches. This changes which examples share a step (not "
        "just the order), hence 0 (off) by default.")
    seed: int = 0
    distributed: DistributedTrainingConfig = Field(
        default_factory=DistributedTrainingConfig,
        description="Processes the training phase of `agentloop improve` runs in: num_processes > 1 launches them "
        "(DDP under accelerate; cpu: true = CPU processes with gloo, else one per GPU with nccl) on the phase's "
        "examples and current weights; batch_size is then the global batch, split across the processes.")

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.micro_batch_size is not None and self.micro_batch_size > self.batch_size:
            raise ValueError(f"micro_batch_size ({self.micro_batch_size}) must be <= batch_size ({self.batch_size}): "
                             "a micro-batch is a slice of one optimizer step's batch.")
        return self
