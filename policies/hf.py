"""`HFPolicy`: batched generation with a transformers causal LM (the embedded default model when none is named).

Covered:

* any local ``save_pretrained`` folder or hub id (hub ids need a network), plus an optional LoRA
  adapter (peft), kept separate or merged (``merge_adapter=True``; an unmerged adapter is slower);
* the model's chat template, left padding, batches of at most ``max_batch_size`` sequences
  (conversations are grouped by prompt length so little padding is wasted);
* greedy decoding (``temperature=0``; ``n`` greedy samples are computed once and copied) and sampling
  (``temperature``, ``top_p``, ``seed``); top-k is never applied;
* stop strings: the text is cut before the earliest one, and a stopping criterion finishes each
  sequence as soon as it has written one, so a batch does not run to ``max_new_tokens`` (they are
  matched against the text decoded without special tokens; EOS ends a sequence anyway);
* ``return_logprobs``: ``token_ids`` are every generated token up to and including the one that
  ended generation (EOS, or the token that completed a stop string; as vLLM does), and ``logprobs``
  their log-probabilities under the model's *unmodified* distribution (temperature 1, no top-p),
  which is what a training forward pass computes; ``prompt_token_ids`` the prompt ids generated from
  (after truncation), so that training uses exactly the sampled sequence (:mod:`agentloop.training.data`);
* prompts longer than the context are truncated from the left with a warning on the completion
  (see :mod:`agentloop.policies.chat`).

Memory: the output projection (``lm_head``) always gets a contiguous input during generation. At
prefill transformers hands it the last position sliced out of ``[batch, prompt, hidden]`` (a strided
view), and torch's CPU bf16 matmul on such a view materialises the vocabulary-sized weight once per
row: +3.4 GiB and ~400x slower for 64 prompts with SmolLM2-135M (``benchmarks/generation.py``
records it). :func:`contiguous_lm_head` is the context manager that does this; the hook it adds is
removed afterwards, so a model being trained is left as it was.

Not covered: beam search, repetition penalties, streaming, multi-GPU sharding. ``seed`` makes a call
reproducible for the same conversations, settings and ``max_batch_size`` (batch composition changes
the random stream).

Example::

    policy = HFPolicy()                                   # SmolLM2-135M-Instruct, bf16, CPU
    [c] = policy.generate([[user("What is 2+3?")]], SamplingParams(max_new_tokens=32))
    trained = HFPolicy.from_model(model, tokenizer)       # an in-memory model, e.g. during training
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

from agentloop.errors import ConfigError, PolicyError
from agentloop.policies.chat import cut_at_stop, encode_chats
from agentloop.protocols import ToolSchemas
from agentloop.types import Completion, Message, SamplingParams

HUB_ID_RE = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)?$")
DType = Literal["auto", "bfloat16", "float16", "float32"]


class HFPolicyConfig(BaseModel):
    """Settings of :class:`HFPolicy`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str | None = Field(default=None, description="Local model folder or hub id; None = the embedded default model.")
    adapter: str | None = Field(default=None, description="Folder of a LoRA adapter (peft save_pretrained) to load on top.")
    dtype: DType = Field(default="auto", description="Weights dtype; auto = bfloat16 (float16 on GPUs without bf16).")
    device: str = Field(default="cpu", description="torch device: cpu, cuda, cuda:1, mps.")
    max_batch_size: int = Field(default=32, ge=1, description="Most sequences generated together (n samples count).")
    context_len: int | None = Field(default=None, ge=2, description="Context size; None = the model's max_position_embeddings.")
    merge_adapter: bool = Field(default=False, description="Merge the adapter into the weights (faster; may round small updates away in bf16).")
    trust_remote_code: bool = Field(default=False, description="Allow model code from the hub (only for models you trust).")


def split_adapter_folder(model: str | None, adapter: str | None) -> tuple[str | None, str | None]:
    """A LoRA adapter folder given as ``model`` (a LoRA checkpoint of ``agentloop improve``) becomes
    ``adapter``, with its base model from the folder's ``adapter_config.json``; anything else is unchanged."""
    if model is None or adapter is not None:
        return model, adapter
    path = Path(model).expanduser()
    config = path / "adapter_config.json"
    if not path.is_dir() or (path / "config.json").exists() or not config.exists():
        return model, adapter
    base = json.loads(config.read_text()).get("base_model_name_or_path")
    if not base:
        raise PolicyError(f"{path} is a LoRA adapter without base_model_name_or_path in adapter_config.json: pass "
                          "it as adapter= and its base model as model=.")
    return str(base), str(path)


