"""The trainer: each objective moves parameters in the expected direction; checkpoints are atomic and reload."""

from __future__ import annotations

import pytest
import torch

from agentloop.training.data import Segment, TrainExample
from agentloop.training.trainer import LoraSettings, TrainConfig, Trainer


def _ex(prompt: str, reply: str, weight: float = 1.0, kl: float = 0.0) -> TrainExample:
    return TrainExample(segments=(Segment(text=prompt), Segment(text=reply, train=True)), weight=weight, kl_coef=kl)


def _seq_logp(trainer: Trainer, ex: TrainExample) -> float:
    batch = trainer.collate([ex])
    with torch.no_grad():
        lp = trainer._logp(trainer.model, batch["input_ids"], batch["attention_mask"])
    return float((lp * batch["loss_mask"]).sum())


def test_sft_raises_logprob_of_trained_reply(tiny_model, tokenizer):
    trainer = Trainer(tiny_model, tokenizer, TrainConfig(lr=1e-2, batch_size=2, micro_batch_size=1, dtype="float32"))
    ex = _ex("Q: 2+2?\nA:", " 4")
    before = _seq_logp(trainer, ex)
    stats = trainer.fit([ex, ex], objective="sft")
    assert stats.steps == 1 and stats.examples == 2
    assert _seq_logp(trainer, ex) > before


def test_masked_prompt_gets_no_gradient(tiny_model, tokenizer):
    trainer = Trainer(tiny_model, tokenizer, TrainConfig(dtype="float32"))
    nothing = TrainExample(segments=(Segment(text="only context here"),))
    batch = trainer.collate([nothing])
    loss = trainer.loss(batch, "sft")
    loss.backward()
    grads = [p.grad for p in tiny_model.parameters() if p.grad is not None]
    assert loss.item() == 0.0 and all(float(g.abs().sum()) == 0.0 for g in grads)


def test_reinforce_direction_and_kl(tiny_model, tokenizer):
    good, bad = _ex("Q:", " yes", weight=1.0), _ex("Q:", " no", weight=-1.0)
    trainer = Trainer(tiny_model, tokenizer, TrainConfig(lr=1e-2, batch_size=2, dtype="float32"))
    g0, b0 = _seq_logp(trainer, good), _seq_logp(trainer, bad)
    trainer.fit([good, bad], objective="reinforce")
    g1, b1 = _seq_logp(trainer, good), _seq_logp(trainer, bad)
    assert g1 - b1 > g0 - b0 + 0.05, (g0, b0, g1, b1)


def test_reinforce_kl_only_pulls_back_to_reference(tiny_model, tokenizer):
    trainer = Trainer(tiny_model, tokenizer, TrainConfig(lr=1e-2, batch_size=1, dtype="float32"))
    ex = _ex("Q:", " drift")
    # build the reference now, then move away from it with SFT, then a KL-only step must move back
    trainer._ref_logp(trainer.collate([ex])["input_ids"], trainer.collate([ex])["attention_mask"])
    ref = _seq_logp(trainer, ex)
    trainer.fit([ex] * 3, objective="sft")
    drifted = _seq_logp(trainer, ex)
    assert drifted > ref
    trainer.fit([_ex("Q:", " drift", weight=0.0, kl=1.0)] * 3, objective="reinforce")
    assert _seq_logp(trainer, ex) < drifted


def test_weighted_sft_prefers_heavier_example(tiny_model, tokenizer):
    trainer = Trainer(tiny_model, tokenizer, TrainConfig(lr=5e-3, batch_size=2, dtype="float32"))
    a, b = _ex("Q:", " alpha", weight=1.9), _ex("Q:", " beta", weight=0.1)
    a0, b0 = _seq_logp(trainer, a), _seq_logp(trainer, b)
    trainer.fit([a, b], objective="rwr")
    assert (_seq_logp(trainer, a) - a0) > (_seq_logp(trainer, b) - b0)


