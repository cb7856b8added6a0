"""`LlamaCppPolicy`: batched CPU generation with llama.cpp (``llama-cpp-python``) on a GGUF model.

The embedded default model *is* a GGUF file (SmolLM2-135M-Instruct, Q4_1): the ``hf`` policy runs
its weights dequantized to bf16, this policy runs them as they are, with llama.cpp's quantized CPU
kernels. All the sequences of a batch decode together in one llama.cpp context (one KV stream per
sequence, ``kv_unified=False``, so no sequence attends over another's cache), one ``llama_decode``
per generated token for the whole batch.

Prompts are built and replies decoded by the transformers tokenizer of the model (the default
model's cached folder, or the GGUF's own tokenizer through ``gguf_file=``), exactly as the ``hf``
policy builds them (:func:`agentloop.policies.chat.encode_chats`): the two backends see the same
token ids and differ only in the arithmetic. Sampling is done here from the returned logits
(greedy, or ``temperature`` / ``top_p`` from a ``numpy`` generator seeded by ``sampling.seed``, one
stream per call, rows in order); ``return_logprobs`` gives each chosen token's log-probability under
the raw logits (temperature 1, as the ``hf`` policy reports them). Stop strings end a row as soon as
its decoded tail contains one; the text is cut before it.

New weights after training reach the running model as a LoRA adapter (:meth:`LlamaCppPolicy.load_adapter`,
which :class:`agentloop.generation.adapters.AdapterSync` calls): the peft adapter folder is written
as a GGUF LoRA file (:func:`write_gguf_lora`; tensor names from ``gguf``'s name map, the q/k rows
permuted into GGUF's rotary layout as llama.cpp's own converter does) and applied unmerged by
llama.cpp, in well under a second for a rank-16 adapter of the default model. The base weights stay
loaded. Full fine-tuning is not covered (it would need the whole model written as GGUF again).

Install: ``pip install 'agentloop[llamacpp]'`` (builds llama.cpp from source: a C/C++ compiler and
cmake, several minutes on 2 cores). ``benchmarks/generation.py --backends llamacpp`` compares it with ``hf``.
"""

from __future__ import annotations

import ctypes
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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
from agentloop.types import Completion, Message, SamplingParams

INSTALL_HINT = "pip install 'agentloop[llamacpp]'  (or: pip install llama-cpp-python; it compiles llama.cpp)"


class LlamaCppPolicyConfig(BaseModel):
    """Settings of :class:`LlamaCppPolicy`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str | None = Field(default=None, description="A .gguf file; None = the embedded default model's GGUF.")
    tokenizer: str | None = Field(
        default=None, description="transformers tokenizer folder; None = the default model's folder for the default "
        "model, else the GGUF's own tokenizer (transformers gguf_file=).")
    adapter: str | None = Field(default=None, description="peft LoRA adapter folder to use from the start.")
    threads: int = Field(default=0, ge=0, description="Threads per decode; 0 = torch's thread count.")
    max_batch_size: int = Field(default=64, ge=1, description="Most sequences decoded together (n samples count).")
    context_len: int | None = Field(default=None, ge=16, description="Most tokens per sequence (prompt + reply); "
                                    "None = the model's training context.")
    prefill_chunk: int = Field(default=2048, ge=64, description="Most prompt tokens per llama_decode call.")
    extra_buffers: bool = Field(
        default=False, description="Let llama.cpp repack weights for its extra CPU buffer types (AMX on Intel Xeon). "
        "Off by default: with llama-cpp-python 0.3.36 the first llama_decode after the AMX repack of this Q4_1 model "
        "crashed the process in ggml_backend_amx_mul_mat on the development machine (ggml-org/llama.cpp#20824).")


def _require_llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError as e:
        raise PolicyError(f"The llamacpp policy needs llama-cpp-python: {INSTALL_HINT} ({e}).") from e
    return llama_cpp


_BACKEND_READY = False
_LOG_CALLBACK: Any = None


def _init_backend(llama_cpp: Any) -> None:
    """llama.cpp's process-wide start-up, once; its per-tensor log lines go nowhere (errors come back as codes)."""
    global _BACKEND_READY, _LOG_CALLBACK
    if _BACKEND_READY:
        return
    _LOG_CALLBACK = llama_cpp.llama_log_callback(lambda level, text, user_data: None)  # kept alive: C holds it
    llama_cpp.llama_log_set(_LOG_CALLBACK, ctypes.c_void_p(0))
    llama_cpp.llama_backend_init()
    _BACKEND_READY = True


