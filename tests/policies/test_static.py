"""StaticPolicy (static KV cache, continuous batching) against HFPolicy on the same weights."""

from __future__ import annotations

import math

import pytest

from agentloop.errors import PolicyError
from agentloop.types import SamplingParams, user
from tests.helpers import chat_prompts, check_seeded_sampling, teacher_forced_logprobs

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.slow

CONVS = [
    *chat_prompts(),
    [user("List three prime numbers and say why each one is prime.")],
    [user("Write a haiku about the sea.")],
]


@pytest.fixture(scope="module")
def static32(hf32):
    from agentloop.policies.static import StaticPolicy

    return StaticPolicy.from_model(hf32.model, hf32.tokenizer, max_batch_size=8)


def test_greedy_texts_and_ids_equal_hf_one_by_one(hf32, static32) -> None:
    """float32: every row's numbers are its own, so the batched static loop equals hf on each prompt alone."""
    sampling = SamplingParams(max_new_tokens=24, return_logprobs=True)
    mine = static32.generate(CONVS, sampling)
    for conv, c in zip(CONVS, mine):
        [ref] = hf32.generate([conv], sampling)
        assert (c.text, c.token_ids, c.prompt_token_ids, c.finish_reason) == \
            (ref.text, ref.token_ids, ref.prompt_token_ids, ref.finish_reason)


@pytest.mark.parametrize("slots,prefill_tokens", [(2, 2048), (3, 40), (1, 1)])
def test_continuous_batching_and_prefill_buckets_change_nothing(hf32, static32, slots: int, prefill_tokens: int) -> None:
    """Fewer cache rows than prompts (rows refilled as others finish) and tiny prefill buckets give the same replies."""
    from agentloop.policies.static import StaticPolicy

    small = StaticPolicy.from_model(hf32.model, hf32.tokenizer, max_batch_size=slots, prefill_tokens=prefill_tokens)
    sampling = SamplingParams(max_new_tokens=16)
    assert [c.text for c in small.generate(CONVS, sampling)] == [c.text for c in static32.generate(CONVS, sampling)]


def test_kv_cache_budget_lowers_the_rows_not_the_replies(hf32, static32) -> None:
    from agentloop.policies.static import StaticPolicy

    tight = StaticPolicy.from_model(hf32.model, hf32.tokenizer, max_batch_size=8, kv_cache_mib=1)
    sampling = SamplingParams(max_new_tokens=12)
    assert [c.text for c in tight.generate(CONVS, sampling)] == [c.text for c in static32.generate(CONVS, sampling)]


@pytest.mark.parametrize("temperature", [0.0, 0.9])
def test_logprobs_match_a_forward_pass(hf32, static32, temperature: float) -> None:
    sampling = SamplingParams(max_new_tokens=10, temperature=temperature, seed=3, return_logprobs=True)
    for c in static32.generate(CONVS[:3], sampling):
        assert len(c.logprobs) == len(c.token_ids) > 0
        ref = teacher_forced_logprobs(hf32.model, c)
        assert max(abs(a - b) for a, b in zip(c.logprobs, ref)) < 1e-3


def test_stop_string_cuts_text_and_frees_the_row(hf32, static32) -> None:
    conv = [user("Write a short story about a cat.")]
    ref = static32.generate([conv], SamplingParams(max_new_tokens=20, return_logprobs=True))[0]
    assert len(ref.token_ids) == 20, "the reference must run to max_new_tokens"
    k, stop = next((k, s) for k in range(3, 15)
                   if len(s := hf32.tokenizer.decode(ref.token_ids[k:k + 1]).strip()) >= 2 and s not in
                   hf32.tokenizer.decode(ref.token_ids[:k]))
    out = static32.generate([conv, conv], SamplingParams(max_new_tokens=20, stop=(stop,), return_logprobs=True))
    for c in out:
        assert c.text == ref.text[: ref.text.find(stop)]
        assert c.finish_reason == "stop"
        assert c.token_ids == ref.token_ids[: k + 1]


