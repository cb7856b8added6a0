"""Generation with the in-memory (being-trained) model, for the improve loop.

The improve loop generates with :meth:`agentloop.policies.hf.HFPolicy.from_model` over a
bf16 *generation copy* of the trained weights (float32 master weights train; bf16 generates about
twice as fast on CPUs with AMX/AVX512-bf16, docs/methods.md section 8). :class:`GenerationModel` keeps
that copy in sync after each training phase; LoRA adapters are merged into the copy (not into
the trained model), so generation does not pay the unmerged-adapter slowdown.

Memory: the copy is built and refreshed parameter by parameter, never through a float32 copy of the
whole model: building it costs its own size (0.27 GB bf16 for the 135M default model) and
:meth:`GenerationModel.sync` copies in place (no allocation). A plain LoRA model (peft ``lora.Linear``
layers, no DoRA, no ``modules_to_save``) is merged layer by layer: each weight becomes
``base + B @ A * scale`` computed for that one layer and cast into the copy, so at most one layer's
float32 temporary exists (the earlier whole-model ``deepcopy(...).merge_and_unload()`` cost 1.2 GB on
the default model). Other peft models still take that whole-model merge, during :meth:`sync` only.
Between generation phases the copy need not exist: :meth:`GenerationModel.release` frees its weights
(the improve loop calls it before each training phase, so training and generation never hold two
copies of the weights at once) and the next :meth:`sync` allocates them again, merged from the
freshly trained weights (~1 s for the default model).
``dtype=None`` makes no copy at all: the policy generates with the trained model itself (one set of
weights; on CPUs without fast bf16 this is also the faster choice).
"""

from __future__ import annotations

import copy
from typing import Any

import torch

__all__ = ["GenerationModel", "policy_for"]


def policy_for(model: Any, tokenizer: Any, max_batch_size: int = 64, engine: str = "hf") -> Any:
    """A Policy that generates with ``model`` as it is now (no copy, no reload).

    ``engine``: ``hf`` (transformers' ``generate``) or ``static`` (:mod:`agentloop.policies.static`'s
    own decode loop over the same modules: static KV cache, continuous batching).
    """
    if engine == "static":
        from agentloop.policies.static import StaticPolicy

        return StaticPolicy.from_model(model, tokenizer, max_batch_size=max_batch_size)
    from agentloop.policies.hf import HFPolicy

    return HFPolicy.from_model(model, tokenizer, max_batch_size=max_batch_size)


class GenerationModel:
    """A generation copy of a trained model in ``dtype``; call :meth:`sync` after training."""

    def __init__(self, trained: Any, tokenizer: Any, dtype: torch.dtype | None = torch.bfloat16,
                 max_batch_size: int = 64, engine: str = "hf"):
        self.trained = trained
        self.tokenizer = tokenizer
        self.dtype = dtype
        self.max_batch_size = max_batch_size
        self.released = False
        self._layers = _lora_layers(trained) if self.is_lora else None  # None: not LoRA, or not mergeable per layer
        if dtype is None:
            self.model = trained
        elif self._layers is not None:  # the base weights cast (LoRA layers unwrapped, not merged), then merged in
            self.model = self._cast_copy(trained.base_model).unload().eval()
            self.sync()
        else:
            self.model = self._cast_copy(self._plain(trained)).eval()
        self.policy = policy_for(self.model, tokenizer, max_batch_size, engine)

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
    def release(self) -> None:
        """Free the copy's weights until the next :meth:`sync` (no-op without a copy)."""
        if self.model is self.trained or self.released:
            return
        for p in self.model.parameters():
            p.data = torch.empty(0, dtype=p.dtype, device=p.device)
        self.released = True

    @torch.no_grad()
    def sync(self) -> None:
        """Copy the trained weights (LoRA merged in float32, then cast) into the generation copy."""
        if self.model is self.trained:
            return  # no copy: generation already sees the trained weights
        if self._layers is not None:
            self._sync_lora_by_layer()
        else:
            source = self._plain(self.trained)
            for (name, dst), (src_name, src) in zip(self.model.named_parameters(), source.named_parameters(),
                                                    strict=True):
                if name != src_name:
                    raise RuntimeError(f"generation copy out of step with the trained model: {name} vs {src_name}")
                self._put(dst, src)
            del source
        self.released = False

    def _put(self, dst: torch.Tensor, value: torch.Tensor) -> None:
        """``dst = value`` in the copy's dtype: in place, or into fresh storage after :meth:`release`."""
        if self.released:
            dst.data = value.detach().to(dst.dtype, copy=True)
        else:
            dst.copy_(value)

    @torch.no_grad()
    def _sync_lora_by_layer(self) -> None:
        """Base weights copied, LoRA weights as base + delta, one layer's float32 temporary at a time."""
        source = {}
        for name, p in self.trained.named_parameters():
            if "lora_" not in name:
                source[_plain_name(name)] = p
        for name, dst in self.model.named_parameters():
            if name not in source:
                raise RuntimeError(f"generation copy out of step with the LoRA model: no trained weight for {name}")
            layer = self._layers.get(name)
            if layer is None or getattr(layer, "merged", False):
                self._put(dst, source[name])
                continue
            delta = None
            for adapter in layer.active_adapters:
                if adapter in layer.lora_A:
                    d = layer.get_delta_weight(adapter)
                    delta = d if delta is None else delta + d
            self._put(dst, source[name] if delta is None else source[name] + delta)


def _plain_name(peft_name: str) -> str:
    """``base_model.model.X.q_proj.base_layer.weight`` -> ``X.q_proj.weight`` (the name in the unwrapped model)."""
    return peft_name.removeprefix("base_model.model.").replace(".base_layer.", ".")


def _lora_layers(model: Any) -> dict[str, Any] | None:
    """Plain weight name -> peft LoRA ``Linear`` layer, or None when a layer is not a plain LoRA linear layer.

    Plain means: peft's ``lora.Linear`` (``get_delta_weight`` gives ``B @ A * scale``), no DoRA magnitude,
    no ``modules_to_save`` copies; anything else is merged the slow, always-correct way (peft's own merge).
    """
    try:
        from peft.tuners.lora import Linear as LoraLinear
        from peft.tuners.lora import LoraLayer
    except ImportError:
        return None
    if any("modules_to_save" in n or "lora_magnitude" in n for n, _ in model.named_parameters()):
        return None
    layers: dict[str, Any] = {}
    for name, module in model.named_modules():
        if isinstance(module, LoraLayer):
            if type(module) is not LoraLinear or any(getattr(module, "use_dora", {}).values()):
                return None
            layers[_plain_name(name + ".base_layer.weight")] = module
    return layers
