"""Trainer.fit for the reinforce objective: the behaviour policy of the importance ratio is the model
as it was when the fit call started, taken from one no-grad pass before the first step (no weight
copy swapped in and out), so reused samples are corrected for (not treated as fresh)."""

from __future__ import annotations

import copy

import pytest
import torch

from agentloop.algorithms import losses as L
from agentloop.training.data import chat_example
from agentloop.training.trainer import TrainConfig, Trainer
from agentloop.types import assistant, user


def _examples(tokenizer, n: int = 6):
    answers = ("yes", "no", "maybe so", "no way", "yes indeed", "perhaps")
    return [chat_example(tokenizer, [user(f"Question {i}: is it true?"), assistant(answers[i % len(answers)])],
                         weight=(1.0 if i % 2 == 0 else -0.5)) for i in range(n)]


class RecordingTrainer(Trainer):
    """A real Trainer that keeps each reinforce batch it computed a loss on (with its behaviour log-probs)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen: list[dict[str, torch.Tensor]] = []

    def loss(self, batch, objective, weighted=None):
        self.seen.append({k: v.detach().clone() for k, v in batch.items()})
        return super().loss(batch, objective, weighted)


def test_behaviour_logprobs_are_one_no_grad_pass_at_the_start_of_the_phase(tiny_model, tokenizer):
    start = copy.deepcopy(tiny_model).eval()
    trainer = RecordingTrainer(tiny_model, tokenizer, TrainConfig(dtype="float32", clip_eps=0.2, batch_size=2,
                                                                   lr=5e-2))
    stats = trainer.fit(_examples(tokenizer), "reinforce")
    assert stats.steps == 3 and len(trainer.seen) == 3
    moved = False
    for k, batch in enumerate(trainer.seen):
        mask = batch["loss_mask"] * batch["attention_mask"][:, 1:]
        with torch.no_grad():
            want = trainer._logp(start, batch["input_ids"], batch["attention_mask"])
            now = trainer._logp(trainer.model, batch["input_ids"], batch["attention_mask"])
        assert "behaviour_logp" in batch, "every reinforce step needs the phase's behaviour log-probs"
        got = batch["behaviour_logp"]
        assert torch.allclose(got * mask, want * mask, atol=1e-5), f"step {k}: not the starting weights' log-probs"
        moved |= not torch.allclose(now * mask, want * mask, atol=1e-4)
    assert moved, "the weights moved during the phase, so later steps are off-policy"
    # The first step is on-policy: ratio 1, the surrogate is -mean(A) over trained tokens.
    first = trainer.seen[0]
    mask = first["loss_mask"] * first["attention_mask"][:, 1:]
    on_policy = float(L.masked_mean(-first["weights"].unsqueeze(-1).expand_as(mask), mask))
    assert stats.loss_first == pytest.approx(on_policy, rel=1e-5)


def test_no_weights_are_swapped_during_a_reinforce_phase(tiny_model, tokenizer):
    """Every forward of the phase runs on the trainable weights' own storage (no behaviour copy swapped in)."""
    trainer = Trainer(tiny_model, tokenizer, TrainConfig(dtype="float32", batch_size=2, lr=5e-2))
    weight = next(p for p in tiny_model.parameters() if p.requires_grad)
    storage = weight.data_ptr()
    seen: list[int] = []
    handle = tiny_model.register_forward_pre_hook(lambda *_: seen.append(weight.data_ptr()))
    try:
        trainer.fit(_examples(tokenizer), "reinforce")
    finally:
        handle.remove()
    assert len(seen) >= 4  # the behaviour pass and the three steps
    assert set(seen) == {storage}


def test_loss_outside_fit_is_on_policy_and_each_phase_takes_its_own_behaviour(tiny_model, tokenizer):
    trainer = RecordingTrainer(tiny_model, tokenizer, TrainConfig(dtype="float32", batch_size=2, lr=5e-2))
    batch = trainer.collate(_examples(tokenizer, 2))
    assert "behaviour_logp" not in batch
    mask = batch["loss_mask"] * batch["attention_mask"][:, 1:]
    loss = trainer.loss(batch, "reinforce").detach()
    assert float(loss) == pytest.approx(float(L.masked_mean(-batch["weights"].unsqueeze(-1).expand_as(mask), mask)),
                                        rel=1e-5)
    trainer.fit(_examples(tokenizer), "reinforce")
    after_first = copy.deepcopy(tiny_model).eval()  # the policy that would collect the next phase's samples
    trainer.seen.clear()
    trainer.fit(_examples(tokenizer), "reinforce")
    for seen in trainer.seen:
        mask = seen["loss_mask"] * seen["attention_mask"][:, 1:]
        with torch.no_grad():
            want = trainer._logp(after_first, seen["input_ids"], seen["attention_mask"])
        assert torch.allclose(seen["behaviour_logp"] * mask, want * mask, atol=1e-5)
    assert "behaviour_logp" not in trainer.collate(_examples(tokenizer, 2))  # the cache lives inside its fit call


def test_a_one_step_phase_runs_no_behaviour_pass(tiny_model, tokenizer):
    """With a single optimizer step the samples are on-policy throughout: one forward, the step's own."""
    trainer = Trainer(tiny_model, tokenizer, TrainConfig(dtype="float32", batch_size=6))
    forwards: list[int] = []
    handle = tiny_model.register_forward_pre_hook(lambda *_: forwards.append(1))
    try:
        stats = trainer.fit(_examples(tokenizer), "reinforce")
    finally:
        handle.remove()
    assert stats.steps == 1 and len(forwards) == 1
