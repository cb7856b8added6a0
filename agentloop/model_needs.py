"""What known models need from agentloop, checked from a table before anything is downloaded.

A config names its model by hub id. Whether that model can run as written (does its tokenizer
have a chat template, do its templates render tools, does it need the hub repository's own
modelling code) would otherwise show only after a download of gigabytes, as a crash in the middle
of the first iteration. :data:`KNOWN_MODELS` declares these facts for the ids the shipped configs
use (read from each model's card and ``tokenizer_config.json``); :func:`check_model_needs`, run by
``ImproveConfig``'s validation, compares a config with them. Ids not in the table (local folders,
other hub ids) are not checked: the table is a list of facts, not a guess.

A model without a chat template runs: generation and training both render prompts through
:func:`agentloop.policies.chat.render_messages`, whose plain transcript is the fallback.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["KNOWN_MODELS", "ModelNeeds", "check_model_needs"]


class ModelNeeds(BaseModel):
    """The declared capabilities of one hub model id."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    chat_template: bool = Field(description="The tokenizer ships a chat template (else prompts are a plain transcript).")
    tools_in_template: bool = Field(default=False, description="The chat template renders a tools= argument.")
    trust_remote_code: bool = Field(default=False, description="Loading needs the repository's own modelling code.")
    note: str = Field(default="", description="What kind of model it is, for error messages.")
    alternative: str = Field(default="", description="A model of the same kind without this one's obstacle.")


KNOWN_MODELS: dict[str, ModelNeeds] = {
    "HuggingFaceTB/SmolLM2-135M-Instruct": ModelNeeds(chat_template=True, note="the embedded default model"),
    "Qwen/Qwen2.5-7B-Instruct": ModelNeeds(chat_template=True, tools_in_template=True, note="instruct model"),
    "Qwen/Qwen2.5-Coder-1.5B-Instruct": ModelNeeds(chat_template=True, tools_in_template=True, note="instruct model"),
    "meta-llama/Meta-Llama-3-8B-Instruct": ModelNeeds(chat_template=True, note="instruct model (gated: needs a token)"),
    "mistralai/Mistral-7B-Instruct-v0.2": ModelNeeds(chat_template=True, note="instruct model"),
    "Salesforce/codegen-2B-mono": ModelNeeds(chat_template=False, note="base code model (the LeTI paper's)"),
    "Salesforce/codegen-350M-mono": ModelNeeds(chat_template=False, note="base code model (the LeTI paper's)"),
    "Salesforce/codegen2-1B_P": ModelNeeds(chat_template=False, trust_remote_code=True, note="base code model",
                                           alternative="Salesforce/codegen-2B-mono"),
}


def check_model_needs(model: str | None, env_kwargs: Mapping[str, Any] = ()) -> None:
    """Raise ValueError naming the fix when ``model`` (a hub id in :data:`KNOWN_MODELS`) cannot run this config.

    ``env_kwargs`` are the environment's constructor arguments (both splits merged): a tool
    environment with ``tool_prompt: native`` needs a chat template that renders tools.
    """
    needs = KNOWN_MODELS.get(model) if model is not None else None
    if needs is None:
        return
    if needs.trust_remote_code:
        instead = f", e.g. {needs.alternative}" if needs.alternative else ""
        raise ValueError(f"model {model} ({needs.note}) needs trust_remote_code: its modelling code lives in the hub "
                         "repository, and agentloop loads models with transformers' own code only. Choose a model "
                         f"transformers supports natively{instead}.")
    if dict(env_kwargs).get("tool_prompt") == "native" and not needs.tools_in_template:
        what = "has no chat template" if not needs.chat_template else "has a chat template without tools"
        raise ValueError(f"env tool_prompt=native hands tool schemas to the chat template, but model {model} {what}; "
                         "set env.kwargs.tool_prompt: text (the schemas go into the system message) or choose a "
                         "model whose template renders tools.")
