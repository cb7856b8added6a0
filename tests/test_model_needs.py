"""Shipped configs against their models' declared needs (no download): every config's model is known, and a
model that cannot run as configured is refused when the config is validated, with the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentloop.config import load_config, read_config_file
from agentloop.errors import ConfigError
from agentloop.improve_config import ImproveConfig
from agentloop.model_needs import KNOWN_MODELS, check_model_needs

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
CELLS = sorted((ROOT / "configs" / "efficacy").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS + CELLS, ids=lambda p: p.stem)
def test_every_shipped_config_names_a_known_model_and_meets_its_needs(path):
    raw = read_config_file(path)
    kind = raw.get("kind", "improve")
    raw = raw.get("config", raw)  # efficacy cells hold their run's config under `config:`
    model = raw.get("model")
    assert model is None or model in KNOWN_MODELS, f"{path.name}: declare {model}'s needs in KNOWN_MODELS"
    if kind == "improve":
        load_config(ImproveConfig, None, base=raw)  # runs check_model_needs


def test_a_model_needing_remote_code_is_refused_with_a_native_alternative():
    with pytest.raises(ConfigError, match="codegen2-1B_P .*needs trust_remote_code.*e.g. Salesforce/codegen-2B-mono"):
        load_config(ImproveConfig, ROOT / "configs" / "leti-mbpp-gpu.yaml", ["model=Salesforce/codegen2-1B_P"])


def test_native_tools_need_a_template_that_renders_them():
    with pytest.raises(ValueError, match="no chat template.*tool_prompt: text"):
        check_model_needs("Salesforce/codegen-2B-mono", {"tool_prompt": "native"})
    with pytest.raises(ValueError, match="without tools"):
        check_model_needs("meta-llama/Meta-Llama-3-8B-Instruct", {"tool_prompt": "native"})
    check_model_needs("Qwen/Qwen2.5-7B-Instruct", {"tool_prompt": "native"})
    check_model_needs("some/unknown-model", {"tool_prompt": "native"})  # not in the table: not guessed
    check_model_needs(None, {})
