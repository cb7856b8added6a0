"""Prompt rendering, left truncation and stop-string cutting shared by the hf and vllm policies."""

from __future__ import annotations

import pytest

from agentloop.policies.chat import cut_at_stop, encode_chat, fit_context, render_chat
from agentloop.types import assistant, user


def test_fit_context_keeps_the_end_and_says_so() -> None:
    assert fit_context([1, 2, 3], 10, 4) == ([1, 2, 3], None)
    ids, warning = fit_context(list(range(10)), 8, 3)
    assert ids == [5, 6, 7, 8, 9] and "truncated from the left to 5 tokens" in warning
    assert fit_context(list(range(10)), 8, 100)[0] == [9]  # never empty


def test_cut_at_stop_uses_the_earliest_stop() -> None:
    assert cut_at_stop("a```b\nc", ("\n", "```")) == ("a", True)
    assert cut_at_stop("abc", ("x", "")) == ("abc", False)


class PlainTokenizer:
    """A tokenizer without a chat template: one id per character."""

    chat_template = None

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [ord(ch) for ch in text]}


def test_fallback_transcript_without_a_chat_template() -> None:
    conv = [user("hi"), assistant("yo"), user("again")]
    # an assistant turn is "assistant:" + its text as generated (after the prompt "assistant:") + EOS, if any
    assert render_chat(PlainTokenizer(), conv) == "user: hi\nassistant:yo\nuser: again\nassistant:"
    ids, warning = encode_chat(PlainTokenizer(), conv, 20, 10)
    assert "".join(map(chr, ids)) == "again\nassistant:"[-10:] and warning


def test_chat_template_of_the_default_model() -> None:
    pytest.importorskip("transformers")
    from transformers import AutoTokenizer

    from agentloop.errors import PolicyError
    from agentloop.policies.default_model import default_model_path

    try:
        tok = AutoTokenizer.from_pretrained(default_model_path())
    except PolicyError as e:
        pytest.skip(str(e))
    ids, warning = encode_chat(tok, [user("hi")], 8192, 16)
    text = tok.decode(ids)
    assert warning is None and text.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
    assert ids.count(tok.convert_tokens_to_ids("<|im_start|>")) == 3  # system, user, assistant: no duplicated BOS
