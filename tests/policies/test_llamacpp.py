"""LlamaCppPolicy: the GGUF LoRA writer, sampling, and real llama.cpp generation on the embedded GGUF."""

from __future__ import annotations

import numpy as np
import pytest

from agentloop.types import SamplingParams, user
from tests.helpers import teacher_forced_logprobs

torch = pytest.importorskip("torch")
peft = pytest.importorskip("peft", reason="LoRA adapters need the peft extra")


def _adapter(model, folder, targets=("q_proj", "k_proj", "v_proj", "down_proj"), seed: int = 0, scale: float = 1.0):
    torch.manual_seed(seed)
    lora = peft.get_peft_model(model, peft.LoraConfig(r=4, lora_alpha=8, target_modules=list(targets),
                                                      init_lora_weights=False))
    with torch.no_grad():
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.mul_(scale)
    lora.save_pretrained(str(folder))
    return lora


def test_gguf_lora_has_llama_cpp_names_alpha_and_the_rotary_row_order(tiny_model_dir, tmp_path) -> None:
    """Names from gguf's map, A/B as trained, q/k rows of B in GGUF's order (transformers' loader undoes it)."""
    gguf = pytest.importorskip("gguf")
    from safetensors.numpy import load_file
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    from agentloop.policies.llamacpp import write_gguf_lora

    config = AutoConfig.from_pretrained(tiny_model_dir)
    _adapter(AutoModelForCausalLM.from_pretrained(tiny_model_dir), tmp_path / "ad")
    out = write_gguf_lora(tmp_path / "ad", tmp_path / "ad.gguf", config)
    reader = gguf.GGUFReader(str(out))
    fields = {f.name: f for f in reader.fields.values()}
    assert bytes(fields["general.type"].parts[-1]).decode() == "adapter"
    assert bytes(fields["adapter.type"].parts[-1]).decode() == "lora"
    assert float(fields["adapter.lora.alpha"].parts[-1][0]) == 8.0
    tensors = {t.name: np.array(t.data).reshape([int(d) for d in reversed(t.shape)]) for t in reader.tensors}
    layers = config.num_hidden_layers
    assert set(tensors) == {f"blk.{i}.{m}.weight.lora_{ab}" for i in range(layers)
                            for m in ("attn_q", "attn_k", "attn_v", "ffn_down") for ab in "ab"}
    trained = load_file(str(tmp_path / "ad" / "adapter_model.safetensors"))
    unpermute = LlamaTensorProcessor(config={"num_attention_heads": config.num_attention_heads,
                                             "num_key_value_heads": config.num_key_value_heads})
    for i in range(layers):
        prefix = f"base_model.model.model.layers.{i}"
        np.testing.assert_array_equal(tensors[f"blk.{i}.attn_v.weight.lora_a"],
                                      trained[f"{prefix}.self_attn.v_proj.lora_A.weight"])
        np.testing.assert_array_equal(tensors[f"blk.{i}.ffn_down.weight.lora_b"],
                                      trained[f"{prefix}.mlp.down_proj.lora_B.weight"])
        for proj, gguf_name, kv in (("q_proj", "attn_q", config.num_attention_heads),
                                    ("k_proj", "attn_k", config.num_key_value_heads)):
            b = trained[f"{prefix}.self_attn.{proj}.lora_B.weight"]
            mine = tensors[f"blk.{i}.{gguf_name}.weight.lora_b"]
            assert not np.array_equal(mine, b)  # permuted ...
            back = unpermute._reverse_permute_weights(mine, config.num_attention_heads, kv)
            np.testing.assert_array_equal(back, b)  # ... exactly as transformers' GGUF loader reverses it


def test_gguf_lora_refuses_dora(tiny_model_dir, tmp_path) -> None:
    from transformers import AutoConfig, AutoModelForCausalLM

    from agentloop.errors import PolicyError
    from agentloop.policies.llamacpp import write_gguf_lora

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    peft.get_peft_model(model, peft.LoraConfig(r=2, target_modules=["q_proj"], use_dora=True)).save_pretrained(
        str(tmp_path / "dora"))
    with pytest.raises(PolicyError, match="DoRA"):
        write_gguf_lora(tmp_path / "dora", tmp_path / "x.gguf", AutoConfig.from_pretrained(tiny_model_dir))


