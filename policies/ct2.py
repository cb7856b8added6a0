"""`CT2Policy`: fast CPU generation with CTranslate2 over a converted copy of a transformers model.

CTranslate2 runs decoder-only models (Llama, Qwen, Mistral, ...) with int8 weights and its own
batched decoding. On the 2-core development machine (AMX, where torch's bf16 matmuls are fast) it was
not faster than the ``hf`` policy at batch 64 (0.93x int8, 0.66x float32; docs/performance.md;
``benchmarks/generation.py --backends ct2:int8`` prints the ratio on yours). The model folder (or the embedded default model)
is converted once with ``ctranslate2.converters.TransformersConverter`` into the agentloop cache
(``$AGENTLOOP_CACHE/ct2/``, keyed by the folder, its weights' modification time and the compute
type), and reused after that.

Covered: the model's chat template and left truncation (:mod:`agentloop.policies.chat`), batches of
at most ``max_batch_size``, greedy decoding (``n`` greedy samples computed once), sampling
(``temperature``, ``top_p``, full vocabulary; a ``seed`` reloads the generator so that its worker's random
stream starts from ``ctranslate2.set_random_seed``), stop
strings (a per-token callback ends a row as soon as its text contains one; the text is cut before
it), and new weights after training: :meth:`CT2Policy.load_weights` converts a checkpoint folder
(``Trainer.save`` output) and swaps the generator in (seconds for a 135M model).

``return_logprobs`` gives ``token_ids`` and CTranslate2's per-token log-probabilities, which are those
of the distribution it sampled from (temperature applied): for a training forward pass's values use
``hf``. Not covered: LoRA adapters without merging (save merged weights, then ``load_weights``), GPU
(use ``vllm``), tool schemas in templates that do not support them (as ``hf``).

Install: ``pip install 'agentloop[ct2]'`` (CTranslate2 ships binary wheels; nothing is compiled).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agentloop.errors import ConfigError, PolicyError
from agentloop.policies.chat import (
    completion_from_tokens,
    encode_chats,
    end_of_turn_ids,
    per_conversation,
    sample_jobs,
    tail_has_stop,
)
from agentloop.protocols import ToolSchemas
from agentloop.runs import atomic_folder, recover_folders
from agentloop.types import Completion, Message, SamplingParams

INSTALL_HINT = "pip install 'agentloop[ct2]'  (or: pip install ctranslate2)"
ComputeType = Literal["int8", "int8_float32", "float32", "int16"]


class CT2PolicyConfig(BaseModel):
    """Settings of :class:`CT2Policy`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str | None = Field(default=None, description="Local model folder (save_pretrained); None = the embedded default model.")
    compute_type: ComputeType = Field(default="int8", description="Weights/compute precision of CTranslate2 on CPU.")
    threads: int = Field(default=0, ge=0, description="Threads per generation call; 0 = torch's thread count.")
    max_batch_size: int = Field(default=64, ge=1, description="Most sequences generated together (n samples count).")
    context_len: int | None = Field(default=None, ge=2, description="Context size; None = the model's max_position_embeddings.")


def _require_ct2() -> Any:
    try:
        import ctranslate2
    except ImportError as e:
        raise PolicyError(f"The ct2 policy needs CTranslate2: {INSTALL_HINT} ({e}).") from e
    return ctranslate2


def convert(source: str | Path, compute_type: str = "int8", dest: str | Path | None = None) -> Path:
    """A CTranslate2 folder of the transformers model in ``source`` (cached by folder, weights' mtime, compute type)."""
    ctranslate2 = _require_ct2()
    from agentloop.policies.default_model import cache_dir

    source = Path(source)
    weights = sorted(source.glob("*.safetensors")) or sorted(source.glob("*.bin"))
    if not (source / "config.json").exists() or not weights:
        raise PolicyError(f"{source} is not a transformers model folder (config.json and weights, as written by "
                          "save_pretrained or Trainer.save); a LoRA adapter must be merged first.")
    if dest is None:
        stamp = f"{source.resolve()}|{max(w.stat().st_mtime_ns for w in weights)}|{compute_type}"
        dest = cache_dir() / "ct2" / f"{source.name}-{compute_type}-{hashlib.sha1(stamp.encode()).hexdigest()[:12]}"
    dest = Path(dest)
    recover_folders(dest.parent)  # a conversion killed between its two renames left the old folder aside
    if (dest / "model.bin").exists():
        return dest
    with atomic_folder(dest) as tmp:  # a crash never leaves a half-converted folder
        ctranslate2.converters.TransformersConverter(str(source)).convert(str(tmp), quantization=compute_type,
                                                                           force=True)
    return dest