def _permute_rotary_rows(weight: Any, heads: int) -> Any:
    """HF -> GGUF row order of a q/k projection (llama.cpp interleaves each head's two rotary halves)."""
    return weight.reshape(heads, 2, weight.shape[0] // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def write_gguf_lora(adapter: str | Path, dest: str | Path, hf_config: Any) -> Path:
    """Write the peft LoRA adapter in folder ``adapter`` as a GGUF LoRA file for a llama-architecture model.

    ``lora_A`` ([r, in]) and ``lora_B`` ([out, r]) are stored as float32 under ``<gguf tensor>.lora_a`` /
    ``.lora_b`` with ``adapter.lora.alpha``; for ``q_proj``/``k_proj`` the rows of ``B`` are permuted the
    way the base weights were when the model became GGUF. Raises PolicyError for what llama.cpp cannot
    apply this way (DoRA, modules_to_save, an architecture other than llama).
    """
    import json

    import gguf
    import numpy as np
    from safetensors.numpy import load_file

    adapter = Path(adapter)
    config = json.loads((adapter / "adapter_config.json").read_text())
    if config.get("use_dora") or config.get("modules_to_save"):
        raise PolicyError(f"{adapter}: DoRA / modules_to_save adapters cannot be applied by llama.cpp; train a plain "
                          "LoRA adapter (train.lora without them).")
    if getattr(hf_config, "model_type", "llama") != "llama":
        raise PolicyError(f"write_gguf_lora handles llama-architecture models, not {hf_config.model_type!r}.")
    layers = int(hf_config.num_hidden_layers)
    heads, kv_heads = int(hf_config.num_attention_heads), int(hf_config.num_key_value_heads)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, layers)
    tensors = load_file(str(adapter / "adapter_model.safetensors"))
    writer = gguf.GGUFWriter(str(dest), "llama")
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(config["lora_alpha"]))
    written = 0
    for key in sorted(tensors):
        if ".lora_A." not in key:
            continue
        module = key.split(".lora_A.")[0].removeprefix("base_model.model.")
        target = names.get_name(module + ".weight", try_suffixes=(".weight",))
        if target is None:
            raise PolicyError(f"{adapter}: no GGUF tensor for adapter module {module!r}.")
        a = np.ascontiguousarray(tensors[key], dtype=np.float32)
        b = np.asarray(tensors[key.replace(".lora_A.", ".lora_B.")], dtype=np.float32)
        if module.endswith("q_proj"):
            b = _permute_rotary_rows(b, heads)
        elif module.endswith("k_proj"):
            b = _permute_rotary_rows(b, kv_heads)
        writer.add_tensor(target + ".lora_a", a)
        writer.add_tensor(target + ".lora_b", np.ascontiguousarray(b))
        written += 1
    if not written:
        raise PolicyError(f"{adapter}: the adapter holds no lora_A/lora_B weights.")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return Path(dest)


