"""Every shipped config in configs/*.yaml runs one tiny iteration end to end.

Each config keeps its method, environment, objective, feedback modes, critic, LoRA and
gradient-checkpointing settings; only the sizes shrink (2 training tasks x 2 samples, 2 held-out
tasks, a few new tokens, batch 2), the model is a tiny random Llama with the default model's
tokenizer, and GPU configs run on the CPU. The tiny model answers nonsense: these runs check that
every config's whole path (collection with its wrappers and critic, the method's examples, the
objective's training step, checkpointing, evaluation and the report) works, not that it learns.
A config whose declared model has no chat template (agentloop.model_needs) runs with a tokenizer
without one too, so its plain-transcript prompts go through generation and training as they would.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from agentloop.config import load_config, read_config_file
from agentloop.improve import ImproveConfig, improve
from agentloop.model_needs import KNOWN_MODELS
from tests.helpers import tiny_model

pytestmark = pytest.mark.slow  # trains (seconds per config); still runs in CI

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
# efficacy cells whose run config goes through the same tiny iteration (their `config:` section)
CELLS = sorted(p for p in (ROOT / "configs" / "efficacy").glob("*.yaml") if p.stem.endswith(("-tools", "-travel-short")))
TRAIN_TASKS, EVAL_TASKS, SAMPLES = 2, 2, 2


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> str:
    """Smaller than conftest's, with a long context (RoPE needs no trained positions): TravelPlanner prompts
    are a few thousand tokens."""
    from agentloop.policies.default_model import default_model_path
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(default_model_path()))
    model = tiny_model(0, vocab=len(tok), hidden=16, layers=1)
    model.config.max_position_embeddings = 8192
    model.config.pad_token_id, model.config.eos_token_id = tok.pad_token_id, tok.eos_token_id
    path = tmp_path_factory.mktemp("tiny-shipped")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def tiny_base_model_dir(tiny_model_dir, tmp_path_factory) -> str:
    """The same tiny model with a tokenizer that has no chat template, as a base model's."""
    import shutil

    from transformers import AutoTokenizer

    path = tmp_path_factory.mktemp("tiny-base") / "model"
    shutil.copytree(tiny_model_dir, path)
    (path / "chat_template.jinja").unlink(missing_ok=True)
    tok = AutoTokenizer.from_pretrained(str(path))
    tok.chat_template = None
    tok.save_pretrained(path)
    assert AutoTokenizer.from_pretrained(str(path)).chat_template is None
    return str(path)


def _declares_no_template(path: Path) -> bool:
    needs = KNOWN_MODELS.get(read_config_file(path).get("model"))
    return needs is not None and not needs.chat_template


def tiny_overrides(path: Path, model: str) -> list[str]:
    """Dotted overrides that shrink ``path``'s config to seconds on a CPU, keeping what it exercises."""
    raw = read_config_file(path)
    train = raw.get("train", {})
    out = [f"model={model}", "device=cpu", "iterations=1", "threads=1", "generation_dtype=float32",
           f"env.train_tasks={TRAIN_TASKS}", f"env.eval_tasks={EVAL_TASKS}", f"method.samples_per_task={SAMPLES}",
           "collect.max_new_tokens=6", "collect.batch_size=4", "eval.max_new_tokens=6", "eval.batch_size=4",
           "train.batch_size=2", "train.epochs=1", "train.max_len=96", "train.dtype=float32"]
    if "micro_batch_size" in train:
        out.append("train.micro_batch_size=1")  # still accumulates over micro-batches, as the config does
    if raw.get("method", {}).get("name") == "score":
        out.append("method.stage1_iterations=1")
    if "step_workers" in raw.get("collect", {}):
        out.append("collect.step_workers=2")
    return out


def _episodes(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "episodes.jsonl").read_text().splitlines()]


def _cell_config(cell: Path, tmp_path: Path) -> Path:
    """An efficacy cell's run config as a config file of its own."""
    import yaml

    path = tmp_path / f"{cell.stem}.yaml"
    path.write_text(yaml.safe_dump(yaml.safe_load(cell.read_text())["config"]))
    return path


@pytest.mark.parametrize("path", CONFIGS + CELLS, ids=lambda p: p.stem if p.parent.name == "configs" else f"efficacy-{p.stem}")
def test_shipped_config_runs_one_tiny_iteration(path, tiny_model_dir, tiny_base_model_dir, tmp_path):
    if path.parent.name == "efficacy":
        path = _cell_config(path, tmp_path)
    model = tiny_base_model_dir if _declares_no_template(path) else tiny_model_dir
    cfg = load_config(ImproveConfig, path, tiny_overrides(path, model))
    shipped = load_config(ImproveConfig, path)
    # the shrunk config is still the shipped one in everything but size and device
    assert cfg.method.model_dump(exclude={"samples_per_task", "stage1_iterations"}) == \
        shipped.method.model_dump(exclude={"samples_per_task", "stage1_iterations"})
    assert (cfg.env.id, cfg.eval.max_attempts, cfg.eval.protocol_list(), cfg.train.lora) == \
        (shipped.env.id, shipped.eval.max_attempts, shipped.eval.protocol_list(), shipped.train.lora)

    run = tmp_path / "run"
    result = improve(cfg, out=run)

    assert [r["iteration"] for r in result.iterations] == [0, 1]
    assert (run / "checkpoints" / "iter-1").is_dir()
    episodes = _episodes(run)
    collected = [e for e in episodes if e["metadata"]["phase"] == "collect"]
    head = cfg.eval.protocol_list()[0].name  # the headline protocol's episodes (not the shared first attempts)
    evaluated = [e for e in episodes if e["metadata"]["phase"] == "eval" and e["metadata"].get("mode") != "first"
                 and e["metadata"].get("protocol", head) == head]
    assert len(collected) == TRAIN_TASKS * SAMPLES
    assert len(evaluated) == 2 * EVAL_TASKS  # the starting and the final model
    # no episode failed: every one has at least one turn and no recorded error
    assert [e.get("error") for e in episodes] == [None] * len(episodes)
    assert all(e["turns"] for e in episodes)
    # the method's own collection wrappers ran
    turns = [len(e["turns"]) for e in collected]
    method = cfg.method
    if method.name == "score":
        assert turns == [2] * len(collected)  # retry mode: always two attempts
    elif method.name == "rise":
        assert max(turns) <= method.max_attempts
    elif method.name == "critique_loop":
        assert max(turns) <= method.max_attempts
    else:
        assert turns == [1] * len(collected)
    # the evaluation ran the configured number of attempts' worth of machinery
    held_out = result.iterations[-1]["held_out"]
    assert held_out["max_attempts"] == cfg.eval.max_attempts == len(held_out["acc_by_attempt"])
    if cfg.eval.max_attempts > 1:
        assert held_out["delta_t1_t2"] is not None and held_out["delta_i_to_c"] is not None
    # the report agrees with the recorded evaluation episodes
    final = [e for e in evaluated if e["metadata"]["iteration"] == 1]
    first_turn_ok = [bool(e["turns"][0].get("success")) for e in final]
    assert held_out["acc_by_attempt"][0]["value"] == pytest.approx(sum(first_turn_ok) / len(final))
    row = result.iterations[1]
    steps = math.ceil(row["train_examples"] / cfg.train.batch_size)
    assert row["train_steps"] == steps and (steps == 0 or math.isfinite(row["train_loss_last"]))