def test_lora_trains_adapter_and_reference_is_base(tiny_model, tokenizer):
    from peft import LoraConfig, get_peft_model

    lora = LoraSettings(r=4, alpha=8)
    model = get_peft_model(tiny_model, LoraConfig(r=lora.r, lora_alpha=lora.alpha, target_modules=list(lora.target_modules)))
    trainer = Trainer(model, tokenizer, TrainConfig(lr=1e-2, batch_size=1, lora=lora, dtype="float32"))
    assert trainer.is_lora
    ex = _ex("Q:", " yes")
    before = _seq_logp(trainer, ex)
    trainer.fit([ex] * 2, objective="sft")
    after = _seq_logp(trainer, ex)
    batch = trainer.collate([ex])
    ref = float((trainer._ref_logp(batch["input_ids"], batch["attention_mask"]) * batch["loss_mask"]).sum())
    assert after > before and ref == pytest.approx(before, abs=1e-4)


def test_save_is_atomic_and_reloads(tiny_model, tokenizer, tmp_path):
    trainer = Trainer(tiny_model, tokenizer, TrainConfig(lr=1e-2, batch_size=1, dtype="float32"))
    ex = _ex("Q:", " yes")
    trainer.fit([ex], objective="sft")
    path = trainer.save(tmp_path / "ckpt", extra={"iteration": 1})
    assert (path / "trainer_state.json").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]
    trained = _seq_logp(trainer, ex)
    import copy

    fresh = copy.deepcopy(tiny_model)
    for p in fresh.parameters():
        torch.nn.init.zeros_(p)
    other = Trainer(fresh, tokenizer, TrainConfig(dtype="float32"))
    other.load_weights(path)
    assert _seq_logp(other, ex) == pytest.approx(trained, abs=1e-5)
    assert other.calls == 1


def test_fit_is_deterministic(tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    def run() -> list[float]:
        torch.manual_seed(0)
        cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                          num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True)
        trainer = Trainer(LlamaForCausalLM(cfg), tokenizer, TrainConfig(lr=1e-2, batch_size=2, seed=3, dtype="float32"))
        exs = [_ex("Q:", f" {w}") for w in ("a", "b", "c", "d", "e")]
        trainer.fit(exs, objective="sft")
        return [p.detach().clone() for p in trainer.model.parameters()][:2]

    a, b = run(), run()
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_config_rejects_micro_batch_larger_than_batch():
    with pytest.raises(ValueError, match="micro_batch_size"):
        TrainConfig(batch_size=2, micro_batch_size=4)


@pytest.mark.slow
def test_real_default_model_step_raises_rewarded_sequence(tokenizer):
    """One REINFORCE step on the embedded SmolLM2-135M raises the rewarded reply relative to the penalised one.

    The two replies share all but their answer tokens, whose gradients cancel; Adam's first step moves every
    parameter by about lr whatever its gradient's size, so the shared tokens' log-probs move by bf16 noise in
    either direction. What the step must do is widen the gap between the two replies."""
    from agentloop.training.data import chat_example
    from agentloop.training.trainer import load_model
    from agentloop.types import assistant, user

    model, tok = load_model(None)
    trainer = Trainer(model, tok, TrainConfig(lr=1e-5, batch_size=2, max_len=64))
    prompt = [user("What is 7 + 5? Give the final answer on the last line in the form 'Answer: <number>'.")]
    good = chat_example(tok, [*prompt, assistant("7 + 5 = 12\nAnswer: 12")], weight=1.0)
    bad = chat_example(tok, [*prompt, assistant("7 + 5 = 13\nAnswer: 13")], weight=-1.0)
    g0, b0 = _seq_logp(trainer, good), _seq_logp(trainer, bad)
    stats = trainer.fit([good, bad], objective="reinforce")
    assert stats.steps == 1
    g1, b1 = _seq_logp(trainer, good), _seq_logp(trainer, bad)
    assert g1 - b1 > g0 - b0 + 0.05, (g0, b0, g1, b1)


def test_fit_reports_throughput_and_padding(tiny_model, tokenizer):
    trainer = Trainer(tiny_model, tokenizer, TrainConfig(lr=1e-3, batch_size=2, dtype="float32"))
    stats = trainer.fit([_ex("Q:", " a"), _ex("Question with more words:", " a much longer reply here")], "sft")
    assert stats.tokens_per_s is not None and stats.tokens_per_s == pytest.approx(stats.tokens / stats.seconds, rel=0.01)
    assert stats.padded_tokens > stats.tokens > 0  # the short row was padded to the long one's width


