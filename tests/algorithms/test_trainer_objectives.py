"""Trainer.loss for the reinforce objective: the behaviour policy of the importance ratio is the
model as it was when the fit call started, so reused samples are corrected for (not treated as fresh)."""

from __future__ import annotations

import pytest
import torch

from agentloop.algorithms import losses as L
from agentloop.training.data import chat_example
from agentloop.training.trainer import TrainConfig, Trainer
from agentloop.types import assistant, user


def _batch(trainer: Trainer, advantages=(1.0, -0.5)):
    exs = [chat_example(trainer.tokenizer, [user(f"Question {i}: is it true?"), assistant(a)], weight=w)
           for i, (a, w) in enumerate(zip(("yes", "no"), advantages))]
    return trainer.collate(exs)


def _logp(trainer: Trainer, batch) -> torch.Tensor:
    with torch.no_grad():
        return trainer._logp(trainer.model, batch["input_ids"], batch["attention_mask"])


def test_reinforce_ratio_uses_the_weights_at_the_start_of_the_fit_call(tiny_model, tokenizer):
    trainer = Trainer(tiny_model, tokenizer, TrainConfig(dtype="float32", clip_eps=0.2))
    batch = _batch(trainer)
    mask = batch["loss_mask"] * batch["attention_mask"][:, 1:]
    behaviour = _logp(trainer, batch)
    # First loss of the call: on-policy, ratio 1, the surrogate is -mean(A) over trained tokens.
    first = trainer.loss(batch, "reinforce").detach()
    assert float(first) == pytest.approx(float(L.masked_mean(-batch["weights"].unsqueeze(-1).expand_as(mask), mask)),
                                         rel=1e-5)
    # The model moves (as after optimizer steps); the same samples are now off-policy.
    with torch.no_grad():
        for p in trainer.model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    moved = _logp(trainer, batch)
    assert not torch.allclose(moved, behaviour)
    got = trainer.loss(batch, "reinforce").detach()
    want = L.reinforce_loss(moved, mask, batch["weights"], old_logp=behaviour, clip_eps=0.2)
    assert float(got) == pytest.approx(float(want), rel=1e-4)
    # A fresh fit call takes a fresh behaviour copy (the loop collected new samples with the new weights).
    trainer.calls += 1
    again = trainer.loss(batch, "reinforce").detach()
    assert float(again) == pytest.approx(float(first), rel=1e-5)