class _StopWatch:
    """Per-row generated tokens; tells CTranslate2 to end a row once its text holds a stop string."""

    def __init__(self, tokenizer: Any, stop: Sequence[str], rows: int):
        self.tokenizer = tokenizer
        self.stop = [s for s in stop if s]
        self.tokens: list[list[int]] = [[] for _ in range(rows)]
        self.logprobs: list[list[float]] = [[] for _ in range(rows)]
        self.stopped: list[bool] = [False] * rows

    def __call__(self, step: Any) -> bool:
        row = step.batch_id
        self.tokens[row].append(int(step.token_id))
        self.logprobs[row].append(float(step.log_prob) if step.log_prob is not None else 0.0)
        if self.stop and not self.stopped[row]:
            self.stopped[row] = tail_has_stop(self.tokenizer, self.tokens[row], self.stop)
        return self.stopped[row]


class CT2Policy:
    """A :class:`~agentloop.protocols.Policy` over a CTranslate2 generator (see the module docstring)."""

    def __init__(self, model: str | None = None, compute_type: ComputeType = "int8", threads: int = 0,
                 max_batch_size: int = 64, context_len: int | None = None):
        try:
            self.config = CT2PolicyConfig(model=model, compute_type=compute_type, threads=threads,
                                          max_batch_size=max_batch_size, context_len=context_len)
        except ValidationError as e:
            raise ConfigError(f"CT2Policy: {e}") from e
        from transformers import AutoConfig, AutoTokenizer

        from agentloop.policies.hf import resolve_model_source

        source = resolve_model_source(model)
        if not Path(source).exists():
            raise PolicyError(f"The ct2 policy converts a local model folder; {source!r} is not one. Save the model "
                              "with save_pretrained first, or omit model= for the embedded default model.")
        self.source = source
        self.tokenizer = AutoTokenizer.from_pretrained(source)
        hf_config = AutoConfig.from_pretrained(source)
        self.context_len = context_len or getattr(hf_config, "max_position_embeddings", None)
        self.eos_ids: list[int] = end_of_turn_ids(self.tokenizer, hf_config)
        self._lock = threading.Lock()
        self.generator: Any = None
        self.load_weights(source)

    def load_weights(self, folder: str | Path) -> float:
        """Convert the model in ``folder`` (e.g. a ``Trainer.save`` checkpoint) and generate with it; returns seconds."""
        ctranslate2 = _require_ct2()
        t0 = time.perf_counter()
        converted = convert(folder, self.config.compute_type)
        generator = self._new_generator(ctranslate2, converted)
        with self._lock:
            self.generator, self.converted = generator, converted
        return time.perf_counter() - t0

    def _new_generator(self, ctranslate2: Any, converted: Path) -> Any:
        threads = self.config.threads
        if threads == 0:
            import torch

            threads = torch.get_num_threads()
        return ctranslate2.Generator(str(converted), device="cpu", compute_type=self.config.compute_type,
                                     intra_threads=threads)

    def generate(self, conversations: Sequence[Sequence[Message]], sampling: SamplingParams,
                 tools: Sequence[ToolSchemas | None] | None = None) -> list[Completion]:
        """``len(conversations) * sampling.n`` completions; sample j of conversation i at index ``i * n + j``."""
        ctranslate2 = _require_ct2()
        encoded = encode_chats(self.tokenizer, conversations, self.context_len, sampling.max_new_tokens, tools)
        jobs, copies = sample_jobs(encoded, sampling)
        results: list[Completion] = []
        with self._lock:
            if sampling.seed is not None and sampling.temperature > 0:
                # The worker thread seeds its random stream when it first samples: a fresh generator (a
                # fraction of a second for a small int8 model) makes the call reproducible.
                ctranslate2.set_random_seed(sampling.seed)
                self.generator = self._new_generator(ctranslate2, self.converted)
            for start in range(0, len(jobs), self.config.max_batch_size):
                results.extend(self._generate_batch(jobs[start:start + self.config.max_batch_size], sampling))
        return per_conversation(encoded, results, copies, sampling.n)

    def _generate_batch(self, prompts: list[list[int]], sampling: SamplingParams) -> list[Completion]:
        watch = _StopWatch(self.tokenizer, sampling.stop, len(prompts))
        greedy = sampling.temperature == 0
        self.generator.generate_batch(
            [self.tokenizer.convert_ids_to_tokens(p) for p in prompts], max_length=sampling.max_new_tokens,
            include_prompt_in_result=False, end_token=[self.tokenizer.convert_ids_to_tokens(t) for t in self.eos_ids],
            return_end_token=True, max_batch_size=self.config.max_batch_size,
            sampling_topk=1 if greedy else 0, sampling_topp=1.0 if greedy else sampling.top_p,
            sampling_temperature=1.0 if greedy else sampling.temperature, return_scores=sampling.return_logprobs,
            callback=watch)
        return [self._completion(prompt, watch.tokens[row], watch.logprobs[row], watch.stopped[row], sampling)
                for row, prompt in enumerate(prompts)]

    def _completion(self, prompt: list[int], gen: list[int], logprobs: list[float], stopped: bool,
                    sampling: SamplingParams) -> Completion:
        return completion_from_tokens(self.tokenizer, prompt, gen, logprobs, self.eos_ids, sampling, stopped)


__all__ = ["CT2Policy", "CT2PolicyConfig", "convert"]
