"""CT2Policy on a tiny random Llama saved to disk (real CTranslate2 conversion and decoding, no network)."""

from __future__ import annotations

import pytest

from agentloop.types import SamplingParams, user

torch = pytest.importorskip("torch")
pytest.importorskip("ctranslate2", reason="the ct2 policy needs the ct2 extra: pip install 'agentloop[ct2]'")

CONVS = [[user("What is 2+3?")], [user("Name a colour.")], [user("Hi")]]


def _save_tiny(tokenizer, folder, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      tie_word_embeddings=True, eos_token_id=tokenizer.eos_token_id,
                      pad_token_id=tokenizer.pad_token_id)
    model = LlamaForCausalLM(cfg).eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model


@pytest.fixture()
def tiny(tokenizer, tmp_path, monkeypatch):
    monkeypatch.setenv("AGENTLOOP_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "tiny"
    model = _save_tiny(tokenizer, folder)
    return folder, model


def test_greedy_matches_hf_in_float32(tiny) -> None:
    from agentloop.policies.ct2 import CT2Policy
    from agentloop.policies.hf import HFPolicy

    folder, model = tiny
    ct2 = CT2Policy(model=str(folder), compute_type="float32")
    hf = HFPolicy.from_model(model, ct2.tokenizer)
    sp = SamplingParams(max_new_tokens=12, return_logprobs=True)
    got, want = ct2.generate(CONVS, sp), hf.generate(CONVS, sp)
    assert [c.token_ids for c in got] == [c.token_ids for c in want]
    assert [c.text for c in got] == [c.text for c in want]
    assert [c.prompt_token_ids for c in got] == [c.prompt_token_ids for c in want]
    for a, b in zip(got, want):  # greedy at temperature 1: CTranslate2's logprobs are the model's
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-3)


def test_sampling_is_seeded_and_n_samples_are_ordered(tiny) -> None:
    from agentloop.policies.ct2 import CT2Policy

    ct2 = CT2Policy(model=str(tiny[0]), compute_type="float32")
    sp = SamplingParams(max_new_tokens=10, temperature=1.0, n=3, seed=7)
    a, b = ct2.generate(CONVS[:2], sp), ct2.generate(CONVS[:2], sp)
    assert len(a) == 6 and [c.text for c in a] == [c.text for c in b]
    assert len({c.text for c in a[:3]}) > 1  # the three samples of one prompt differ
    other = ct2.generate(CONVS[:2], sp.model_copy(update={"seed": 8}))
    assert [c.text for c in other] != [c.text for c in a]


def test_stop_string_cuts_text_and_ends_the_row(tiny) -> None:
    from agentloop.policies.ct2 import CT2Policy

    ct2 = CT2Policy(model=str(tiny[0]), compute_type="float32")
    [free] = ct2.generate(CONVS[:1], SamplingParams(max_new_tokens=20, return_logprobs=True))
    assert len(free.text) > 4 and free.finish_reason == "length"
    stop = free.text[2:4]
    [cut] = ct2.generate(CONVS[:1], SamplingParams(max_new_tokens=20, stop=(stop,), return_logprobs=True))
    assert cut.finish_reason == "stop"
    assert free.text.startswith(cut.text) and stop not in cut.text
    assert len(cut.token_ids) < len(free.token_ids)  # decoding ended early, not just the text


def test_load_weights_swaps_in_a_new_checkpoint(tiny, tokenizer, tmp_path) -> None:
    from agentloop.policies.ct2 import CT2Policy

    ct2 = CT2Policy(model=str(tiny[0]), compute_type="float32")
    sp = SamplingParams(max_new_tokens=6, return_logprobs=True)
    before = ct2.generate(CONVS, sp)
    trained = _save_tiny(tokenizer, tmp_path / "trained", seed=1)
    seconds = ct2.load_weights(tmp_path / "trained")
    assert seconds > 0
    after = ct2.generate(CONVS, sp)
    assert [c.logprobs for c in after] != [c.logprobs for c in before]
    from agentloop.policies.hf import HFPolicy

    want = HFPolicy.from_model(trained, ct2.tokenizer).generate(CONVS, sp)  # the new weights, exactly
    assert [c.token_ids for c in after] == [c.token_ids for c in want]


def test_not_a_model_folder_says_how_to_fix(tmp_path) -> None:
    from agentloop.errors import PolicyError
    from agentloop.policies.ct2 import convert

    (tmp_path / "adapter_config.json").write_text("{}")
    with pytest.raises(PolicyError, match="merged first"):
        convert(tmp_path)
