"""HFPolicy against the embedded default model: batching, sampling, stop strings, logprobs, LoRA, errors."""

from __future__ import annotations

import pytest

from agentloop.errors import PolicyError
from agentloop.types import SamplingParams, user
from tests.helpers import chat_prompts, check_seeded_sampling

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.slow

CONVS = chat_prompts()


def forward_logprobs(model, prompt_ids, token_ids) -> list[float]:
    ids = torch.tensor([list(prompt_ids) + list(token_ids)])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0].float(), dim=-1)
    start = len(prompt_ids) - 1
    return [logp[start + k, t].item() for k, t in enumerate(token_ids)]


def test_default_model_writes_real_text() -> None:
    from agentloop.registry import make_policy

    policy = make_policy("hf")  # bf16 default model, as every command uses it
    assert policy.model.dtype == torch.bfloat16
    [c] = policy.generate([[user("What is 2+3? Answer with the number.")]], SamplingParams(max_new_tokens=12))
    assert "5" in c.text and c.finish_reason in ("stop", "length")


def test_batched_left_padded_greedy_matches_one_by_one(hf32) -> None:
    sampling = SamplingParams(max_new_tokens=8)
    batched = hf32.generate(CONVS, sampling)
    single = [hf32.generate([conv], sampling)[0] for conv in CONVS]
    assert [c.text for c in batched] == [c.text for c in single]
    assert all(c.text for c in batched)


@pytest.mark.parametrize("temperature", [0.0, 0.9])
def test_logprobs_match_a_forward_pass(hf32, temperature: float) -> None:
    from agentloop.policies.chat import encode_chat

    sampling = SamplingParams(max_new_tokens=6, temperature=temperature, seed=3, return_logprobs=True)
    out = hf32.generate(CONVS[:2], sampling)
    for conv, c in zip(CONVS[:2], out):
        assert c.prompt_token_ids == tuple(encode_chat(hf32.tokenizer, conv, None, 6)[0])
        assert len(c.token_ids) == len(c.logprobs) >= 1
        assert hf32.tokenizer.decode(c.token_ids, skip_special_tokens=True) == c.text
        expected = forward_logprobs(hf32.model, c.prompt_token_ids, c.token_ids)
        assert max(abs(a - b) for a, b in zip(c.logprobs, expected)) < 2e-3


def test_stop_string_cuts_text_and_stops_generation_early(hf32) -> None:
    conv = [user("Write a short story about a cat.")]
    ref = hf32.generate([conv], SamplingParams(max_new_tokens=20, return_logprobs=True))[0]
    assert len(ref.token_ids) == 20, "the reference must run to max_new_tokens"
    k, stop = next((k, s) for k in range(3, 15)
                   if len(s := hf32.tokenizer.decode(ref.token_ids[k:k + 1]).strip()) >= 2 and s not in
                   hf32.tokenizer.decode(ref.token_ids[:k]))
    calls: list[int] = []
    hook = hf32.model.register_forward_hook(lambda *_: calls.append(1))
    try:
        out = hf32.generate([conv, conv], SamplingParams(max_new_tokens=20, stop=(stop,), return_logprobs=True))
    finally:
        hook.remove()
    for c in out:
        assert c.text == ref.text[: ref.text.find(stop)]
        assert c.finish_reason == "stop"
        assert c.token_ids == ref.token_ids[: k + 1]  # up to and including the token that completed the stop string
    assert len(calls) <= k + 2 < 20  # one forward per generated token: the batch stopped early


def test_sampling_is_seeded_and_n_samples_are_ordered(hf32) -> None:
    check_seeded_sampling(hf32, CONVS[:2])


