"""Checkpoints written by Trainer.save load with plain transformers / peft and serve with `agentloop serve`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentloop.training.data import Segment, TrainExample
from agentloop.training.trainer import LoraSettings, TrainConfig, Trainer, load_model
from tests.helpers import serve_process

CHAT = [{"role": "user", "content": "What is 2+3?"}]
EXAMPLES = [TrainExample(segments=(Segment(text=f"q{i} "), Segment(text=f"answer {i}", train=True))) for i in range(4)]


@pytest.fixture()
def base_dir(tiny_model, tokenizer, tmp_path) -> Path:
    """A tiny random Llama with the default model's tokenizer (and chat template), saved as a base model."""
    path = tmp_path / "base"
    tiny_model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def train_and_save(model, tokenizer, out: Path, **config) -> Trainer:
    trainer = Trainer(model, tokenizer, TrainConfig(lr=1e-2, batch_size=2, dtype="float32", **config))
    trainer.fit(EXAMPLES, objective="sft")
    trainer.save(out, extra={"iteration": 1})
    return trainer


def greedy(model, tokenizer, n: int = 6) -> tuple[list[int], list[float]]:
    """Greedy tokens from the chat prompt, and the first step's logits (to tell close models apart)."""
    import torch

    ids = tokenizer.apply_chat_template(CHAT, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id, output_logits=True, return_dict_in_generate=True)
    return out.sequences[0, ids["input_ids"].shape[1]:].tolist(), out.logits[0][0].tolist()


def same(a: tuple[list[int], list[float]], b: tuple[list[int], list[float]]) -> bool:
    return a[0] == b[0] and a[1] == pytest.approx(b[1], abs=1e-4)


def assert_tokenizer_travels(ckpt: Path, tokenizer) -> None:
    from transformers import AutoTokenizer

    loaded = AutoTokenizer.from_pretrained(ckpt)
    assert loaded.chat_template == tokenizer.chat_template
    rendered = loaded.apply_chat_template(CHAT, add_generation_prompt=True, tokenize=False)
    assert rendered == tokenizer.apply_chat_template(CHAT, add_generation_prompt=True, tokenize=False)
    assert "<|im_start|>assistant" in rendered


def test_full_checkpoint_loads_and_generates_with_plain_transformers(base_dir, tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM

    model, tok = load_model(base_dir, gradient_checkpointing=True)
    ckpt = tmp_path / "run" / "checkpoints" / "iter-1"
    trainer = train_and_save(model, tok, ckpt, gradient_checkpointing=True)
    trainer.model.config.use_cache = True  # compare generations with the cache on both sides
    expected = greedy(trainer.model, tok)

    loaded = AutoModelForCausalLM.from_pretrained(ckpt).eval()
    assert same(greedy(loaded, tok), expected)
    config = json.loads((ckpt / "config.json").read_text())
    assert config["use_cache"] is True  # gradient checkpointing's training-only setting is not exported
    assert (ckpt / "generation_config.json").exists()
    assert_tokenizer_travels(ckpt, tokenizer)
    assert "AutoModelForCausalLM.from_pretrained" in (ckpt / "README.md").read_text()
    assert json.loads((ckpt / "trainer_state.json").read_text())["iteration"] == 1


def test_lora_checkpoint_loads_with_peft_and_transformers(base_dir, tokenizer, tmp_path, monkeypatch):
    from peft import AutoPeftModelForCausalLM, PeftModel
    from transformers import AutoModelForCausalLM

    monkeypatch.chdir(tmp_path)  # the base given relatively, as `--model base` would
    model, tok = load_model("base", lora=LoraSettings(r=4, alpha=8))
    ckpt = tmp_path / "run" / "checkpoints" / "iter-1"
    trainer = train_and_save(model, tok, ckpt)
    expected = greedy(trainer.model, tok)
    monkeypatch.chdir(ckpt.parent)  # loading elsewhere still finds the base

    adapter = json.loads((ckpt / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str(base_dir.resolve())
    assert not (ckpt / "model.safetensors").exists()  # the adapter only

    with_peft = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), ckpt).eval()
    assert same(greedy(with_peft, tok), expected)
    assert same(greedy(AutoPeftModelForCausalLM.from_pretrained(ckpt).eval(), tok), expected)
    assert same(greedy(AutoModelForCausalLM.from_pretrained(ckpt).eval(), tok), expected)  # transformers' peft integration
    assert not same(greedy(AutoModelForCausalLM.from_pretrained(base_dir).eval(), tok), expected)  # the adapter matters
    assert_tokenizer_travels(ckpt, tokenizer)
    readme = (ckpt / "README.md").read_text()
    assert f"base_model: {base_dir.resolve()}" in readme and "AutoPeftModelForCausalLM" in readme

    # agentloop's own loader (what `agentloop serve --model <ckpt>` and `eval --policy hf` use) takes the
    # adapter folder as the model: the base comes from its adapter_config.json
    from agentloop.policies.hf import HFPolicy
    from agentloop.types import SamplingParams, user

    as_model = HFPolicy(model=str(ckpt), dtype="float32")
    as_adapter = HFPolicy(model=str(base_dir), adapter=str(ckpt), dtype="float32")
    sampling = SamplingParams(temperature=0.0, max_new_tokens=6)
    conv = [[user("What is 2+3?")]]
    assert as_model.generate(conv, sampling)[0].text == as_adapter.generate(conv, sampling)[0].text


@pytest.mark.slow
def test_agentloop_serve_serves_a_checkpoint(base_dir, tmp_path):
    from agentloop.policies.openai_compat import OpenAIPolicy
    from agentloop.types import SamplingParams, user

    model, tok = load_model(base_dir)
    ckpt = tmp_path / "run" / "checkpoints" / "iter-1"
    train_and_save(model, tok, ckpt)
    with serve_process("--model", str(ckpt), "--kwargs", '{"dtype": "float32"}') as url:
        with OpenAIPolicy(base_url=f"{url}/v1") as policy:
            assert policy.model_id() == "iter-1"
            [c] = policy.generate([[user("What is 2+3?")]], SamplingParams(max_new_tokens=4, temperature=0.0))
        assert c.finish_reason in ("stop", "length")
