"""The improve loop's generation section: config rules, Ray collection, adapter sync (hf standing in for vLLM).

Uses the tiny random model (tests/conftest.py) and config helper (tests/helpers.py): these tests check the
machinery (which engine runs the episodes, which weights generation uses), not learning.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest
from pydantic import ValidationError

from agentloop.improve import ImproveConfig, ImproveLoop, improve
from tests.helpers import improve_config, run_keys

ROOT = Path(__file__).resolve().parents[1]
LORA = {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}


def _with(model: str, generation: dict, **extra) -> ImproveConfig:
    cfg = improve_config(model, **extra)
    return ImproveConfig.model_validate({**cfg, "generation": generation})


# -- config rules ---------------------------------------------------------------------------------
@pytest.mark.parametrize("generation, extra, match", [
    ({"backend": "vllm"}, {}, "needs train.lora"),
    ({"sync": "adapter"}, {}, "needs train.lora"),
    ({"backend": "vllm", "sync": "copy"}, {"train": {"lora": LORA}}, "cannot take in-memory weights"),
    ({"backend": "vllm", "vllm_kwargs": {"max_lora_rank": 8}}, {"train": {"lora": {**LORA, "r": 32}}},
     "below train.lora.r"),
    ({"distributed": {"address": "local", "generation": "per_node"}}, {}, "per_node is not possible"),
    ({"distributed": {"address": "not an address!"}}, {}, "must be null"),
    ({"adapters": {"placement": "separate", "trainer_device": "cuda:0"}}, {}, "another trainer_device"),
    ({"backend": "sglang"}, {}, "backend"),
])
def test_generation_config_rules(generation, extra, match):
    with pytest.raises(ValidationError, match=match):
        _with("m", generation, **extra)


def test_vllm_backend_on_cpu_is_a_valid_config():
    # vLLM's CPU build runs the engine next to a CPU trainer (tests/test_improve_vllm_cpu.py runs it)
    cfg = _with("m", {"backend": "vllm"}, train={"lora": LORA}, device="cpu")
    assert cfg.generation.backend == "vllm" and cfg.generation.adapter_sync and cfg.device == "cpu"


def test_vllm_backend_without_vllm_says_how_to_get_the_cpu_build(tmp_path):
    import importlib.util

    from agentloop.errors import ConfigError

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here: tests/test_improve_vllm_cpu.py runs the backend instead")
    cfg = _with("m", {"backend": "vllm"}, train={"lora": LORA}, device="cpu")
    with pytest.raises(ConfigError, match=r"scripts/setup-vllm-cpu\.sh.*\.venv-vllm/bin/agentloop"):
        ImproveLoop(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()  # refused before anything was made or loaded


def test_generation_defaults_keep_the_single_process_hf_path():
    cfg = ImproveConfig.model_validate(improve_config("m"))
    g = cfg.generation
    assert g.backend == "hf" and not g.adapter_sync and g.distributed.address is None
    vllm = _with("m", {"backend": "vllm"}, train={"lora": LORA})
    assert vllm.generation.adapter_sync
    from agentloop.config import load_config

    loaded = load_config(ImproveConfig, ROOT / "configs" / "default.yaml",
                         ["generation.distributed.address=local", "generation.distributed.num_workers=3"])
    assert loaded.generation.distributed.num_workers == 3


# -- Ray collection -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}})
    yield ray
    ray.shutdown()


def test_ray_collection_records_the_same_episodes_as_one_process(tiny_model_dir, ray_local, tmp_path):
    single = tmp_path / "single"
    improve(ImproveConfig.model_validate(improve_config(tiny_model_dir, iterations=1)), out=single)
    dist = {"address": "local", "num_workers": 2, "episodes_per_worker": 4}
    ray_run = tmp_path / "ray"
    loop = ImproveLoop(_with(tiny_model_dir, {"distributed": dist}, iterations=1), ray_run)
    engine = loop.ray_engine
    try:
        result = loop.run_all()
        # every episode of every phase (eval 0, collect 1, eval 1) ran on the one set of worker actors
        assert engine.episodes_run == 2 * 5 + 6 * 2
    finally:
        loop.close()
    assert Counter(run_keys(ray_run)) == Counter(run_keys(single))  # 2 evaluations x 5 + 6 tasks x 2 samples, once each
    assert len(run_keys(ray_run)) == 2 * 5 + 6 * 2 and result.n == 5
    assert (ray_run / "checkpoints" / "iter-1").exists()
    # the engine closed its actors at the end (the fixture's Ray instance stays up): their CPUs are free again
    deadline = time.time() + 30
    while ray_local.available_resources().get("CPU", 0) < 2 and time.time() < deadline:
        time.sleep(0.2)
    assert ray_local.is_initialized() and ray_local.available_resources().get("CPU", 0) == 2

    # resume over Ray after a finished run (improve() closes the engine itself): nothing re-run, metrics only
    again = improve(_with(tiny_model_dir, {"distributed": dist}, iterations=1), out=ray_run, resume=True)
    assert len(run_keys(ray_run)) == 2 * 5 + 6 * 2 and len(again.iterations) == 2


# -- adapter sync (the vllm path's wiring, with the hf policy as the engine) ----------------------
def _lora_b(model) -> dict[str, object]:
    return {n.replace(".default", ""): p.detach().float().clone() for n, p in model.named_parameters() if "lora_B" in n}


def _assert_serves_trained_adapter(loop) -> None:
    import torch

    served, trained = _lora_b(loop.gen_policy.model), _lora_b(loop.model)
    assert served and set(served) == set(trained)
    assert any(float(t.abs().max()) > 0 for t in trained.values())  # training moved the adapter off B=0
    # the engine holds the trained adapter (saved float32, applied to the engine's base weights)
    assert all(torch.allclose(served[k], trained[k]) for k in trained)


def test_adapter_sync_pushes_each_trained_adapter_to_the_engine(tiny_model_dir, tmp_path):
    pytest.importorskip("peft")
    # faft trains on every episode (feedback-conditioned), so the tiny model's wrong answers still train the adapter
    cfg = _with(tiny_model_dir, {"sync": "adapter", "adapters": {"keep_last": 1}}, method={"name": "faft", "samples_per_task": 2, "success_feedback": "Your final answer is correct."},
                train={"lr": 1e-2, "batch_size": 4, "dtype": "float32", "lora": LORA})
    run = tmp_path / "run"
    loop = ImproveLoop(cfg, run)
    assert loop.generation.copy is None  # no in-memory generation copy: the engine was built from the base folder
    embed = loop.gen_policy.model.get_input_embeddings().weight.data_ptr()
    result = loop.run_all()
    loop.close()
    assert len(run_keys(run)) == 3 * 5 + 2 * 6 * 2 and result.n == 5
    assert sorted(p.name for p in (run / "adapters").iterdir()) == ["adapter-0002"]  # keep_last=1
    assert (run / "adapters" / "adapter-0002" / "adapter_config.json").exists()
    _assert_serves_trained_adapter(loop)
    assert loop.gen_policy.model.get_input_embeddings().weight.data_ptr() == embed  # base never reloaded

    # resume after the finished run: the fresh engine starts from the base folder and gets the restored adapter
    resumed = ImproveLoop(cfg, run, resume=True)
    assert resumed.start == 3
    _assert_serves_trained_adapter(resumed)
    resumed.close()


def test_vllm_backend_runs_the_loop(tmp_path):
    """Real vLLM on a GPU: one engine for the whole run, a new LoRARequest after each training phase."""
    pytest.importorskip("vllm")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("vLLM needs a CUDA GPU")
    cfg = _with(None, {"backend": "vllm", "vllm_kwargs": {"max_model_len": 1024}},
                train={"lr": 1e-4, "batch_size": 4, "lora": {"r": 8, "alpha": 16}}, device="cuda")
    loop = ImproveLoop(cfg, tmp_path / "run")
    engine = loop.gen_policy.llm
    result = loop.run_all()
    loop.close()
    assert result.n == 5 and loop.gen_policy.llm is engine
    assert loop.gen_policy._lora is not None and loop.gen_policy._lora.lora_int_id == 2
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [0, 1, 2]
