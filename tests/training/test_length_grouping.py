"""Length-grouped micro-batches: less padding, the same step gradient for every objective."""

from __future__ import annotations

import copy

import pytest
import torch

from agentloop.training.data import Segment, TrainExample
from agentloop.training.trainer import TrainConfig, Trainer, TrainStats


def _batch() -> list[TrainExample]:
    """Eight examples of very different lengths, interleaved short / long, with varied weights and KL."""
    out = []
    for i in range(8):
        reply = " yes" if i % 2 == 0 else " a much longer reply that goes on" * (1 + i // 2)
        out.append(TrainExample(segments=(Segment(text=f"Q{i}: say something"), Segment(text=reply, train=True)),
                                weight=[1.0, 0.5, -1.0, 2.0][i % 4], kl_coef=0.1 * (i % 3)))
    return out


def _step_grads(model, tokenizer, objective: str, **cfg) -> tuple[list[torch.Tensor], float, TrainStats]:
    model = copy.deepcopy(model)
    trainer = Trainer(model, tokenizer, TrainConfig(batch_size=8, dtype="float32", **cfg))
    stats = TrainStats()
    loss = trainer._local_step(_batch(), objective, stats)
    return [p.grad.clone() for p in model.parameters()], loss, stats


@pytest.mark.parametrize("objective,reduction", [("sft", "token"), ("sft", "sequence"), ("rwr", "token"),
                                                 ("reinforce", "token"), ("reinforce", "sequence")])
def test_grouped_micro_batches_keep_the_step_loss_and_gradient(tiny_model, tokenizer, objective, reduction):
    full, full_loss, full_stats = _step_grads(tiny_model, tokenizer, objective, reduction=reduction)
    plain, plain_loss, plain_stats = _step_grads(tiny_model, tokenizer, objective, reduction=reduction,
                                                 micro_batch_size=2, group_by_length=False)
    grouped, grouped_loss, grouped_stats = _step_grads(tiny_model, tokenizer, objective, reduction=reduction,
                                                       micro_batch_size=2)
    assert grouped_stats.tokens == plain_stats.tokens == full_stats.tokens
    assert grouped_stats.padded_tokens < plain_stats.padded_tokens <= full_stats.padded_tokens
    for loss in (plain_loss, grouped_loss):
        assert loss == pytest.approx(full_loss, rel=1e-5, abs=1e-6)
    for g_full, g_plain, g_grouped in zip(full, plain, grouped):
        torch.testing.assert_close(g_plain, g_full, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(g_grouped, g_full, rtol=1e-4, atol=1e-6)


def test_sft_unit_weights_take_the_token_mean_over_the_whole_step(tiny_model, tokenizer):
    """Plain SFT (every weight 1) micro-batched equals one batch of the step: a token mean over all its targets."""
    batch = [TrainExample(segments=ex.segments) for ex in _batch()]
    grads = []
    for micro in (None, 3):
        model = copy.deepcopy(tiny_model)
        trainer = Trainer(model, tokenizer, TrainConfig(batch_size=8, micro_batch_size=micro, dtype="float32"))
        trainer._local_step(batch, "sft", TrainStats())
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_length_window_groups_steps_and_stays_seeded(tiny_model, tokenizer):
    examples = _batch() * 4  # 32 examples, 8 steps of 4
    def run(**cfg):
        trainer = Trainer(copy.deepcopy(tiny_model), tokenizer,
                          TrainConfig(batch_size=4, lr=1e-4, dtype="float32", **cfg))
        seen, step = [], trainer._local_step

        def recording_step(batch, objective, stats):
            seen.append(batch)
            return step(batch, objective, stats)

        trainer._local_step = recording_step
        return trainer.fit(examples, "sft"), seen

    plain, plain_batches = run()
    windowed, batches = run(length_window=8)
    again, batches_again = run(length_window=8)
    assert [[id(e) for e in b] for b in batches] == [[id(e) for e in b] for b in batches_again]  # seeded
    assert windowed.loss_mean == again.loss_mean
    assert sorted(id(e) for b in batches for e in b) == sorted(id(e) for b in plain_batches for e in b)
    assert windowed.tokens == plain.tokens and windowed.padded_tokens < plain.padded_tokens