def resolve_model_source(model: str | None) -> str:
    """A local folder or hub id to load; PolicyError naming the fix when a local path is missing or wrong."""
    if model is None:
        from agentloop.policies.default_model import default_model_path

        return str(default_model_path())
    path = Path(model).expanduser()
    if path.exists():
        if path.is_dir() and not (path / "config.json").exists():
            if (path / "adapter_config.json").exists():
                raise PolicyError(f"{path} is a LoRA adapter, not a model: pass it as adapter= and its base model as "
                                  "model= (omit model= to use the embedded default model).")
            raise PolicyError(f"{path} has no config.json: point model= at a folder written by save_pretrained.")
        return str(path)
    if model.startswith((".", "/", "~")) or not HUB_ID_RE.match(model) or model.count("/") > 1:
        raise PolicyError(f"Model path {model!r} does not exist. Pass a folder written by save_pretrained, a hub id "
                          "such as 'HuggingFaceTB/SmolLM2-135M-Instruct' (needs a network), or no model to use the "
                          "embedded default model.")
    return model


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    if dtype != "auto":
        return getattr(torch, dtype)
    if device.startswith("cuda") and torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def attach_adapter(model: Any, adapter: str, merge: bool) -> Any:
    """``model`` with the LoRA adapter in folder ``adapter`` loaded (and merged when ``merge``)."""
    path = Path(adapter).expanduser()
    if not (path / "adapter_config.json").exists():
        raise PolicyError(f"LoRA adapter {adapter!r} not found: expected a folder with adapter_config.json "
                          "(written by PeftModel.save_pretrained).")
    from peft import PeftModel

    peft_model = PeftModel.from_pretrained(model, str(path))
    return peft_model.merge_and_unload() if merge else peft_model