@pytest.mark.parametrize("objective", ["sft", "rwr", "reinforce"])
def test_logits_only_where_the_loss_is_give_the_same_loss_and_gradient(tiny_model, tokenizer, monkeypatch, objective):
    """Logits from the first loss position on (logits_to_keep) = full logits, for loss and every gradient,
    with right padding and replies that start at different positions (KL to the reference included)."""
    import copy

    from agentloop.training import trainer as trainer_mod

    exs = [_ex("Question: a long prompt with many words before the reply?\nA:", " forty two", weight=0.7, kl=0.1),
           _ex("Q: short?\nA:", " yes it is", weight=-0.4, kl=0.1),
           _ex("Q: mid length prompt here?\nA:", " no", weight=1.3, kl=0.1)]
    grads, losses, seen_keep = {}, {}, []
    real = trainer_mod.first_loss_position
    for mode in ("full", "kept"):
        model = copy.deepcopy(tiny_model).train()
        trainer = Trainer(model, tokenizer, TrainConfig(dtype="float32", batch_size=3))
        if mode == "full":
            monkeypatch.setattr(trainer_mod, "first_loss_position", lambda mask: 0)
        else:
            monkeypatch.setattr(trainer_mod, "first_loss_position", lambda mask: seen_keep.append(real(mask)) or real(mask))
        batch = trainer.collate(exs)
        loss = trainer.loss(batch, objective)
        loss.backward()
        losses[mode] = float(loss)
        grads[mode] = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert seen_keep and seen_keep[0] > 5  # the prompt part of every row really was skipped
    assert losses["kept"] == pytest.approx(losses["full"], rel=1e-5, abs=1e-7)
    assert grads["kept"].keys() == grads["full"].keys()
    for name, g in grads["full"].items():
        torch.testing.assert_close(grads["kept"][name], g, rtol=1e-4, atol=1e-6)


def test_first_loss_position_is_the_first_column_any_row_trains() -> None:
    from agentloop.training.trainer import first_loss_position

    mask = torch.zeros(3, 10)
    assert first_loss_position(mask) == 0
    mask[1, 6:8] = 1
    mask[2, 4] = 1
    assert first_loss_position(mask) == 4


def test_lora_base_weights_follow_the_training_precision(tiny_model_dir) -> None:
    """A LoRA run's frozen base is bf16 under bf16 autocast (half the memory); the adapter stays float32."""
    pytest.importorskip("peft", reason="LoRA needs the peft extra")
    from agentloop.training.trainer import LoraSettings, TrainConfig, load_model, lora_base_dtype

    lora = LoraSettings(r=4, alpha=8)
    assert lora_base_dtype(TrainConfig(lora=lora, dtype="bfloat16")) == torch.bfloat16
    assert lora_base_dtype(TrainConfig(lora=lora, dtype="float32")) == torch.float32
    assert lora_base_dtype(TrainConfig(lora=LoraSettings(base_dtype="float32"), dtype="bfloat16")) == torch.float32
    assert lora_base_dtype(TrainConfig(dtype="bfloat16")) == torch.float32  # full fine-tuning keeps float32 masters
    model, _ = load_model(tiny_model_dir, lora=lora, base_dtype=torch.bfloat16)
    dtypes = {("lora_" in n, p.dtype) for n, p in model.named_parameters()}
    assert dtypes == {(True, torch.float32), (False, torch.bfloat16)}
    full, _ = load_model(tiny_model_dir, base_dtype=torch.bfloat16)  # ignored without LoRA
    assert {p.dtype for p in full.parameters()} == {torch.float32}


def test_save_over_a_checkpoint_keeps_the_old_one_when_the_swap_fails(tiny_model, tokenizer, tmp_path, monkeypatch):
    from agentloop import runs

    trainer = Trainer(tiny_model, tokenizer, TrainConfig(dtype="float32"))
    trainer.save(tmp_path / "ckpt", extra={"iteration": 1})
    before = sorted(p.name for p in (tmp_path / "ckpt").iterdir())

    def fault(name: str, detail: str = "") -> None:
        if name == "folder.swap":  # between moving the old checkpoint aside and the new one in
            raise OSError("injected")

    monkeypatch.setattr(runs, "fault_point", fault)
    with pytest.raises(OSError, match="injected"):
        trainer.save(tmp_path / "ckpt", extra={"iteration": 2})
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == before
    assert '"iteration": 1' in (tmp_path / "ckpt" / "trainer_state.json").read_text()
