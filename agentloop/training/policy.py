"""Generation with the in-memory (being-trained) model, for the improve loop.

The improve loop generates with :meth:`agentloop.policies.hf.HFPolicy.from_model` over a
bf16 *generation copy* of the trained weights (float32 master weights train; bf16 generates about
twice as fast on CPUs with AMX/AVX512-bf16, METHODS.md section 8). :class:`GenerationModel` keeps
that copy in sync after each training phase; LoRA adapters are merged into the copy (not into
the trained model), so generation does not pay the unmerged-adapter slowdown.

Memory: the copy is built and refreshed parameter by parameter, never through a float32 copy of the
whole model: building it costs its own size (0.27 GB bf16 for the 135M default model) and
:meth:`GenerationModel.sync` of full weights copies in place (no allocation). A LoRA model is merged
in a temporary float32 copy (``merge_and_unload``), which exists only during :meth:`sync`.
``dtype=None`` makes no copy at all: the policy generates with the trained model itself (one set of
weights; on CPUs without fast bf16 this is also the faster choice).
"""

from __future__ import annotations

import copy
from typing import Any

import torch

__all__ = ["GenerationModel", "policy_for"]


def policy_for(model: Any, tokenizer: Any, max_batch_size: int = 64) -> Any:
    """A Policy that generates with ``model`` as it is now (no copy, no reload)."""
    from agentloop.policies.hf import HFPolicy

    return HFPolicy.from_model(model, tokenizer, max_batch_size=max_batch_size)


class GenerationModel:
    """A generation copy of a trained model in ``dtype``; call :meth:`sync` after training."""

    def __init__(self, trained: Any, tokenizer: Any, dtype: torch.dtype | None = torch.bfloat16,
                 max_batch_size: int = 64):
        self.trained = trained
        self.tokenizer = tokenizer
        self.dtype = dtype
        self.max_batch_size = max_batch_size
        self.model = trained if dtype is None else self._cast_copy(self._plain(trained)).eval()
        self.policy = policy_for(self.model, tokenizer, max_batch_size)

    @property
    def is_lora(self) -> bool:
        return hasattr(self.trained, "peft_config") and hasattr(self.trained, "merge_and_unload")

    def _plain(self, model: Any) -> Any:
        """The model without LoRA layers: merged into a float32 copy for a peft model, else the model itself."""
        return copy.deepcopy(model).merge_and_unload() if self.is_lora else model

    @torch.no_grad()
    def _cast_copy(self, model: Any) -> Any:
        """A deep copy whose floating parameters and buffers are ``dtype`` tensors made one by one (no float32 copy)."""
        memo: dict[int, Any] = {}
        for p in model.parameters():
            if id(p) not in memo:  # tied weights are one Parameter and stay one
                memo[id(p)] = torch.nn.Parameter(p.detach().to(self.dtype, copy=True), requires_grad=False)
        for b in model.buffers():
            if id(b) not in memo and b.is_floating_point():
                memo[id(b)] = b.detach().to(self.dtype, copy=True)
        return copy.deepcopy(model, memo)

    @torch.no_grad()
    def sync(self) -> None:
        """Copy the trained weights (LoRA merged in float32, then cast) into the generation copy."""
        if self.model is self.trained:
            return  # no copy: generation already sees the trained weights
        source = self._plain(self.trained)
        for (name, dst), (src_name, src) in zip(self.model.named_parameters(), source.named_parameters(), strict=True):
            if name != src_name:
                raise RuntimeError(f"generation copy out of step with the trained model: {name} vs {src_name}")
            dst.copy_(src)
        del source