def test_sampling_greedy_logprobs_top_p_and_seed() -> None:
    from agentloop.policies.llamacpp import _sample

    logits = np.log(np.array([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3]], dtype=np.float32)) + 7.0  # shifted: logsumexp matters
    tokens, lps = _sample(logits, SamplingParams(temperature=0.0, return_logprobs=True), np.random.default_rng(0))
    assert tokens == [1, 0]
    np.testing.assert_allclose(lps, np.log([0.6, 0.5]), rtol=1e-5)
    hot = SamplingParams(temperature=1.0, top_p=0.45, return_logprobs=True)
    drawn = [_sample(logits, hot, np.random.default_rng(s))[0] for s in range(50)]
    assert {t[0] for t in drawn} == {1} and {t[1] for t in drawn} == {0}  # top-p keeps only the most likely token
    wide = SamplingParams(temperature=1.0)
    a = [_sample(logits, wide, np.random.default_rng(7))[0] for _ in range(3)]
    assert a[0] == a[1] == a[2]  # same seed, same draws
    counts = np.bincount([_sample(logits[:1], wide, np.random.default_rng(s))[0][0] for s in range(600)], minlength=3)
    np.testing.assert_allclose(counts / 600, [0.1, 0.6, 0.3], atol=0.06)


# -- real llama.cpp on the embedded GGUF -------------------------------------------------------------

ARITH = [[user(f"What is {a} + {b}? Reply with the sum only.")] for a, b in ((3, 4), (12, 9), (25, 17), (40, 2))]


@pytest.fixture(scope="module")
def policy():
    pytest.importorskip("llama_cpp", reason="the llamacpp policy needs agentloop[llamacpp] (llama-cpp-python)")
    from agentloop.policies.llamacpp import LlamaCppPolicy

    p = LlamaCppPolicy(max_batch_size=8, threads=1)
    yield p
    p.close()


@pytest.fixture(scope="module")
def hf_model():
    from transformers import AutoModelForCausalLM

    from agentloop.policies.default_model import default_model_path

    return AutoModelForCausalLM.from_pretrained(str(default_model_path()), dtype=torch.float32).eval()


def test_greedy_replies_are_the_hf_models_and_logprobs_agree(policy, hf_model) -> None:
    """Same tokens in, the GGUF's own weights: llama.cpp's greedy reply is near-certain under the hf model too."""
    outs = policy.generate(ARITH, SamplingParams(max_new_tokens=16, return_logprobs=True))
    assert len(outs) == 4 and all(o.text.strip() for o in outs)
    gaps = []
    for o in outs:
        assert o.finish_reason in ("stop", "length") and len(o.token_ids) == len(o.logprobs) <= 16
        gaps.append(np.abs(np.array(teacher_forced_logprobs(hf_model, o)) - np.array(o.logprobs)).mean())
    assert float(np.mean(gaps)) < 0.15, gaps


def test_stop_strings_n_samples_and_seeded_sampling(policy) -> None:
    first = policy.generate(ARITH[:1], SamplingParams(max_new_tokens=24, stop=(" ",)))[0]
    assert " " not in first.text and first.finish_reason == "stop"
    hot = SamplingParams(temperature=1.0, max_new_tokens=12, n=3, seed=5)
    a, b = policy.generate(ARITH[:2], hot), policy.generate(ARITH[:2], hot)
    assert len(a) == 6 and [c.text for c in a] == [c.text for c in b]
    other = policy.generate(ARITH[:2], hot.model_copy(update={"seed": 6}))
    assert [c.text for c in other] != [c.text for c in a]
    # a batch of more rows than max_batch_size runs in pieces, in order
    many = policy.generate(ARITH * 3, SamplingParams(max_new_tokens=6))
    assert [c.text for c in many[:4]] == [c.text for c in many[4:8]] == [c.text for c in many[8:]]


def test_a_loaded_adapter_changes_generation_as_peft_does(policy, hf_model, tmp_path) -> None:
    """After load_adapter, llama.cpp's logprobs follow hf + the same adapter, not the base model (q/k layout right)."""
    import copy

    # q/k only: a wrong rotary row order would leave llama.cpp as far from hf + adapter as from the base
    lora = _adapter(copy.deepcopy(hf_model), tmp_path / "ad", targets=("q_proj", "k_proj"), scale=1.5)
    lora.eval()
    sampling = SamplingParams(max_new_tokens=12, return_logprobs=True)
    try:
        policy.load_adapter(str(tmp_path / "ad"))
        outs = policy.generate(ARITH, sampling)
    finally:
        policy.load_adapter(None)
    to_adapted = np.mean([np.abs(np.array(teacher_forced_logprobs(lora, o)) - np.array(o.logprobs)).mean() for o in outs])
    with lora.disable_adapter():
        to_base = np.mean([np.abs(np.array(teacher_forced_logprobs(lora, o)) - np.array(o.logprobs)).mean() for o in outs])
    assert to_adapted < 0.06 and to_adapted < to_base / 3, (to_adapted, to_base)
    base_again = policy.generate(ARITH, SamplingParams(max_new_tokens=12))
    assert [c.text for c in base_again] == [c.text for c in policy.generate(ARITH, SamplingParams(max_new_tokens=12))]
