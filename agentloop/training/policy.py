"""Generation with the in-memory (being-trained) model, for the improve loop.

The improve loop generates with :meth:`agentloop.policies.hf.HFPolicy.from_model` over a
bf16 *generation copy* of the trained weights (float32 master weights train; bf16 generates about
twice as fast on CPUs with AMX/AVX512-bf16, METHODS.md section 8). :class:`GenerationModel` keeps
that copy in sync after each training phase; LoRA adapters are merged into the copy (not into
the trained model), so generation does not pay the unmerged-adapter slowdown.
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

    def __init__(self, trained: Any, tokenizer: Any, dtype: torch.dtype = torch.bfloat16, max_batch_size: int = 64):
        self.trained = trained
        self.tokenizer = tokenizer
        self.dtype = dtype
        self.max_batch_size = max_batch_size
        self.model = self._plain_copy().to(dtype).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.policy = policy_for(self.model, tokenizer, max_batch_size)

    def _plain_copy(self) -> Any:
        base = self.trained
        if hasattr(base, "peft_config") and hasattr(base, "merge_and_unload"):
            return copy.deepcopy(base).merge_and_unload()
        return copy.deepcopy(base)

    @torch.no_grad()
    def sync(self) -> None:
        """Copy the trained weights (LoRA merged in float32, then cast) into the generation copy."""
        fresh = self._plain_copy()
        state = {k: v.to(self.dtype) for k, v in fresh.state_dict().items()}
        self.model.load_state_dict(state)
        del fresh
