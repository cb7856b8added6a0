"""Trainer.fit with NaN/inf losses: the step is skipped and counted, or the run stops before a broken save."""

from __future__ import annotations

import pytest
import torch

from agentloop.training.data import Segment, TrainExample
from agentloop.training.trainer import NonFiniteTrainingError, TrainConfig, Trainer


def _ex(reply: str, weight: float = 1.0) -> TrainExample:
    return TrainExample(segments=(Segment(text="Q: 2+2?\nA:"), Segment(text=reply, train=True)), weight=weight)


def _snapshot(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_inf_loss_step_is_skipped_and_counted(tiny_model, tokenizer):
    trainer = Trainer(tiny_model, tokenizer, TrainConfig(lr=1e-2, batch_size=1, dtype="float32"))
    # A weight of 1e38 times a NLL of ~10 overflows float32: that step's loss is inf.
    stats = trainer.fit([_ex(" 4"), _ex(" 5", weight=1e38), _ex(" 4")], objective="rwr")
    assert stats.skipped_nonfinite == 1 and stats.steps == 2 and stats.examples == 3
    assert all(bool(torch.isfinite(p).all()) for p in tiny_model.parameters())
    assert stats.loss_first is not None and stats.loss_last is not None


def test_all_steps_nonfinite_stops_with_a_clear_message_and_leaves_weights(tiny_model, tokenizer):
    trainer = Trainer(tiny_model, tokenizer, TrainConfig(lr=1e-2, batch_size=1, dtype="float32"))
    before = _snapshot(tiny_model)
    with pytest.raises(NonFiniteTrainingError, match="every one of the 2 training steps .* lower train.lr"):
        trainer.fit([_ex(" 5", weight=1e38), _ex(" 6", weight=-1e38)], objective="rwr")
    after = _snapshot(tiny_model)
    assert all(torch.equal(before[k], after[k]) for k in before)  # no update was applied


def test_nonfinite_weights_stop_the_run_before_any_save(tiny_model, tokenizer):
    # A trainable weight that is inf (e.g. overflowed, or loaded from a bad file) while the loss stays finite:
    # a tensor the forward pass does not use, so the steps themselves are fine.
    tiny_model.register_parameter("stray", torch.nn.Parameter(torch.tensor([1.0, float("inf")])))
    trainer = Trainer(tiny_model, tokenizer, TrainConfig(lr=1e-2, batch_size=1, max_steps=1, dtype="float32"))
    with pytest.raises(NonFiniteTrainingError, match="1 weight tensors NaN/inf \\(e.g. stray\\); no checkpoint"):
        trainer.fit([_ex(" 4")], objective="sft")
