"""The vllm policy: a clear install hint where vLLM is absent; real generation and LoRA swaps where it is present."""

from __future__ import annotations

import importlib.util

import pytest

from agentloop.errors import PolicyError
from agentloop.types import SamplingParams, user

HAS_VLLM = importlib.util.find_spec("vllm") is not None


def test_registered_and_importable_without_vllm() -> None:
    from agentloop.policies import vllm as module
    from agentloop.registry import policies

    assert policies.spec("vllm").load() is module.VLLMPolicy


@pytest.mark.skipif(HAS_VLLM, reason="vLLM is installed: the missing-package message cannot be observed")
def test_missing_vllm_says_how_to_install() -> None:
    from agentloop.registry import make_policy

    with pytest.raises(PolicyError, match=r"pip install 'agentloop\[vllm\]'"):
        make_policy("vllm")


@pytest.mark.slow
@pytest.mark.skipif(not HAS_VLLM, reason="vLLM is not installed (optional extra agentloop[vllm])")
def test_vllm_generates_with_logprobs_and_swaps_adapters(tmp_path) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("vLLM needs a GPU here")
    from agentloop.policies.vllm import VLLMPolicy

    policy = VLLMPolicy(gpu_memory_utilization=0.3)
    out = policy.generate([[user("What is 2+3?")]] * 2, SamplingParams(max_new_tokens=8, n=2, return_logprobs=True))
    assert len(out) == 4 and all(len(c.token_ids) == len(c.logprobs) > 0 for c in out)
    first = policy._lora
    with pytest.raises(PolicyError, match="adapter_config.json"):
        policy.load_adapter(str(tmp_path))
    assert policy._lora is first