class LlamaCppPolicy:
    """A :class:`~agentloop.protocols.Policy` over llama.cpp (see the module docstring)."""

    def __init__(self, model: str | None = None, tokenizer: str | None = None, adapter: str | None = None,
                 threads: int = 0, max_batch_size: int = 64, context_len: int | None = None, prefill_chunk: int = 2048,
                 extra_buffers: bool = False):
        try:
            self.config = LlamaCppPolicyConfig(model=model, tokenizer=tokenizer, adapter=adapter, threads=threads,
                                               max_batch_size=max_batch_size, context_len=context_len,
                                               prefill_chunk=prefill_chunk, extra_buffers=extra_buffers)
        except ValidationError as e:
            raise ConfigError(f"LlamaCppPolicy: {e}") from e
        llama_cpp = _require_llama_cpp()
        _init_backend(llama_cpp)
        from transformers import AutoConfig, AutoTokenizer

        from agentloop.policies.default_model import default_model_path, gguf_path

        path = Path(model).expanduser() if model else gguf_path()
        if path.suffix != ".gguf" or not path.is_file():
            raise PolicyError(f"The llamacpp policy runs a .gguf file; {str(path)!r} is not one. Convert a transformers "
                              "model with llama.cpp's convert_hf_to_gguf.py, or omit model= for the default model.")
        self.path = path
        if tokenizer is None and model is None:
            tokenizer = str(default_model_path())
        if tokenizer is not None:
            self.tokenizer = AutoTokenizer.from_pretrained(tokenizer)
            self.hf_config = AutoConfig.from_pretrained(tokenizer)
        else:
            self.tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
            self.hf_config = AutoConfig.from_pretrained(path.parent, gguf_file=path.name)
        self._llama = llama_cpp
        params = llama_cpp.llama_model_default_params()
        params.use_extra_bufts = extra_buffers
        self._model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
        if not self._model:
            raise PolicyError(f"llama.cpp could not load {path}.")
        self.vocab = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(self._model))
        self.train_context = int(llama_cpp.llama_model_n_ctx_train(self._model))
        self.context_len = context_len or self.train_context
        self.eos_ids = end_of_turn_ids(self.tokenizer, self.hf_config)
        self._ctx: Any = None
        self._ctx_cells = 0  # cells per sequence of the current context
        self._adapter: Any = None
        self._adapter_dir = tempfile.TemporaryDirectory(prefix="agentloop-llamacpp-")
        self._adapters_written = 0
        self._lock = threading.Lock()
        if adapter is not None:
            self.load_adapter(adapter)

    # -- weights ----------------------------------------------------------------------------------

    def load_adapter(self, adapter: str | None) -> None:
        """Generate with the peft LoRA adapter in folder ``adapter`` from now on (None = the base model)."""
        llama_cpp = self._llama
        new = None
        if adapter is not None:
            folder = Path(adapter).expanduser()
            if not (folder / "adapter_config.json").exists():
                raise PolicyError(f"LoRA adapter {adapter!r} not found: expected a folder with adapter_config.json.")
            self._adapters_written += 1
            dest = Path(self._adapter_dir.name) / f"adapter-{self._adapters_written}.gguf"
            write_gguf_lora(folder, dest, self.hf_config)
            new = llama_cpp.llama_adapter_lora_init(self._model, str(dest).encode())
            dest.unlink()  # llama.cpp has read it
            if not new:
                raise PolicyError(f"llama.cpp refused the adapter converted from {adapter} (does it match {self.path}?).")
        with self._lock:
            old, self._adapter = self._adapter, new
            if self._ctx is not None:
                self._apply_adapter()
            if old is not None:
                llama_cpp.llama_adapter_lora_free(old)

    def _apply_adapter(self) -> None:
        llama_cpp = self._llama
        if self._adapter is None:
            llama_cpp.llama_set_adapters_lora(self._ctx, None, 0, None)
            return
        adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(self._adapter)
        scales = (ctypes.c_float * 1)(1.0)
        if llama_cpp.llama_set_adapters_lora(self._ctx, adapters, 1, scales) != 0:
            raise PolicyError("llama.cpp could not apply the LoRA adapter to its context.")

    def _context(self, cells: int) -> Any:
        """A context with ``max_batch_size`` KV streams of at least ``cells`` cells each (grown, never shrunk)."""
        llama_cpp = self._llama
        cells = -(-cells // 256) * 256
        if self._ctx is not None and cells <= self._ctx_cells:
            return self._ctx
        if self._ctx is not None:
            llama_cpp.llama_free(self._ctx)
            self._ctx = None
        params = llama_cpp.llama_context_default_params()
        params.n_seq_max = self.config.max_batch_size
        params.n_ctx = cells * self.config.max_batch_size
        params.n_batch = max(self.config.prefill_chunk, self.config.max_batch_size)
        params.n_ubatch = min(512, params.n_batch)
        params.kv_unified = False
        params.n_threads = params.n_threads_batch = self._threads()
        ctx = llama_cpp.llama_init_from_model(self._model, params)
        if not ctx:
            raise PolicyError(f"llama.cpp could not make a context of {params.n_ctx} cells; lower max_batch_size or "
                              "context_len.")
        self._ctx, self._ctx_cells = ctx, cells
        self._apply_adapter()
        return ctx

    def _threads(self) -> int:
        if self.config.threads:
            return self.config.threads
        import torch

        return torch.get_num_threads()

    # -- generation -------------------------------------------------------------------------------

    def generate(self, conversations: Sequence[Sequence[Message]], sampling: SamplingParams,
                 tools: Sequence[ToolSchemas | None] | None = None) -> list[Completion]:
        """``len(conversations) * sampling.n`` completions; sample j of conversation i at index ``i * n + j``."""
        import numpy as np

        encoded = encode_chats(self.tokenizer, conversations, self.context_len, sampling.max_new_tokens, tools)
        jobs, copies = sample_jobs(encoded, sampling)
        rng = np.random.default_rng(sampling.seed)
        results: list[Completion] = []
        with self._lock:
            for start in range(0, len(jobs), self.config.max_batch_size):
                results.extend(self._generate_batch(jobs[start:start + self.config.max_batch_size], sampling, rng))
        return per_conversation(encoded, results, copies, sampling.n)

    def _generate_batch(self, prompts: list[list[int]], sampling: SamplingParams, rng: Any) -> list[Completion]:
        import numpy as np

        llama_cpp = self._llama
        rows = len(prompts)
        ctx = self._context(max(len(p) for p in prompts) + sampling.max_new_tokens)
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
        batch = llama_cpp.llama_batch_init(max(self.config.prefill_chunk, rows), 0, 1)
        gen: list[list[int]] = [[] for _ in prompts]
        logps: list[list[float]] = [[] for _ in prompts]
        stopped = [False] * rows

        def choose(chosen: list[int]) -> None:
            """Sample the next token of each row in ``chosen`` (in the order their logits were requested)."""
            logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits(ctx), shape=(len(chosen), self.vocab))
            tokens, lps = _sample(logits, sampling, rng)
            for row, token, logp in zip(chosen, tokens, lps, strict=True):
                gen[row].append(token)
                logps[row].append(logp)
                if token in self.eos_ids or len(gen[row]) >= sampling.max_new_tokens:
                    stopped[row] = True
                elif tail_has_stop(self.tokenizer, gen[row], sampling.stop):
                    stopped[row] = True

        try:
            # prefill: prompts packed into chunks; a row's first token is chosen right after its last prompt token
            pending: list[int] = []  # rows whose last prompt token is in this chunk, in batch order
            n = 0
            for row, prompt in enumerate(prompts):
                for pos, token in enumerate(prompt):
                    last = pos == len(prompt) - 1
                    _put(batch, n, token, pos, row, last)
                    if last:
                        pending.append(row)
                    n += 1
                    if n == self.config.prefill_chunk:
                        self._decode(batch, n)
                        if pending:
                            choose(pending)
                        pending, n = [], 0
            if n:
                self._decode(batch, n)
                choose(pending)
            # decode: one token for every live row per llama_decode
            while True:
                live = [r for r in range(rows) if not stopped[r]]
                if not live:
                    break
                for i, r in enumerate(live):
                    _put(batch, i, gen[r][-1], len(prompts[r]) + len(gen[r]) - 1, r, True)
                self._decode(batch, len(live))
                choose(live)
        finally:
            llama_cpp.llama_batch_free(batch)
        return [completion_from_tokens(self.tokenizer, prompts[r], gen[r], logps[r], self.eos_ids, sampling)
                for r in range(rows)]

    def _decode(self, batch: Any, n: int) -> None:
        batch.n_tokens = n
        code = self._llama.llama_decode(self._ctx, batch)
        if code != 0:
            raise PolicyError(f"llama_decode failed with code {code} (1: no KV cell left for the batch; lower "
                              "max_batch_size or max_new_tokens).")

    def close(self) -> None:
        """Free the llama.cpp context, adapter and model (also done when the policy is garbage-collected)."""
        llama_cpp = getattr(self, "_llama", None)
        if llama_cpp is None:
            return
        with self._lock:
            if self._ctx is not None:
                llama_cpp.llama_free(self._ctx)
                self._ctx = None
            if self._adapter is not None:
                llama_cpp.llama_adapter_lora_free(self._adapter)
                self._adapter = None
            if getattr(self, "_model", None):
                llama_cpp.llama_model_free(self._model)
                self._model = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: the library may be gone already
            pass


