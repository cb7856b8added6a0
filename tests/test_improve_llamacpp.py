"""An improve iteration with ``generation.backend: llamacpp``: llama.cpp (real, not mocked) on the embedded GGUF.

llama.cpp generates the collection and the held-out evaluation from the default model's own Q4_1
file; the LoRA trainer runs in this process; after the training phase AdapterSync writes the adapter,
the policy converts it to a GGUF LoRA and llama.cpp applies it. The test checks that llama.cpp then
generates with *that* adapter: its per-token logprobs follow the trained model (transformers + peft),
not the base model.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agentloop.types import SamplingParams
from tests.helpers import adapter_engine_improve_config, mean_gap, teacher_forced_logprobs

pytest.importorskip("llama_cpp", reason="the llamacpp backend needs agentloop[llamacpp] (llama-cpp-python)")
torch = pytest.importorskip("torch")

LORA = {"r": 8, "alpha": 16, "target_modules": ["q_proj", "k_proj", "v_proj", "down_proj"]}


def test_improve_iteration_on_llamacpp_hands_the_trained_adapter_to_llama_cpp(tmp_path: Path) -> None:
    from agentloop.improve import ImproveConfig, ImproveLoop
    from agentloop.registry import make

    cfg = ImproveConfig.model_validate(adapter_engine_improve_config("llamacpp", LORA))
    run = tmp_path / "run"
    loop = ImproveLoop(cfg, run)
    policy = loop.gen_policy
    assert type(policy).__name__ == "LlamaCppPolicy" and policy._adapter is None and loop.generation.copy is None
    obs, _ = make("math/arith-v0", difficulty=1, num_tasks=1000, seed=1).reset(options={"index": 0})
    greedy = SamplingParams(temperature=0.0, max_new_tokens=12, return_logprobs=True)
    before = policy.generate([obs], greedy)[0]
    result = loop.run_all()
    after = policy.generate([obs], greedy)[0]
    model = loop.model
    assert policy._adapter is not None
    loop.close()

    assert (run / "adapters" / "adapter-0001" / "adapter_model.safetensors").exists()
    train_row = result.iterations[1]
    assert train_row["train_steps"] >= 1 and 0 < train_row["adapter_push_s"] < 30
    assert result.n == 4 and len(result.held_out) == 2
    model.eval()
    with model.disable_adapter():
        base_before, base_after = teacher_forced_logprobs(model, before), teacher_forced_logprobs(model, after)
    tuned_after = teacher_forced_logprobs(model, after)
    print(f"\nbefore: |llama.cpp - base| {mean_gap(list(before.logprobs), base_before):.3f}; after: |llama.cpp - adapter| "
          f"{mean_gap(list(after.logprobs), tuned_after):.3f}, |llama.cpp - base| {mean_gap(list(after.logprobs), base_after):.3f}"
          f"; replies {before.text!r} -> {after.text!r}; adapter push {train_row['adapter_push_s']} s")
    assert mean_gap(list(before.logprobs), base_before) < 0.15  # llama.cpp matches the base model before training
    assert mean_gap(base_after, tuned_after) > 0.25  # training moved the model: adapter and base are apart here
    # ... and llama.cpp generates with the trained adapter
    assert mean_gap(list(after.logprobs), tuned_after) < min(0.15, mean_gap(list(after.logprobs), base_after) / 3)
