"""Turning conversations into prompt token ids, shared by the ``hf`` and ``vllm`` policies.

Covered: the tokenizer's own chat template (with a plain ``role: content`` fallback for tokenizers
that have none, :func:`render_messages`, which training renders through too), stop-string
cutting, and the context-overflow rule.

Context overflow: a prompt longer than ``context_len - max_new_tokens`` tokens is **truncated from
the left** (the oldest tokens go, the generation prompt at the end is kept) and the returned warning
is recorded on the :class:`~agentloop.types.Completion` (and from there on the turn's
``info["policy_warning"]``). We truncate rather than fail because in multi-attempt episodes the
latest attempt and feedback, which sit at the end, matter most. Not covered: truncating at message
boundaries (the cut may land inside the system prompt or the chat template's markers).

Only the tokenizer is needed here: this module never imports torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agentloop.toolprompt import with_tools_in_system
from agentloop.types import Message


def template_supports_tools(tokenizer: Any) -> bool:
    """Whether the tokenizer's chat template renders a ``tools=`` argument (it mentions ``tools``)."""
    template = getattr(tokenizer, "chat_template", None)
    return isinstance(template, str) and "tools" in template


def render_chat(tokenizer: Any, conversation: Sequence[Message], tools: Sequence[dict[str, Any]] | None = None) -> str:
    """The prompt text for ``conversation``, ending with the assistant's generation prompt.

    ``tools`` (OpenAI function schemas) go through the template's ``tools=`` when it supports them,
    else into the system message in the text form of :mod:`agentloop.toolprompt`.
    """
    if tools and not template_supports_tools(tokenizer):
        conversation = with_tools_in_system(conversation, tools)
        tools = None
    return render_messages(tokenizer, conversation, generation_prompt=True, tools=tools)


def render_messages(tokenizer: Any, conversation: Sequence[Message], generation_prompt: bool,
                    tools: Sequence[dict[str, Any]] | None = None) -> str:
    """The text of ``conversation`` as the model reads it; generation and training both render through this.

    With a chat template: the template (``add_generation_prompt=generation_prompt``). Without one
    (base models): a plain transcript, ``role: content`` lines, with ``assistant:`` as the
    generation prompt and each assistant turn written as ``assistant:`` + its text exactly as it was
    generated + the end-of-sequence token, so that training on a reply trains the very tokens that
    followed the prompt at generation, and the stop.
    """
    messages = [m.to_openai() for m in conversation]
    if getattr(tokenizer, "chat_template", None):
        extra = {"tools": list(tools)} if tools else {}
        return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt,
                                                 **extra))
    eos = getattr(tokenizer, "eos_token", None) or ""
    text = "".join(f"assistant:{m['content'] or ''}{eos}\n" if m["role"] == "assistant"
                   else f"{m['role']}: {m['content'] or ''}\n" for m in messages)
    return text + "assistant:" if generation_prompt else text


def fit_context(ids: list[int], context_len: int, max_new_tokens: int) -> tuple[list[int], str | None]:
    """Left-truncate ``ids`` so that ``len(ids) + max_new_tokens <= context_len``; returns (ids, warning)."""
    budget = max(context_len - max_new_tokens, 1)
    if len(ids) <= budget:
        return ids, None
    warning = (f"prompt of {len(ids)} tokens truncated from the left to {budget} tokens to fit the context of "
               f"{context_len} tokens with max_new_tokens={max_new_tokens}")
    return ids[-budget:], warning


def encode_chat(tokenizer: Any, conversation: Sequence[Message], context_len: int | None,
                max_new_tokens: int, tools: Sequence[dict[str, Any]] | None = None) -> tuple[list[int], str | None]:
    """Prompt token ids of ``conversation`` (chat template applied, left-truncated to fit); returns (ids, warning)."""
    text = render_chat(tokenizer, conversation, tools)
    # The template already wrote the special tokens (BOS, role markers); do not add them twice.
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    if context_len is None:
        return ids, None
    return fit_context(ids, context_len, max_new_tokens)


