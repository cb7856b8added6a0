"""agentloop-reasoning-gym: registration, verifier, feedback, and one tiny improve run."""

from __future__ import annotations

import json
import os
import warnings

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the tiny improve run must never reach a model hub

rg = pytest.importorskip("reasoning_gym", reason="the agentloop-reasoning-gym plugin is not installed (scripts/setup.sh)")
pytest.importorskip("agentloop_reasoning_gym", reason="the agentloop-reasoning-gym plugin is not installed (scripts/setup.sh)")

import agentloop  # noqa: E402
from agentloop_reasoning_gym.names import DATASET_NAMES  # noqa: E402
from agentloop.errors import ConfigError  # noqa: E402

SAMPLE = ["rg/basic_arithmetic-v0", "rg/leg_counting-v0", "rg/word_sorting-v0", "rg/graph_color-v0",
          "rg/countdown-v0", "rg/sudoku-v0"]


def test_every_installed_dataset_is_registered_and_listed():
    from reasoning_gym.factory import DATASETS

    assert set(DATASET_NAMES) <= set(DATASETS), "names.py lists datasets this reasoning-gym lacks"
    newer = set(DATASETS) - set(DATASET_NAMES) - {"composite"}
    if newer:  # a newer reasoning-gym than names.py was written for: still usable, not yet registered
        warnings.warn(f"reasoning-gym has datasets not registered as rg/ ids: {sorted(newer)}; update names.py",
                      stacklevel=1)
    ids = set(agentloop.list_envs())
    assert {f"rg/{n}-v0" for n in DATASET_NAMES} <= ids
    spec = agentloop.spec("rg/basic_arithmetic-v0")
    assert spec.source == "agentloop-reasoning-gym"


def test_envs_list_shows_the_plugin_and_check_gold_runs():
    from typer.testing import CliRunner

    from agentloop.cli import app

    listed = CliRunner().invoke(app, ["envs", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = {r["id"]: r for r in json.loads(listed.output)}
    assert rows["rg/leg_counting-v0"]["source"] == "agentloop-reasoning-gym"
    gold = CliRunner().invoke(app, ["envs", "check-gold", "rg/leg_counting-v0", "size=5"])
    assert gold.exit_code == 0 and "5/5 gold solutions pass" in gold.output, gold.output


@pytest.mark.parametrize("env_id", SAMPLE)
def test_sample_passes_check_env(env_id):
    # tests/test_registered_envs.py checks every rg id; this sample keeps the plugin's own suite quick
    agentloop.check_env(agentloop.make(env_id, size=20))


def step(env, index, reply):
    env.reset(options={"index": index})
    _, reward, _, _, info = env.step(reply)
    return reward, info


@pytest.mark.parametrize("env_id", ["rg/basic_arithmetic-v0", "rg/leg_counting-v0", "rg/word_sorting-v0"])
def test_reference_answer_scores_one_with_the_datasets_own_scorer(env_id):
    env = agentloop.make(env_id, size=10, seed=3)
    u = env.unwrapped
    for i in range(3):
        reward, info = step(env, i, "Thinking...\n" + u.gold_reply(u.get_task(i)))
        assert reward == 1.0 and info["success"] and info["score"] == 1.0


def test_wrong_answer_feedback_does_not_leak_oracle_does():
    env = agentloop.make("rg/basic_arithmetic-v0", size=10, seed=3)
    gold = str(env.unwrapped.get_task(0).answer)
    reward, info = step(env, 0, "<answer>not a number</answer>")
    assert reward == 0.0 and not info["success"]
    assert info["feedback"] == "Your answer is incorrect. Check your reasoning and try again."
    assert gold not in info["feedback"] and f"The correct answer is {gold}." in info["oracle_feedback"]


def test_missing_answer_tags_is_a_parse_error():
    env = agentloop.make("rg/basic_arithmetic-v0", size=10)
    reward, info = step(env, 0, "The answer is 4.")
    assert reward == 0.0 and info["parse_error"] == "no <answer> tags" and "<answer>" in info["feedback"]


def test_dataset_without_a_single_answer_says_so_in_oracle():
    env = agentloop.make("rg/graph_color-v0", size=5)
    assert env.unwrapped.gold_reply(env.unwrapped.get_task(0)) is None
    _, info = step(env, 0, "<answer>{}</answer>")
    assert not info["success"] and "no single reference answer" in info["oracle_feedback"]


def test_dataset_config_is_passed_and_bad_config_names_the_fix():
    env = agentloop.make("rg/basic_arithmetic-v0", size=5, config={"min_terms": 2, "max_terms": 2})
    assert env.unwrapped.dataset.config.max_terms == 2
    with pytest.raises(ConfigError, match="rejected the dataset config"):
        agentloop.make("rg/basic_arithmetic-v0", config={"no_such_field": 1})


def test_multi_attempt_with_oracle_feedback_reveals_the_answer_between_attempts():
    env = agentloop.make("rg/basic_arithmetic-v0", size=5, max_attempts=2, feedback="oracle")
    obs, _ = env.reset(seed=0)
    obs, _, terminated, _, _ = env.step("<answer>wrong</answer>")
    assert not terminated and "The correct answer is" in obs[-1].content


@pytest.mark.slow
def test_tiny_improve_run_on_an_rg_env(tmp_path):
    pytest.importorskip("transformers", reason="improve needs the hf extra")
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from agentloop.improve import ImproveConfig, improve
    from agentloop.policies.default_model import default_model_path

    tok = AutoTokenizer.from_pretrained(str(default_model_path()))
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                      tie_word_embeddings=True, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    LlamaForCausalLM(cfg).save_pretrained(tmp_path / "tiny")
    tok.save_pretrained(tmp_path / "tiny")
    config = ImproveConfig.model_validate({
        "model": str(tmp_path / "tiny"), "threads": 1, "iterations": 1, "seed": 0,
        "env": {"id": "rg/basic_arithmetic-v0", "kwargs": {"size": 50}, "train_kwargs": {"seed": 0},
                "eval_kwargs": {"seed": 1}, "train_tasks": 2, "eval_tasks": 2},
        "method": {"name": "rs_sft", "samples_per_task": 2},
        "collect": {"temperature": 1.0, "max_new_tokens": 4, "batch_size": 2},
        "train": {"lr": 1e-3, "batch_size": 2, "dtype": "float32"},
        "eval": {"max_new_tokens": 4, "batch_size": 2},
    })
    result = improve(config, out=tmp_path / "run")
    assert (tmp_path / "run" / "episodes.jsonl").exists() and result.n == 2