def _put(batch: Any, i: int, token: int, pos: int, seq: int, logits: bool) -> None:
    batch.token[i] = token
    batch.pos[i] = pos
    batch.n_seq_id[i] = 1
    batch.seq_id[i][0] = seq
    batch.logits[i] = logits


def _sample(logits: Any, sampling: SamplingParams, rng: Any) -> tuple[list[int], list[float]]:
    """Per row of ``logits`` [rows, vocab]: (tokens, their log-probabilities under the raw logits).

    Greedy takes the argmax; otherwise temperature, then top-p (the smallest set of most likely tokens
    whose probability reaches ``top_p``), then one draw per row from ``rng``, rows in order.
    """
    import numpy as np

    x = np.asarray(logits, dtype=np.float32)
    top = x.max(axis=1, keepdims=True)
    if sampling.temperature == 0:
        tokens = x.argmax(axis=1)
    else:
        p = np.exp((x - top).astype(np.float64) / sampling.temperature)
        p /= p.sum(axis=1, keepdims=True)
        tokens = np.empty(len(x), dtype=np.int64)
        for i, row in enumerate(p):
            if sampling.top_p < 1.0:
                order = np.argsort(-row)
                keep = order[: int(np.searchsorted(np.cumsum(row[order]), sampling.top_p)) + 1]
                row = np.zeros_like(row)
                row[keep] = p[i][keep]
                row /= row.sum()
            tokens[i] = rng.choice(len(row), p=row)
    if not sampling.return_logprobs:
        return [int(t) for t in tokens], [0.0] * len(x)
    logz = top[:, 0].astype(np.float64) + np.log(np.exp((x - top).astype(np.float64)).sum(axis=1))
    chosen = x[np.arange(len(x)), tokens].astype(np.float64)
    return [int(t) for t in tokens], [float(v) for v in chosen - logz]


__all__ = ["LlamaCppPolicy", "LlamaCppPolicyConfig", "write_gguf_lora"]