def encode_chats(tokenizer: Any, conversations: Sequence[Sequence[Message]], context_len: int | None,
                 max_new_tokens: int, tools: Sequence[Sequence[dict[str, Any]] | None] | None = None,
                 ) -> list[tuple[list[int], str | None]]:
    """:func:`encode_chat` for a batch; ``tools`` holds one schema list (or None) per conversation."""
    per_tools = list(tools) if tools is not None else [None] * len(conversations)
    return [encode_chat(tokenizer, conv, context_len, max_new_tokens, t) for conv, t in zip(conversations, per_tools)]


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """``text`` cut before the earliest stop string; returns (text, whether a stop string was found)."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def sample_jobs(encoded: Sequence[tuple[list[int], str | None]], sampling: Any) -> tuple[list[list[int]], int]:
    """(prompts to generate, copies per conversation): once each when greedy (its n replies are equal), else n times."""
    copies = 1 if sampling.temperature == 0 else sampling.n
    return [ids for ids, _ in encoded for _ in range(copies)], copies


def per_conversation(encoded: Sequence[tuple[list[int], str | None]], results: Sequence[Any], copies: int,
                     n: int) -> list[Any]:
    """The ``len(encoded) * n`` completions, sample j of conversation i at ``i * n + j``, with each prompt's warning."""
    out: list[Any] = []
    for i, (_, warning) in enumerate(encoded):
        mine = results[i * copies:(i + 1) * copies] if copies > 1 else list(results[i:i + 1]) * n
        out.extend(c.model_copy(update={"warning": warning}) if warning else c for c in mine)
    return out


def tail_has_stop(tokenizer: Any, ids: Sequence[int], stop: Sequence[str]) -> bool:
    """Whether the decoded end of ``ids`` holds one of the (non-empty) ``stop`` strings.

    A stop string of L characters spans at most L tokens; 4 more cover tokens that decode to nothing.
    """
    stop = [s for s in stop if s]
    if not stop:
        return False
    tail = tokenizer.decode(list(ids[-(max(len(s) for s in stop) + 4):]), skip_special_tokens=True)
    return any(s in tail for s in stop)


def end_of_turn_ids(tokenizer: Any, hf_config: Any) -> list[int]:
    """The model's EOS id(s), plus the end-of-turn markers of common chat templates that the vocabulary has."""
    eos = getattr(hf_config, "eos_token_id", None)
    eos = eos if eos is not None else tokenizer.eos_token_id
    ids: list[int] = [eos] if isinstance(eos, int) else list(eos or [])
    for token in ("<|im_end|>", "<|eot_id|>", "<|endoftext|>"):
        tid = tokenizer.convert_tokens_to_ids(token)
        if isinstance(tid, int) and tid != tokenizer.unk_token_id and tid not in ids:
            ids.append(tid)
    return ids


def completion_from_tokens(tokenizer: Any, prompt: Sequence[int], gen: Sequence[int], logprobs: Sequence[float],
                           eos_ids: Sequence[int], sampling: Any, stopped: bool = False) -> Any:
    """A Completion from a row's generated ids: cut after the first end token, text cut before a stop string.

    ``stopped``: the backend ended the row on a stop string. ``finish_reason`` is ``stop`` for an end
    token or a stop string, else ``length``; with ``sampling.return_logprobs`` the ids and per-token
    logprobs up to and including the end token come along (as vLLM reports them).
    """
    from agentloop.types import Completion

    end = next((k + 1 for k, t in enumerate(gen) if t in eos_ids), len(gen))
    reason = "stop" if stopped or end < len(gen) or (gen and gen[end - 1] in eos_ids) else "length"
    text, found = cut_at_stop(tokenizer.decode(list(gen[:end]), skip_special_tokens=True), sampling.stop)
    if found:
        reason = "stop"
    if not sampling.return_logprobs:
        return Completion(text=text, finish_reason=reason)
    return Completion(text=text, finish_reason=reason, token_ids=tuple(gen[:end]), logprobs=tuple(logprobs[:end]),
                      prompt_token_ids=tuple(prompt))


__all__ = ["completion_from_tokens", "cut_at_stop", "encode_chat", "encode_chats", "end_of_turn_ids", "fit_context",
           "per_conversation", "render_chat", "sample_jobs", "tail_has_stop", "template_supports_tools"]
