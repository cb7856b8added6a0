"""AdapterSync: the freshly trained LoRA adapter reaches the policy each iteration without reloading the base model."""

from __future__ import annotations

import copy
import os
import subprocess
import sys

import pytest

from agentloop.errors import ConfigError
from agentloop.generation.adapters import AdapterSync, AdapterSyncConfig, engine_placement
from agentloop.types import SamplingParams, user

torch = pytest.importorskip("torch")
pytest.importorskip("peft")


def test_placement_rules():
    kwargs, device = engine_placement(AdapterSyncConfig(directory="x"))
    assert kwargs == {"gpu_memory_utilization": 0.35} and device == "cuda:0"
    assert engine_placement(AdapterSyncConfig(directory="x", placement="separate"))[1] == "cuda:1"
    # vLLM's CPU build: a fixed KV cache (a memory share would be a share of the machine's RAM), trainer on cpu
    assert engine_placement(AdapterSyncConfig(directory="x", cpu_kv_cache_gib=2), "cpu") == ({"kv_cache_gib": 2}, "cpu")
    with pytest.raises(ValueError, match="separate"):
        AdapterSyncConfig(directory="x", placement="separate", trainer_device="cuda:0")
    with pytest.raises(ValueError):
        AdapterSyncConfig(directory="x", keep_last=0)
    with pytest.raises(ConfigError, match="load_adapter"):
        AdapterSync(object(), AdapterSyncConfig(directory="x"))


@pytest.fixture(scope="module")
def tiny_lm():
    """A random-init small Llama with the default model's tokenizer (chat template), and a LoRA copy to train."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from agentloop.policies.default_model import default_model_path

    tok = AutoTokenizer.from_pretrained(str(default_model_path()))
    torch.manual_seed(0)
    base = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                                        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                        max_position_embeddings=256, eos_token_id=tok.eos_token_id,
                                        pad_token_id=tok.pad_token_id or tok.eos_token_id))
    trained = get_peft_model(copy.deepcopy(base), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    return base, trained, tok


def _train_lora(model, scale: float) -> None:
    """Stand-in for one training iteration: give every LoRA B matrix new values (B=0 would be a no-op adapter)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.full_like(p, scale))


def test_push_hands_new_adapters_to_the_hf_policy_without_reloading_the_base(tiny_lm, tmp_path):
    from agentloop.policies.hf import HFPolicy

    base, trained, tok = tiny_lm
    policy = HFPolicy.from_model(base, tok)
    embed_ptr = base.get_input_embeddings().weight.data_ptr()
    sampling = SamplingParams(max_new_tokens=4, return_logprobs=True)
    conv = [[user("hello there")]]
    before = policy.generate(conv, sampling)[0]
    sync = AdapterSync(policy, AdapterSyncConfig(directory=str(tmp_path / "adapters"), keep_last=1))

    with pytest.raises(ConfigError, match="LoRA"):
        sync.push(base, 0)
    _train_lora(trained, 0.5)
    first = sync.push(trained, 1)
    assert (first / "adapter_config.json").exists()
    after1 = policy.generate(conv, sampling)[0]
    assert after1.logprobs != before.logprobs  # generation now uses the adapter

    _train_lora(trained, -0.5)
    second = sync.push(trained, 2)
    after2 = policy.generate(conv, sampling)[0]
    assert after2.logprobs != after1.logprobs
    assert not first.exists() and second.exists()  # keep_last=1
    # the policy's adapter weights are the trained ones, on the very same base weights
    served = {n: p for n, p in policy.model.named_parameters() if "lora_B" in n}
    assert served and all(torch.all(p == -0.5) for p in served.values())
    assert policy.model.get_input_embeddings().weight.data_ptr() == embed_ptr


def test_a_push_killed_between_its_renames_is_recovered_by_the_next_sync(tiny_lm, tmp_path, monkeypatch):
    """Re-pushing an iteration's adapter swaps folders; a failure between the two renames keeps the old adapter."""
    from agentloop import runs
    from agentloop.policies.hf import HFPolicy

    base, trained, tok = tiny_lm
    directory = tmp_path / "adapters"
    sync = AdapterSync(HFPolicy.from_model(base, tok), AdapterSyncConfig(directory=str(directory)))
    _train_lora(trained, 0.5)
    path = sync.push(trained, 1)
    files = sorted(p.name for p in path.iterdir())

    def fault(name: str, detail: str = "") -> None:
        if name == "folder.swap":
            raise OSError("injected")

    monkeypatch.setattr(runs, "fault_point", fault)
    with pytest.raises(OSError, match="injected"):
        sync.push(trained, 1)
    assert [p.name for p in directory.iterdir()] == ["adapter-0001"]
    assert sorted(p.name for p in path.iterdir()) == files
    # A kill at that point leaves the adapter aside under .old-NAME-PID; a new sync (the resumed run) restores it.
    os.replace(path, directory / f".old-adapter-0001-{_dead_pid()}")
    AdapterSync(HFPolicy.from_model(base, tok), AdapterSyncConfig(directory=str(directory)))
    assert [p.name for p in directory.iterdir()] == ["adapter-0001"]
    assert sorted(p.name for p in path.iterdir()) == files


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_push_to_vllm_policy(tmp_path):
    """Real vLLM on a GPU: each push becomes a new LoRARequest id on the running engine."""
    pytest.importorskip("vllm")
    if not torch.cuda.is_available():
        pytest.skip("vLLM needs a CUDA GPU")
    from peft import LoraConfig, get_peft_model

    from agentloop.policies.vllm import VLLMPolicy
    from agentloop.training.trainer import load_model

    policy = VLLMPolicy(gpu_memory_utilization=0.3, max_lora_rank=8)
    engine = policy.llm
    model, _ = load_model(None, device="cuda")
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
    sync = AdapterSync(policy, AdapterSyncConfig(directory=str(tmp_path)))
    ids = []
    for it in range(2):
        _train_lora(model, 0.01 * (it + 1))
        sync.push(model, it)
        ids.append(policy._lora.lora_int_id)
        assert policy.generate([[user("2+2=")]], SamplingParams(max_new_tokens=4))[0].text is not None
    assert ids[1] > ids[0] and policy.llm is engine  # same engine: the base model was not reloaded