def test_prompt_longer_than_context_is_left_truncated_with_a_warning(hf32) -> None:
    from agentloop.policies.hf import HFPolicy

    small = HFPolicy.from_model(hf32.model, hf32.tokenizer, context_len=64)
    conv = [user("word " * 200 + "What is 2+3?")]
    [c] = small.generate([conv], SamplingParams(max_new_tokens=4, return_logprobs=True))
    assert c.warning and "truncated from the left" in c.warning
    assert len(c.prompt_token_ids) == 60
    tail = hf32.tokenizer("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]
    assert list(c.prompt_token_ids[-len(tail):]) == tail  # the generation prompt survives


def test_from_model_restores_training_mode(hf32) -> None:
    from agentloop.policies.hf import HFPolicy

    hf32.model.train()
    try:
        HFPolicy.from_model(hf32.model, hf32.tokenizer).generate(CONVS[:1], SamplingParams(max_new_tokens=2))
        assert hf32.model.training
    finally:
        hf32.model.eval()


def test_output_projection_gets_contiguous_input_and_the_hook_is_removed(hf32) -> None:
    """A strided lm_head input makes torch's CPU bf16 matmul copy the whole weight per row (+3.4 GiB at batch 64)."""
    seen: list[bool] = []
    head = hf32.model.get_output_embeddings()
    spy = head.register_forward_hook(lambda _m, args, _out: seen.append(args[0].is_contiguous()))
    try:
        hf32.generate(CONVS[:3], SamplingParams(max_new_tokens=2))
    finally:
        spy.remove()
    assert seen and all(seen), seen
    assert not head._forward_pre_hooks  # the model is left as it was


def test_lora_adapter_loads_unmerged_and_merged(hf32, tmp_path) -> None:
    from peft import LoraConfig, PeftModel, get_peft_model

    from agentloop.policies.hf import HFPolicy

    base_text = hf32.generate(CONVS[:1], SamplingParams(max_new_tokens=6))[0].text
    for seed, name in ((0, "adapter"), (1, "second")):
        torch.manual_seed(seed)
        peft = get_peft_model(hf32.model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
        with torch.no_grad():  # a large random update, so the adapter visibly changes the output
            for pname, p in peft.named_parameters():
                if "lora_B" in pname:
                    p.normal_(0, 0.5)
        peft.save_pretrained(tmp_path / name)
        peft.unload()  # give the shared fixture its plain model back

    unmerged = HFPolicy(adapter=str(tmp_path / "adapter"), dtype="float32")
    merged = HFPolicy(adapter=str(tmp_path / "adapter"), dtype="float32", merge_adapter=True)
    assert isinstance(unmerged.model, PeftModel) and not isinstance(merged.model, PeftModel)
    sampling = SamplingParams(max_new_tokens=6)
    a = unmerged.generate(CONVS[:1], sampling)[0].text
    assert a == merged.generate(CONVS[:1], sampling)[0].text
    assert a != base_text
    assert hf32.generate(CONVS[:1], sampling)[0].text == base_text
    unmerged.load_adapter(str(tmp_path / "second"))  # swap adapters without reloading the base model
    assert unmerged.generate(CONVS[:1], sampling)[0].text != a
    unmerged.load_adapter(str(tmp_path / "adapter"))
    assert unmerged.generate(CONVS[:1], sampling)[0].text == a


def test_bad_model_and_adapter_paths_say_how_to_fix(tmp_path) -> None:
    from agentloop.policies.hf import HFPolicy, resolve_model_source

    with pytest.raises(PolicyError, match="does not exist"):
        HFPolicy(model=str(tmp_path / "nope"))
    (tmp_path / "ad").mkdir()
    (tmp_path / "ad" / "adapter_config.json").write_text("{}")
    with pytest.raises(PolicyError, match="pass it as adapter="):
        resolve_model_source(str(tmp_path / "ad"))
    with pytest.raises(PolicyError, match="adapter_config.json"):
        HFPolicy(adapter=str(tmp_path / "missing"), dtype="float32")
    assert resolve_model_source("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_two_attempt_rollout_records_the_ids_training_uses(hf32) -> None:
    """Each turn of a real two-attempt episode records the prompt ids it was generated from and its sampled ids;
    the training example built from the turn is exactly those ids, and the trainer's forward gives the trained
    tokens the sampler's log-probabilities (up to float noise): training scores the tokens that were sampled."""
    from agentloop.policies.chat import encode_chat
    from agentloop.registry import make
    from agentloop.rollout import Job, rollout
    from agentloop.training.data import encode_example, turn_example

    sampling = SamplingParams(max_new_tokens=12, temperature=0.9, seed=5, stop=("\n\n",), return_logprobs=True)
    jobs = [Job(env=make("math/arith-v0", difficulty=6, max_attempts=2, feedback="retry", stop_on_success=False),
                seed=s) for s in range(3)]
    episodes = rollout(jobs, hf32, sampling=sampling)
    turns = [t for e in episodes for t in e.turns]
    assert len(turns) == 6 and all(e.error is None for e in episodes)
    for t in turns:
        assert t.prompt_token_ids == tuple(encode_chat(hf32.tokenizer, t.observation, None, 12)[0])
        ids, mask, _ = encode_example(hf32.tokenizer, turn_example(hf32.tokenizer, t), 4096)
        assert ids == [*t.prompt_token_ids, *t.token_ids] and sum(mask) == len(t.token_ids)
        trained = forward_logprobs(hf32.model, ids[: len(t.prompt_token_ids)], ids[len(t.prompt_token_ids):])
        assert max(abs(a - b) for a, b in zip(trained, t.logprobs)) < 2e-3
