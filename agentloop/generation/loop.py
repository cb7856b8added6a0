"""The generation policy of an improve run, built from the ``generation`` config section.

:func:`build_generation` makes one of: a generation copy of the in-training model
(:class:`~agentloop.generation.model_copy.GenerationModel`, ``backend: hf | static``, ``sync: copy``),
or an engine built once from the base model folder that is fed LoRA adapters
(:class:`~agentloop.generation.adapters.AdapterSync`: ``vllm``, ``llamacpp``, or ``hf`` with
``sync: adapter``). The returned :class:`LoopGeneration` is what the loop calls around a training
phase: :meth:`~LoopGeneration.release` before it (the copy's weights are freed, so training and
generation never hold two copies), :meth:`~LoopGeneration.refresh` after it (copy rebuilt, or adapter
pushed), :meth:`~LoopGeneration.close` at the end (a vllm engine's processes stop).

Generation (``generation``): ``backend: hf`` generates with a bf16 copy of the in-training model,
refreshed in memory after each training phase (default). ``backend: vllm`` builds one vLLM engine from
the base model folder with LoRA enabled; after each training phase the adapter is saved to
``RUN/adapters`` and handed to the running engine (:class:`~agentloop.generation.adapters.AdapterSync`,
no base-model reload), so it needs ``train.lora``; ``sync: adapter`` does the same with the hf policy.
On a machine without a GPU this runs on vLLM's CPU build (``scripts/setup-vllm-cpu.sh`` makes
``.venv-vllm``; run ``.venv-vllm/bin/agentloop improve``): the engine (its own processes, a fixed
``generation.adapters.cpu_kv_cache_gib`` KV cache, vLLM's CPU LoRA kernels) and the trainer share the
CPU, taking turns. ``generation_start_s`` (result) and ``adapter_push_s`` (each training row) time the
engine's start and each adapter hand-over.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentloop.errors import ConfigError

if TYPE_CHECKING:
    from agentloop.improve_config import GenerationSettings, ImproveConfig

__all__ = ["LoopGeneration", "adapter_policy", "build_generation", "require_vllm", "trainer_device"]

logger = logging.getLogger(__name__)


class LoopGeneration:
    """The run's generation policy and how the trained weights reach it (see the module docstring).

    ``copy``: the in-memory generation copy (None for an adapter-fed engine or a policy given by the
    caller); ``adapter_sync``: the adapter hand-over (None otherwise); ``owned``: built here, so
    :meth:`close` stops it. ``start_s``: seconds the build took (vllm: the engine's start-up);
    ``push_s``: seconds of the last adapter hand-over.
    """

    def __init__(self, policy: Any, *, copy: Any = None, adapter_sync: Any = None, owned: bool = False,
                 start_s: float | None = None):
        self.policy, self.copy, self.adapter_sync, self.owned = policy, copy, adapter_sync, owned
        self.start_s = start_s
        self.push_s: float | None = None

    def release(self) -> None:
        """Free the generation copy's weights before a training phase (nothing to free otherwise)."""
        if self.copy is not None:
            self.copy.release()

    def refresh(self, model: Any, iteration: int) -> None:
        """Make generation use ``model``'s freshly trained weights: push its adapter (no reload), or rebuild
        the copy; a policy given by the caller is left as it is."""
        if self.adapter_sync is not None:
            started = time.perf_counter()
            path = self.adapter_sync.push(model, iteration)
            self.push_s = round(time.perf_counter() - started, 2)
            logger.info("adapter %s pushed to the generation engine in %.2f s", path.name, self.push_s)
        elif self.copy is not None:
            self.copy.sync()

    def close(self) -> None:
        """Stop a policy built here that holds processes (the vllm engine); idempotent."""
        close = getattr(self.policy, "close", None) if self.owned else None
        if close is not None:
            close()
        self.owned = False


def build_generation(cfg: ImproveConfig, model: Any, tokenizer: Any, *, device: str, adapters_dir: Path,
                     restored_iteration: int = 0, policy: Any = None) -> LoopGeneration:
    """The generation of an improve run with ``model`` on ``device``; ``policy``: use this one instead
    (nothing is refreshed: tests, or a server kept in sync by the caller). ``restored_iteration``: the
    checkpoint a resumed run restored, whose adapter a fresh engine is given at once."""
    if policy is not None:
        return LoopGeneration(policy)
    import torch

    from agentloop.training.trainer import bf16_supported

    g, batch = cfg.generation, max(cfg.collect.batch_size, cfg.eval.batch_size)
    gdt = cfg.generation_dtype
    use_bf16 = gdt == "bfloat16" or (gdt == "auto" and bf16_supported(torch.device(device)))
    started = time.perf_counter()
    if not g.adapter_sync:
        from agentloop.generation.model_copy import GenerationModel

        # bf16: a generation copy (half the size); otherwise generate with the trained model itself (no copy)
        copy = GenerationModel(model, tokenizer, torch.bfloat16 if use_bf16 else None, max_batch_size=batch,
                               engine=g.backend)
        built = LoopGeneration(copy.policy, copy=copy, owned=True)
    else:
        from agentloop.generation.adapters import AdapterSync

        engine = adapter_policy(cfg, device, use_bf16, batch)
        sync = AdapterSync(engine, g.adapters, directory=g.adapters.directory or adapters_dir)
        if restored_iteration > 0:  # resumed: the engine starts from the base model; give it the restored adapter
            sync.push(model, restored_iteration)
        built = LoopGeneration(engine, adapter_sync=sync, owned=True)
    built.start_s = round(time.perf_counter() - started, 1)
    logger.info("generation (%s) ready in %.1f s", g.backend, built.start_s)
    return built


def require_vllm() -> None:
    """Raise a ConfigError naming the fix when vLLM cannot be imported in this Python environment."""
    import importlib.util
    import sys

    if importlib.util.find_spec("vllm") is None:
        raise ConfigError(
            f"generation.backend=vllm needs vLLM, which is not installed in this Python environment "
            f"({sys.prefix}). On a CPU machine, build vLLM's CPU build in its own environment with "
            f"scripts/setup-vllm-cpu.sh and run this command as .venv-vllm/bin/agentloop improve ...; with a CUDA "
            f"GPU, pip install 'agentloop[vllm]'. Or set generation.backend=hf.")


def trainer_device(g: GenerationSettings, device: str) -> str:
    """The trainer's device: unchanged, except vllm with placement 'separate' (trainer on adapters.trainer_device)."""
    if g.backend != "vllm" or device == "cpu":
        return device
    from agentloop.generation.adapters import engine_placement

    return engine_placement(g.adapters)[1]


def adapter_policy(cfg: ImproveConfig, device: str, use_bf16: bool, batch: int) -> Any:
    """A generation engine built once from the base model folder, fed LoRA adapters by AdapterSync."""
    if cfg.generation.backend == "vllm":
        from agentloop.generation.adapters import engine_placement
        from agentloop.policies.vllm import VLLMPolicy, cpu_build

        # vLLM's CPU build: the engine shares the CPU with the trainer, with a fixed small KV cache
        placement, _ = engine_placement(cfg.generation.adapters, "cpu" if cpu_build() else "cuda")
        rank = cfg.train.lora.r if cfg.train.lora else 16
        kwargs = {"max_lora_rank": 1 << max(3, (rank - 1).bit_length()), "seed": cfg.seed,  # vLLM takes 8, 16, 32..
                  "dtype": "bfloat16" if use_bf16 else "float32", **placement, **cfg.generation.vllm_kwargs}
        return VLLMPolicy(model=cfg.model, enable_lora=True, **kwargs)
    if cfg.generation.backend == "llamacpp":
        from agentloop.policies.llamacpp import LlamaCppPolicy

        # the GGUF base weights as they are; the adapter is converted to a GGUF LoRA and applied unmerged
        return LlamaCppPolicy(model=cfg.generation.gguf, tokenizer=cfg.model, max_batch_size=batch)  # torch's threads
    from agentloop.policies.hf import HFPolicy

    # The base weights in the generation dtype; the adapter (float32 on disk) is applied unmerged by peft.
    return HFPolicy(model=cfg.model, dtype="bfloat16" if use_bf16 else "float32", device=device, max_batch_size=batch)