def test_sampling_is_seeded_and_n_samples_are_ordered(static32) -> None:
    check_seeded_sampling(static32, CONVS[:2])


def test_top_p_keeps_the_smallest_prefix_reaching_p() -> None:
    from agentloop.policies.static import choose

    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).repeat(4000, 1)
    gen = torch.Generator().manual_seed(0)
    tokens, logps = choose(logits, SamplingParams(temperature=1.0, top_p=0.7, return_logprobs=True), gen)
    counts = torch.bincount(tokens, minlength=4).tolist()
    assert counts[2] == counts[3] == 0 and counts[0] > counts[1] > 0  # 0.5 + 0.3 reaches 0.7: tokens 2, 3 never drawn
    assert abs(counts[0] / 4000 - 0.5 / 0.8) < 0.03
    assert torch.allclose(logps, torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))[tokens])  # unmodified distribution
    greedy, none = choose(logits[:2], SamplingParams(), None)
    assert greedy.tolist() == [0, 0] and none is None


def test_prompt_longer_than_context_is_left_truncated_with_a_warning(hf32) -> None:
    from agentloop.policies.static import StaticPolicy

    small = StaticPolicy.from_model(hf32.model, hf32.tokenizer, context_len=64)
    [c] = small.generate([[user("word " * 200 + "What is 2+3?")]], SamplingParams(max_new_tokens=4,
                                                                               return_logprobs=True))
    assert c.warning and "truncated from the left" in c.warning and len(c.prompt_token_ids) == 60


def test_weights_are_read_at_each_call_so_an_in_place_sync_is_seen(hf32, static32) -> None:
    """The improve loop refreshes its generation copy in place; the static loop must not keep stale weights."""
    sampling = SamplingParams(max_new_tokens=6)
    before = static32.generate(CONVS[:1], sampling)[0].text
    w = hf32.model.model.layers[0].mlp.down_proj.weight
    saved = w.detach().clone()
    try:
        with torch.no_grad():
            w.mul_(-3.0)
        changed = static32.generate(CONVS[:1], sampling)[0].text
        assert changed != before and changed == hf32.generate(CONVS[:1], sampling)[0].text
    finally:
        with torch.no_grad():
            w.copy_(saved)
    assert static32.generate(CONVS[:1], sampling)[0].text == before


def test_bf16_default_model_agrees_with_hf_up_to_near_ties() -> None:
    """bf16: texts may differ from hf's only where hf's own logits for the two tokens are within rounding."""
    from agentloop.policies.hf import HFPolicy
    from agentloop.policies.static import StaticPolicy

    hf = HFPolicy(max_batch_size=8)
    static = StaticPolicy.from_model(hf.model, hf.tokenizer, max_batch_size=8)
    sampling = SamplingParams(max_new_tokens=16, return_logprobs=True)
    for a, b in zip(hf.generate(CONVS, sampling), static.generate(CONVS, sampling)):
        k = next((i for i, (x, y) in enumerate(zip(a.token_ids, b.token_ids)) if x != y), None)
        if k is None:
            continue
        with torch.no_grad():
            logits = hf.model(torch.tensor([list(a.prompt_token_ids) + list(a.token_ids[:k])])).logits[0, -1].float()
        la, lb = float(logits[a.token_ids[k]]), float(logits[b.token_ids[k]])
        assert abs(la - lb) <= 4 * 2.0 ** (math.floor(math.log2(max(abs(la), abs(lb)))) - 7), (k, la, lb)


def test_architectures_it_does_not_cover_are_refused_with_the_fix(hf32) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    from agentloop.policies.static import StaticPolicy

    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=32))
    with pytest.raises(PolicyError, match="use the 'hf' backend"):
        StaticPolicy.from_model(model, hf32.tokenizer)


def test_registered_as_a_policy() -> None:
    from agentloop.registry import policies

    assert "static" in policies.ids()