@contextmanager
def contiguous_lm_head(model: Any) -> Iterator[None]:
    """Give ``model``'s output projection a contiguous input while inside (see the module docstring)."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is None:
        yield
        return

    def _contiguous(_module: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return (args[0].contiguous(), *args[1:]) if args and isinstance(args[0], torch.Tensor) else args

    handle = head.register_forward_pre_hook(_contiguous)
    try:
        yield
    finally:
        handle.remove()


class _StopOnStrings(StoppingCriteria):
    """Finish each row once its generated text contains a stop string; remembers where it stopped."""

    def __init__(self, tokenizer: Any, stop: Sequence[str], prompt_len: int, batch: int):
        self.tokenizer = tokenizer
        self.stop = [s for s in stop if s]
        self.prompt_len = prompt_len
        # A stop string of L characters spans at most L tokens, plus slack for tokens that decode to nothing.
        self.window = max(len(s) for s in self.stop) + 4
        self.stopped_at: list[int | None] = [None] * batch

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
        n = input_ids.shape[1] - self.prompt_len
        rows = [i for i, s in enumerate(self.stopped_at) if s is None]
        if rows:
            tails = input_ids[rows, max(self.prompt_len, input_ids.shape[1] - self.window):].tolist()
            for i, text in zip(rows, self.tokenizer.batch_decode(tails, skip_special_tokens=True)):
                if any(s in text for s in self.stop):
                    self.stopped_at[i] = n
        done = [s is not None for s in self.stopped_at]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


class _LogprobRecorder(LogitsProcessor):
    """Records log p(token) under the unmodified distribution, one step late (the token is chosen after us).

    transformers runs custom processors before the temperature/top-p warpers, and we pass a clean
    GenerationConfig, so ``scores`` here are the model's raw logits.
    """

    def __init__(self) -> None:
        self.steps: list[torch.Tensor] = []
        self._prev: torch.Tensor | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self._prev is not None:
            self.steps.append(self._prev.gather(1, input_ids[:, -1:]).squeeze(1))
        self._prev = torch.log_softmax(scores.float(), dim=-1)
        return scores

    def finish(self, sequences: torch.Tensor) -> torch.Tensor:
        """Per-row logprobs of every generated token, shape [batch, generated]."""
        if self._prev is not None:
            self.steps.append(self._prev.gather(1, sequences[:, -1:]).squeeze(1))
            self._prev = None
        return torch.stack(self.steps, dim=1) if self.steps else sequences.new_zeros((sequences.shape[0], 0), dtype=torch.float)


class HFPolicy:
    """A :class:`~agentloop.protocols.Policy` over a transformers causal LM (see the module docstring)."""

    def __init__(self, model: str | None = None, adapter: str | None = None, dtype: DType = "auto",
                 device: str = "cpu", max_batch_size: int = 32, context_len: int | None = None,
                 merge_adapter: bool = False, trust_remote_code: bool = False):
        try:
            self.config = HFPolicyConfig(model=model, adapter=adapter, dtype=dtype, device=device,
                                         max_batch_size=max_batch_size, context_len=context_len,
                                         merge_adapter=merge_adapter, trust_remote_code=trust_remote_code)
        except ValidationError as e:
            raise ConfigError(f"HFPolicy: {e}") from e
        model, adapter = split_adapter_folder(model, adapter)
        source = resolve_model_source(model)
        tokenizer, lm = self._load(source)
        if adapter is not None:
            lm = attach_adapter(lm, adapter, merge_adapter)
        lm.eval()
        self._setup(lm, tokenizer, source)

    def _load(self, source: str) -> tuple[Any, Any]:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        c = self.config
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=c.trust_remote_code)
            lm = AutoModelForCausalLM.from_pretrained(source, dtype=resolve_dtype(c.dtype, c.device),
                                                      trust_remote_code=c.trust_remote_code)
        except (OSError, ValueError) as e:
            raise PolicyError(f"Could not load model {source!r}: {e}. A hub id needs a network; otherwise pass a local "
                              "folder written by save_pretrained.") from e
        return tokenizer, lm.to(c.device)

    @classmethod
    def from_model(cls, model: Any, tokenizer: Any, *, max_batch_size: int = 32,
                   context_len: int | None = None) -> HFPolicy:
        """Generate with an in-memory model (e.g. one being trained) without reloading it.

        The model keeps its device, dtype and train/eval mode (generation runs in eval mode and
        restores the previous mode); the tokenizer is not modified.
        """
        self = cls.__new__(cls)
        try:
            device = str(next(model.parameters()).device)
            self.config = HFPolicyConfig(device=device, max_batch_size=max_batch_size, context_len=context_len)
        except ValidationError as e:
            raise ConfigError(f"HFPolicy.from_model: {e}") from e
        self._setup(model, tokenizer, getattr(getattr(model, "config", None), "_name_or_path", "in-memory"))
        return self

    def _setup(self, model: Any, tokenizer: Any, source: str) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.source = source
        self.device = torch.device(self.config.device)
        eos = getattr(model.generation_config, "eos_token_id", None)
        eos = eos if eos is not None else tokenizer.eos_token_id
        self.eos_ids: list[int] = [eos] if isinstance(eos, int) else list(eos or [])
        pad = tokenizer.pad_token_id
        self.pad_id: int = pad if pad is not None else (self.eos_ids[0] if self.eos_ids else 0)
        self.context_len = self.config.context_len or getattr(model.config, "max_position_embeddings", None)
        self._lock = threading.Lock()

    def load_adapter(self, adapter: str, merge: bool = False) -> None:
        """Replace the current adapter with the one in folder ``adapter`` (the base weights stay loaded)."""
        with self._lock:
            base = self.model.unload() if hasattr(self.model, "unload") and hasattr(self.model, "peft_config") else self.model
            self.model = attach_adapter(base, adapter, merge).eval()

    # -- generation ------------------------------------------------------------------------------
    def generate(self, conversations: Sequence[Sequence[Message]], sampling: SamplingParams,
                 tools: Sequence[ToolSchemas | None] | None = None) -> list[Completion]:
        """``len(conversations) * sampling.n`` completions; sample j of conversation i at index ``i * n + j``.

        ``tools``: per conversation, OpenAI function schemas rendered by the chat template (or None).
        """
        encoded = encode_chats(self.tokenizer, conversations, self.context_len, sampling.max_new_tokens, tools)
        copies = 1 if sampling.temperature == 0 else sampling.n  # greedy samples are identical: compute once
        jobs = [(i, ids) for i, (ids, _) in enumerate(encoded) for _ in range(copies)]
        order = sorted(range(len(jobs)), key=lambda j: len(jobs[j][1]))  # similar lengths together: less padding
        results: list[Completion | None] = [None] * len(jobs)
        with self._lock, self._rng(sampling.seed), self._eval_mode(), contiguous_lm_head(self.model), torch.no_grad():
            for start in range(0, len(order), self.config.max_batch_size):
                chunk = order[start:start + self.config.max_batch_size]
                for j, comp in zip(chunk, self._generate_batch([jobs[j][1] for j in chunk], sampling)):
                    results[j] = comp
        out: list[Completion] = []
        for i, (_, warning) in enumerate(encoded):
            mine = results[i * copies:(i + 1) * copies] if copies > 1 else results[i:i + 1] * sampling.n
            out.extend(c.model_copy(update={"warning": warning}) if warning else c for c in mine)  # type: ignore[union-attr]
        return out

    @contextmanager
    def _rng(self, seed: int | None) -> Iterator[None]:
        """Seed torch for this call only, leaving the global random stream as it was."""
        if seed is None:
            yield
            return
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            yield

    @contextmanager
    def _eval_mode(self) -> Iterator[None]:
        """Generate in eval mode (no dropout) and give a model being trained its mode back."""
        was_training = self.model.training
        self.model.eval()
        try:
            yield
        finally:
            self.model.train(was_training)

    def _generation_config(self, sampling: SamplingParams) -> GenerationConfig:
        # A fresh config, not the model's: its defaults (top_k=50, repetition penalties) would change the
        # distribution and put processors before our logprob recorder.
        common: dict[str, Any] = {"max_new_tokens": sampling.max_new_tokens, "eos_token_id": self.eos_ids or None,
                                  "pad_token_id": self.pad_id, "use_cache": True}
        if sampling.temperature == 0:
            return GenerationConfig(do_sample=False, **common)
        return GenerationConfig(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p, top_k=0, **common)

    def _generate_batch(self, prompts: list[list[int]], sampling: SamplingParams) -> list[Completion]:
        width = max(len(p) for p in prompts)
        input_ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, ids in enumerate(prompts):
            input_ids[row, width - len(ids):] = torch.tensor(ids, dtype=torch.long)
            attention[row, width - len(ids):] = 1
        stopper = _StopOnStrings(self.tokenizer, sampling.stop, width, len(prompts)) if any(sampling.stop) else None
        recorder = _LogprobRecorder() if sampling.return_logprobs else None
        sequences = self.model.generate(
            input_ids=input_ids.to(self.device), attention_mask=attention.to(self.device),
            generation_config=self._generation_config(sampling),
            stopping_criteria=StoppingCriteriaList([stopper] if stopper else []),
            logits_processor=LogitsProcessorList([recorder] if recorder else []),
        )
        generated = sequences[:, width:].cpu()
        logprobs = recorder.finish(sequences).cpu() if recorder else None
        return [self._completion(row, prompts[row], generated[row].tolist(), stopper, logprobs, sampling)
                for row in range(len(prompts))]

    def _completion(self, row: int, prompt: list[int], gen: list[int], stopper: _StopOnStrings | None,
                    logprobs: torch.Tensor | None, sampling: SamplingParams) -> Completion:
        end, reason = len(gen), "length"
        stop_at = stopper.stopped_at[row] if stopper else None
        if stop_at is not None:
            end, reason = stop_at, "stop"
        eos = next((k for k, t in enumerate(gen[:end]) if t in self.eos_ids), None)
        if eos is not None:
            end, reason = eos + 1, "stop"
        text, found = cut_at_stop(self.tokenizer.decode(gen[:end], skip_special_tokens=True), sampling.stop)
        if found:
            reason = "stop"
        if not sampling.return_logprobs:
            return Completion(text=text, finish_reason=reason)
        lp = logprobs[row, :end].tolist() if logprobs is not None else []
        return Completion(text=text, finish_reason=reason, token_ids=tuple(gen[:end]), logprobs=tuple(lp),
                          prompt_token_ids=tuple(prompt))


__all__ = ["HFPolicy", "HFPolicyConfig", "attach_adapter", "contiguous_lm_head", "resolve_dtype",
           "resolve_model_source"]
