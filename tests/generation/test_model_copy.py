"""GenerationModel: a lean bf16 generation copy of the trained model, refreshed in place after training."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")


def _nudge(model) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)


def test_copy_is_cast_tied_and_separate_from_the_trained_weights(tiny_model, tokenizer) -> None:
    from agentloop.generation.model_copy import GenerationModel

    gen = GenerationModel(tiny_model, tokenizer, torch.bfloat16)
    assert gen.model is not tiny_model
    params = list(gen.model.parameters())
    assert all(p.dtype == torch.bfloat16 and not p.requires_grad for p in params)
    assert gen.model.get_output_embeddings().weight is gen.model.get_input_embeddings().weight  # still tied
    assert all(p.dtype == torch.float32 for p in tiny_model.parameters())  # the trained model is untouched
    trained = dict(tiny_model.named_parameters())
    for name, p in gen.model.named_parameters():
        assert p.data_ptr() != trained[name].data_ptr()
        assert torch.equal(p, trained[name].to(torch.bfloat16))


def test_sync_copies_new_weights_in_place(tiny_model, tokenizer) -> None:
    from agentloop.generation.model_copy import GenerationModel

    gen = GenerationModel(tiny_model, tokenizer, torch.bfloat16)
    before = {n: p.data_ptr() for n, p in gen.model.named_parameters()}
    _nudge(tiny_model)
    gen.sync()
    trained = dict(tiny_model.named_parameters())
    for name, p in gen.model.named_parameters():
        assert p.data_ptr() == before[name]  # refreshed in place, no new tensors
        assert torch.equal(p, trained[name].to(torch.bfloat16))


def test_sync_merges_a_lora_adapter(tiny_model, tokenizer) -> None:
    pytest.importorskip("peft", reason="LoRA sync needs the peft extra")
    from peft import LoraConfig, get_peft_model

    from agentloop.generation.model_copy import GenerationModel

    lora = get_peft_model(tiny_model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    gen = GenerationModel(lora, tokenizer, torch.float32)
    assert not any("lora" in n for n, _ in gen.model.named_parameters())
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        torch.testing.assert_close(gen.model(ids).logits, lora(ids).logits, rtol=1e-4, atol=1e-5)
        _nudge_lora = [p for n, p in lora.named_parameters() if "lora_B" in n]
        for p in _nudge_lora:
            p.add_(0.05)
    gen.sync()
    with torch.no_grad():
        torch.testing.assert_close(gen.model(ids).logits, lora(ids).logits, rtol=1e-4, atol=1e-5)


def test_no_dtype_means_no_copy(tiny_model, tokenizer) -> None:
    from agentloop.generation.model_copy import GenerationModel

    gen = GenerationModel(tiny_model, tokenizer, None)
    assert gen.model is tiny_model and gen.policy.model is tiny_model
    gen.sync()  # nothing to copy


def test_lora_copy_is_merged_layer_by_layer_never_through_a_whole_model_copy(tiny_model, tokenizer, monkeypatch) -> None:
    """A bf16 copy of a LoRA model: merged weights equal peft's own merge, and no float32 model copy is made."""
    pytest.importorskip("peft", reason="LoRA sync needs the peft extra")
    import copy

    from peft import LoraConfig, get_peft_model

    from agentloop.generation import model_copy as policy_mod

    lora = get_peft_model(tiny_model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"],
                                                 init_lora_weights=False))
    real_deepcopy, copied = copy.deepcopy, []

    def counting_deepcopy(obj, memo=None):
        if isinstance(obj, torch.nn.Module):
            copied.append((type(obj).__name__, memo is not None))
        return real_deepcopy(obj, memo)

    monkeypatch.setattr(policy_mod.copy, "deepcopy", counting_deepcopy)
    gen = policy_mod.GenerationModel(lora, tokenizer, torch.bfloat16)
    with torch.no_grad():
        for p in (p for n, p in lora.named_parameters() if "lora_B" in n):
            p.add_(0.05)
    gen.sync()
    assert all(with_memo for _, with_memo in copied), copied  # only the memo copy (bf16 tensors made one by one)
    merged = real_deepcopy(lora).merge_and_unload()
    mine = dict(gen.model.named_parameters())
    assert set(mine) == {n for n, _ in merged.named_parameters()}
    for name, p in merged.named_parameters():
        assert mine[name].dtype == torch.bfloat16
        torch.testing.assert_close(mine[name], p.detach().to(torch.bfloat16), rtol=0, atol=0)


@pytest.mark.parametrize("lora", [False, True])
def test_release_frees_the_copy_and_sync_rebuilds_it_from_the_trained_weights(tiny_model, tokenizer, lora) -> None:
    from agentloop.generation.model_copy import GenerationModel

    model = tiny_model
    if lora:
        peft = pytest.importorskip("peft", reason="LoRA sync needs the peft extra")
        model = peft.get_peft_model(tiny_model, peft.LoraConfig(r=4, target_modules=["q_proj", "down_proj"],
                                                                init_lora_weights=False))
    gen = GenerationModel(model, tokenizer, torch.bfloat16)
    held = sum(p.numel() for p in gen.model.parameters())
    gen.release()
    assert held > 0 and sum(p.numel() for p in gen.model.parameters()) == 0  # nothing of the copy is held
    assert all(p.numel() > 0 for p in model.parameters())  # the trained model is untouched
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not lora or "lora_B" in name:
                p.add_(0.05)
    gen.sync()
    expected = copy_merged(model) if lora else dict(model.named_parameters())
    mine = dict(gen.model.named_parameters())
    assert sum(p.numel() for p in mine.values()) == held
    assert gen.model.get_output_embeddings().weight is gen.model.get_input_embeddings().weight  # still tied
    for name, p in mine.items():
        assert p.dtype == torch.bfloat16
        torch.testing.assert_close(p, expected[name].detach().to(torch.bfloat16), rtol=0, atol=0)
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        torch.testing.assert_close(gen.model(ids).logits.float(), model(ids).logits.float(), rtol=0.05, atol=0.05)


def copy_merged(model) -> dict:
    import copy

    return dict(copy.deepcopy(model).merge_and_unload().named_parameters())
