"""`StaticPolicy`: our own decode loop over a transformers Llama-family model's weights (no ``generate``).

``hf`` spends most of a decode step outside the model's matrix products: a growing cache concatenated
at every step, a 4-D attention mask rebuilt at every step, logits processors and stopping criteria in
Python, and a batch that waits for its longest reply. This backend keeps the same weights (by
reference: a trained model's generation copy stays the one source of truth) and decodes with

* a **static KV cache** of ``slots`` rows, written in place at each row's own position;
* **continuous batching**: a row that finishes is refilled from the queue at the next step, so a
  batch never waits for its longest reply; each row attends only to its own positions;
* **prefill without padding waste**: prompts sorted by length and prefilled in buckets of at most
  ``prefill_tokens`` tokens (right-padded within a bucket, causal, so padding is never attended);
* **sampling in the step**: greedy argmax, or temperature / top-p with a seeded generator, and the
  log-probabilities of the chosen tokens under the unmodified distribution (as ``hf`` records them).

Everything else is :class:`~agentloop.policies.hf.HFPolicy`'s: loading, chat templates, context
overflow, LoRA adapters (merged, or unmerged: the loop calls the model's own projection modules, so
peft's LoRA layers apply), ``from_model`` over an in-memory model, the improve loop's generation copy
and its sync after each training phase (weights are read at every call, never cached).

Numerics: every operation is the one transformers' Llama code runs, in the same dtype and order
(RMSNorm in float32 then cast, rotary tables computed in float32 then cast, attention through
``scaled_dot_product_attention``), so greedy texts match ``hf``'s except where two candidate tokens'
bf16 logits are within rounding of each other and a different batch shape rounds them the other way.
Ties (equal logits) go to the lower token id in both, as ``torch.argmax`` does.
``benchmarks/generation.py`` measures the agreement.

Memory: the cache holds ``slots x (longest prompt + max_new_tokens)`` positions, 23 KiB each for the
default model in bf16; ``kv_cache_mib`` caps that reservation by lowering ``slots`` (never the
lengths).

Covered architectures: ``LlamaForCausalLM`` and models with the same layout (Mistral, Qwen2 with
q/k/v biases, SmolLM); others raise :class:`~agentloop.errors.PolicyError` naming the ``hf`` backend.
Not covered: rotary scaling other than the default, sliding-window attention, beam search.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from agentloop.errors import PolicyError
from agentloop.policies.chat import completion_from_tokens, encode_chats, per_conversation, sample_jobs
from agentloop.policies.hf import HFPolicy, contiguous_lm_head
from agentloop.protocols import ToolSchemas
from agentloop.types import Completion, Message, SamplingParams

SUPPORTED = ("llama", "mistral", "qwen2", "smollm3")


@dataclass
class _Row:
    """One queued or running sequence."""

    prompt: list[int]
    generated: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    stopped: bool = False


class _Llama:
    """Reads the decoder's weights from a transformers model at each call (so in-place syncs are seen)."""

    def __init__(self, model: Any):
        if hasattr(model, "get_base_model"):  # peft: its LoRA layers stay in the projections we call
            model = model.get_base_model()
        config = model.config
        kind = getattr(config, "model_type", None)
        if kind not in SUPPORTED or not hasattr(model, "model") or not hasattr(model.model, "layers"):
            raise PolicyError(f"The static backend decodes Llama-family models ({', '.join(SUPPORTED)}); "
                              f"{kind!r} is not one: use the 'hf' backend for it.")
        rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
        if rope.get("rope_type", rope.get("type", "default")) != "default":
            raise PolicyError(f"rotary scaling {rope.get('rope_type')!r} is not covered by the static backend: use 'hf'.")
        if getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True) and kind != "llama":
            raise PolicyError("sliding-window attention is not covered by the static backend: use 'hf'.")
        self.model = model
        self.heads = config.num_attention_heads
        self.kv_heads = getattr(config, "num_key_value_heads", None) or self.heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.eps = config.rms_norm_eps
        self.theta = float(rope.get("rope_theta", getattr(config, "rope_theta", 10000.0)))
        self.layers = len(model.model.layers)
        self._rope: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def dtype(self) -> torch.dtype:
        return self.model.model.embed_tokens.weight.dtype

    def rope(self, length: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """cos/sin tables [length, head_dim] in the model dtype, computed in float32 as transformers does."""
        if self._rope is None or self._rope[0].shape[0] < length or self._rope[0].dtype != self.dtype:
            inv = 1.0 / (self.theta ** (torch.arange(0, self.head_dim, 2, dtype=torch.float) / self.head_dim))
            freqs = torch.arange(max(length, 256), dtype=torch.float)[:, None] * inv[None, :]
            emb = torch.cat((freqs, freqs), dim=-1)
            self._rope = (emb.cos().to(device, self.dtype), emb.sin().to(device, self.dtype))
        return self._rope

    def norm(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return weight * h.to(x.dtype)

    @staticmethod
    def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
        return x * cos + rotated * sin

    def qkv(self, attn: Any, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q [B, H, T, D], k and v [B, KV, T, D] for hidden states h [B, T, hidden] (rotary applied)."""
        b, t, _ = h.shape
        q = attn.q_proj(h).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k = attn.k_proj(h).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        v = attn.v_proj(h).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        return self.rotate(q, cos, sin), self.rotate(k, cos, sin), v

    def mlp(self, layer: Any, x: torch.Tensor) -> torch.Tensor:
        mlp = layer.mlp
        return mlp.down_proj(F.silu(mlp.gate_proj(x)) * mlp.up_proj(x))


class KVCache:
    """Keys and values of ``slots`` rows, [layers, slots, kv_heads, length, head_dim] each."""

    def __init__(self, net: _Llama, slots: int, length: int, device: torch.device):
        shape = (net.layers, slots, net.kv_heads, length, net.head_dim)
        # Zeroed, never torch.empty: masked positions must hold finite numbers (their attention weight is 0,
        # and 0 x NaN is NaN). An uninitialised cache, even one far above glibc's mmap threshold, held an
        # earlier tensor's bytes after an hf prefill of 4k-5k-token prompts, and the replies changed
        # (benchmarks/generation.py's workload after its prefill measurement showed it).
        self.k = torch.zeros(shape, dtype=net.dtype, device=device)
        self.v = torch.zeros(shape, dtype=net.dtype, device=device)

    @staticmethod
    def bytes_per_position(net: _Llama) -> int:
        return 2 * net.layers * net.kv_heads * net.head_dim * torch.empty(0, dtype=net.dtype).element_size()


def prefill(net: _Llama, cache: KVCache, slots: Sequence[int], prompts: Sequence[Sequence[int]]) -> torch.Tensor:
    """Run ``prompts`` (right-padded, causal), write their keys/values into cache rows ``slots`` from
    position 0, and return each prompt's last-position logits [len(prompts), vocab]."""
    model, device = net.model, cache.k.device
    width = max(len(p) for p in prompts)
    ids = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, p in enumerate(prompts):
        ids[row, :len(p)] = torch.tensor(p, dtype=torch.long)
    cos, sin = net.rope(width, device)
    cos, sin = cos[:width], sin[:width]
    index = torch.tensor(list(slots), dtype=torch.long, device=device)
    x = model.model.embed_tokens(ids.to(device))
    for i, layer in enumerate(model.model.layers):
        h = net.norm(x, layer.input_layernorm.weight)
        q, k, v = net.qkv(layer.self_attn, h, cos, sin)
        cache.k[i, index, :, :width] = k
        cache.v[i, index, :, :width] = v
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=net.kv_heads != net.heads)
        x = x + layer.self_attn.o_proj(a.transpose(1, 2).reshape(x.shape[0], width, -1))
        x = x + net.mlp(layer, net.norm(x, layer.post_attention_layernorm.weight))
    last = torch.tensor([len(p) - 1 for p in prompts], device=device)
    x = x[torch.arange(len(prompts), device=device), last].contiguous()
    return model.lm_head(net.norm(x, model.model.norm.weight))


def decode_step(net: _Llama, cache: KVCache, tokens: torch.Tensor, positions: torch.Tensor,
                span: int) -> torch.Tensor:
    """One token for each of the first ``len(tokens)`` cache rows, at ``positions``; each row attends to
    its own positions ``<= position`` (``span`` = the largest position + 1). Returns logits [rows, vocab]."""
    model, device = net.model, cache.k.device
    slots = tokens.shape[0]
    cos, sin = net.rope(span, device)
    cos, sin = cos[positions][:, None, None, :], sin[positions][:, None, None, :]  # [B, 1, 1, D]
    length = cache.k.shape[3]
    # where each row's new key/value goes in a layer's cache seen as [rows * kv_heads * length, head_dim]
    flat = ((torch.arange(slots, device=device)[:, None] * net.kv_heads
             + torch.arange(net.kv_heads, device=device)[None, :]) * length + positions[:, None]).reshape(-1)
    group = net.heads // net.kv_heads
    mask = (torch.arange(span, device=device)[None, :] <= positions[:, None])[:, None, None, :]  # [B, 1, 1, span]
    x = model.model.embed_tokens(tokens[:, None])
    for i, layer in enumerate(model.model.layers):
        h = net.norm(x, layer.input_layernorm.weight)
        q, k, v = net.qkv(layer.self_attn, h, cos, sin)
        cache.k[i].view(-1, net.head_dim).index_copy_(0, flat, k.reshape(-1, net.head_dim))
        cache.v[i].view(-1, net.head_dim).index_copy_(0, flat, v.reshape(-1, net.head_dim))
        # The query heads that share a key/value head become that head's "query positions": one read of
        # the cache serves the group (far faster than enable_gqa on CPU for one new token per row).
        a = F.scaled_dot_product_attention(q.reshape(slots, net.kv_heads, group, net.head_dim),
                                           cache.k[i, :slots, :, :span], cache.v[i, :slots, :, :span], attn_mask=mask)
        x = x + layer.self_attn.o_proj(a.reshape(slots, 1, -1))
        x = x + net.mlp(layer, net.norm(x, layer.post_attention_layernorm.weight))
    return model.lm_head(net.norm(x[:, 0], model.model.norm.weight))


def choose(logits: torch.Tensor, sampling: SamplingParams, generator: torch.Generator | None
           ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(next tokens, their log-probs under the unmodified distribution or None) for logits [B, vocab]."""
    if sampling.temperature == 0:
        tokens = logits.float().argmax(dim=-1)  # as hf: float32 logits (and torch's bf16 argmax is slow on CPU)
    else:
        scaled = logits.float() / sampling.temperature
        if sampling.top_p < 1.0:
            sorted_logits, order = scaled.sort(dim=-1, descending=True)
            probs = sorted_logits.softmax(dim=-1)
            drop = probs.cumsum(dim=-1) - probs >= sampling.top_p  # keep the smallest prefix reaching top_p
            sorted_logits = sorted_logits.masked_fill(drop, -math.inf)
            scaled = torch.full_like(scaled, -math.inf).scatter(-1, order, sorted_logits)
        tokens = torch.multinomial(scaled.softmax(dim=-1), 1, generator=generator).squeeze(-1)
    if not sampling.return_logprobs:
        return tokens, None
    return tokens, torch.log_softmax(logits.float(), dim=-1).gather(1, tokens[:, None]).squeeze(1)


class StaticPolicy(HFPolicy):
    """:class:`HFPolicy` with the static-cache, continuously batched decode loop (see the module docstring).

    ``max_batch_size`` is the number of cache rows decoded together; ``kv_cache_mib`` caps the cache
    (fewer rows when long prompts would exceed it); ``prefill_tokens`` bounds one prefill bucket.
    """

    def __init__(self, *args: Any, kv_cache_mib: int = 768, prefill_tokens: int = 2048, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._configure(kv_cache_mib, prefill_tokens)

    @classmethod
    def from_model(cls, model: Any, tokenizer: Any, *, max_batch_size: int = 64, context_len: int | None = None,
                   kv_cache_mib: int = 768, prefill_tokens: int = 2048) -> StaticPolicy:
        self = super().from_model(model, tokenizer, max_batch_size=max_batch_size, context_len=context_len)
        self._configure(kv_cache_mib, prefill_tokens)
        return self  # type: ignore[return-value]

    def _configure(self, kv_cache_mib: int, prefill_tokens: int) -> None:
        if kv_cache_mib < 1 or prefill_tokens < 1:
            raise PolicyError("kv_cache_mib and prefill_tokens must be positive.")
        self.kv_cache_mib, self.prefill_tokens = kv_cache_mib, prefill_tokens
        _Llama(self.model)  # fail now, not at the first generate, on an architecture we do not cover

    def generate(self, conversations: Sequence[Sequence[Message]], sampling: SamplingParams,
                 tools: Sequence[ToolSchemas | None] | None = None) -> list[Completion]:
        """``len(conversations) * sampling.n`` completions; sample j of conversation i at index ``i * n + j``."""
        encoded = encode_chats(self.tokenizer, conversations, self.context_len, sampling.max_new_tokens, tools)
        prompts, copies = sample_jobs(encoded, sampling)
        if not prompts:
            return []
        with self._lock, self._eval_mode(), contiguous_lm_head(self.model), torch.no_grad():
            generator = None
            if sampling.temperature > 0:
                generator = torch.Generator(device=self.device)
                generator.manual_seed(sampling.seed if sampling.seed is not None else int(torch.seed()))
            rows = _Decoder(self, _Llama(self.model), prompts, sampling, generator).run()
        results = [completion_from_tokens(self.tokenizer, r.prompt, r.generated, r.logprobs, self.eos_ids, sampling,
                                          stopped=r.stopped) for r in rows]
        return per_conversation(encoded, results, copies, sampling.n)


class _Decoder:
    """One ``generate`` call: a queue of prompts decoded with continuous batching.

    The running rows always occupy cache rows ``0..n-1`` (a finished row's place is taken by the last
    running row, whose cache row is copied), so every step works on dense ``[:n]`` slices and a batch
    shrinks as its rows finish instead of computing dead rows.
    """

    def __init__(self, policy: StaticPolicy, net: _Llama, prompts: list[list[int]], sampling: SamplingParams,
                 generator: torch.Generator | None):
        self.policy, self.net, self.sampling, self.generator = policy, net, sampling, generator
        self.rows = [_Row(prompt=p) for p in prompts]
        length = max(len(p) for p in prompts) + sampling.max_new_tokens
        if policy.context_len:
            length = min(length, policy.context_len)
        self.length = length
        budget = policy.kv_cache_mib * 2**20 // (KVCache.bytes_per_position(net) * length)
        slots = max(1, min(policy.config.max_batch_size, len(prompts), budget))
        device = policy.device
        self.cache = KVCache(net, slots, length, device)
        self.queue = deque(sorted(range(len(prompts)), key=lambda j: len(prompts[j])))  # similar lengths together
        self.running: list[_Row] = []
        self.tokens = torch.zeros(slots, dtype=torch.long, device=device)
        self.positions = torch.zeros(slots, dtype=torch.long, device=device)
        self.stops = [s for s in sampling.stop if s]
        self.window = max((len(s) for s in self.stops), default=0) + 4

    def run(self) -> list[_Row]:
        """Decode every prompt; rows come back in the order of the prompts."""
        while self.queue or self.running:
            if self.queue and len(self.running) < self.cache.k.shape[1]:
                self._admit()
            n = len(self.running)
            if n == 0:
                continue
            span = int(self.positions[:n].max()) + 1
            logits = decode_step(self.net, self.cache, self.tokens[:n], self.positions[:n], span)
            self._advance(range(n), *choose(logits, self.sampling, self.generator))
        return self.rows

    def _admit(self) -> None:
        """Prefill queued prompts into the free rows, in buckets of at most ``prefill_tokens`` tokens."""
        limit = self.policy.prefill_tokens
        while self.queue and len(self.running) < self.cache.k.shape[1]:
            free = self.cache.k.shape[1] - len(self.running)
            bucket: list[_Row] = []
            while self.queue and len(bucket) < free:
                width = len(self.rows[self.queue[0]].prompt)  # sorted ascending: the newest member is the widest
                if bucket and width * (len(bucket) + 1) > limit:
                    break
                bucket.append(self.rows[self.queue.popleft()])
            first = len(self.running)
            logits = prefill(self.net, self.cache, range(first, first + len(bucket)), [r.prompt for r in bucket])
            for k, row in enumerate(bucket):
                self.positions[first + k] = len(row.prompt) - 1  # advanced to the new token's position below
            self.running.extend(bucket)
            self._advance(range(first, first + len(bucket)), *choose(logits, self.sampling, self.generator))

    def _advance(self, slots: range, chosen: torch.Tensor, logps: torch.Tensor | None) -> None:
        """Append ``chosen[k]`` to the row in ``slots[k]``; finished rows leave the running prefix."""
        picked = chosen.tolist()
        lps = logps.tolist() if logps is not None else None
        finished: list[int] = []
        for k, slot in enumerate(slots):
            row = self.running[slot]
            token = picked[k]
            row.generated.append(token)
            if lps is not None:
                row.logprobs.append(lps[k])
            # the new token sits at position len(prompt) + len(generated) - 1, which must fit the cache
            done = token in self.policy.eos_ids or len(row.generated) >= self.sampling.max_new_tokens \
                or len(row.prompt) + len(row.generated) > self.length
            if not done and self.stops:
                tail = self.policy.tokenizer.decode(row.generated[-self.window:], skip_special_tokens=True)
                row.stopped = done = any(s in tail for s in self.stops)
            if done:
                finished.append(slot)
            else:
                self.tokens[slot] = token
                self.positions[slot] += 1
        for slot in reversed(finished):  # highest first: a moved row never lands on a finished one
            self._retire(slot)

    def _retire(self, slot: int) -> None:
        """Drop the row in ``slot``; the last running row moves into its place."""
        last = len(self.running) - 1
        if slot != last:
            used = int(self.positions[last]) + 1
            for cache in (self.cache.k, self.cache.v):
                cache[:, slot, :, :used] = cache[:, last, :, :used]
            self.tokens[slot], self.positions[slot] = self.tokens[last], self.positions[last]
            self.running[slot] = self.running[last]
        self.running.pop()


__all__ = ["KVCache", "StaticPolicy", "choose", "decode_step", "prefill"]
