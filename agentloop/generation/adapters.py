"""Trained LoRA adapters handed to a running generation engine, without reloading its base model.

:class:`AdapterSync` puts the generation engine in the loop: after each training iteration it saves
the LoRA adapter (atomically, versioned) and hands it to the policy's ``load_adapter``; for the
``vllm`` policy that is a fresh ``LoRARequest`` on the running engine, for ``llamacpp`` a GGUF LoRA
applied unmerged, for ``hf`` peft swaps the adapter on the loaded base model. :func:`engine_placement`
turns "trainer and engine share the GPU" or "separate devices" into the vLLM memory share and the
trainer's device, and "both on CPU" (vLLM's CPU build) into a fixed KV cache size.
:class:`AdapterSyncConfig` is also the ``generation.adapters`` section of an improve config, so this
module imports no torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agentloop.errors import ConfigError

__all__ = ["AdapterSync", "AdapterSyncConfig", "engine_placement"]


class AdapterSyncConfig(BaseModel):
    """How the freshly trained LoRA adapter reaches the generation engine each iteration.

    Also the ``generation.adapters`` section of an improve config, where ``directory`` stays unset
    (improve uses RUN/adapters).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    directory: str | None = Field(default=None, description="Folder for the versioned adapters (improve: RUN/adapters).")
    keep_last: int = Field(default=2, ge=1, description="Adapter folders kept; older ones are deleted.")
    placement: Literal["shared", "separate"] = Field(
        default="shared", description="'shared': trainer and vLLM on one GPU (vLLM takes engine_memory_share of "
        "it); 'separate': vLLM on the first visible GPU, the trainer on trainer_device.")
    engine_memory_share: float = Field(
        default=0.35, gt=0.0, lt=1.0, description="vLLM gpu_memory_utilization when sharing the GPU with training.")
    trainer_device: str = Field(default="cuda:1", description="Trainer device when placement='separate'.")
    cpu_kv_cache_gib: float = Field(
        default=1.0, gt=0.0, description="vLLM's KV cache in GiB when the engine runs on CPU (vLLM's CPU build; "
        "there gpu_memory_utilization would reserve that share of the machine's RAM instead). 1 GiB holds ~46k "
        "bf16 tokens of the 135M default model: far more than a batch of 64 short episodes needs.")

    @model_validator(mode="after")
    def _check(self) -> AdapterSyncConfig:
        if self.placement == "separate" and self.trainer_device in ("cuda", "cuda:0"):
            raise ValueError("placement='separate' puts vLLM on cuda:0; choose another trainer_device (e.g. cuda:1), "
                             "or use placement='shared'.")
        return self


def engine_placement(config: AdapterSyncConfig, device: str = "cuda") -> tuple[dict[str, Any], str]:
    """(extra VLLMPolicy kwargs, trainer device) for the configured placement.

    ``device="cpu"``: vLLM's CPU build and the trainer share the CPU; the engine gets a fixed KV cache
    (``cpu_kv_cache_gib``) instead of a share of memory, and the trainer stays on ``cpu``.
    """
    if device == "cpu":
        return {"kv_cache_gib": config.cpu_kv_cache_gib}, "cpu"
    if config.placement == "shared":
        return {"gpu_memory_utilization": config.engine_memory_share}, "cuda:0"
    return {"gpu_memory_utilization": 0.9}, config.trainer_device


class AdapterSync:
    """Saves the trained LoRA adapter after each iteration and points the policy at it (no base-model reload).

    Works with any policy that has ``load_adapter(path)``: ``vllm`` (a new LoRARequest on the running
    engine) and ``hf`` (peft swaps the adapter on the loaded base model).

    Example::

        sync = AdapterSync(vllm_policy, AdapterSyncConfig(directory=str(run.path / "adapters")))
        for it in range(iterations):
            episodes = engine.run(jobs)            # generation with the current adapter
            trainer.fit(examples_from(episodes))   # LoRA training
            sync.push(trainer.model, it)           # next rollouts use the new adapter
    """

    def __init__(self, policy: Any, config: AdapterSyncConfig, directory: str | Path | None = None):
        if not hasattr(policy, "load_adapter"):
            raise ConfigError(f"{type(policy).__name__} has no load_adapter(path); adapter sync needs the 'vllm' or "
                              "'hf' policy.")
        if directory is None and config.directory is None:
            raise ConfigError("AdapterSync needs a folder for the adapters: set AdapterSyncConfig.directory or pass "
                              "directory=.")
        self.policy, self.config = policy, config
        self.directory = Path(directory if directory is not None else config.directory)  # type: ignore[arg-type]
        self.pushed: list[Path] = []
        from agentloop.runs import recover_folders

        recover_folders(self.directory)  # a killed push's old or new adapter folder, made whole again

    def push(self, model: Any, iteration: int) -> Path:
        """Write ``model``'s adapter as ``adapter-NNNN`` and make the policy generate with it from now on."""
        if not hasattr(model, "peft_config"):
            raise ConfigError("adapter sync needs a LoRA (peft) model: set training.lora. A fully fine-tuned model "
                              "cannot be handed to a running vLLM engine without reloading its weights.")
        import shutil

        from agentloop.runs import atomic_folder

        path = self.directory / f"adapter-{iteration:04d}"
        with atomic_folder(path) as tmp:  # the engine never sees a half-written adapter
            model.save_pretrained(str(tmp), safe_serialization=True)  # a peft model saves the adapter only
        self.policy.load_adapter(str(path))
        self.pushed = [p for p in self.pushed if p != path] + [path]
        # Older adapters are no longer referenced by new requests; vLLM has already read the files it uses.
        while len(self.pushed) > self.config.keep_last:
            shutil.rmtree(self.pushed.pop(0), ignore_errors=True)
        return path
