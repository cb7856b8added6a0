"""Training examples as text segments that do or do not carry loss, and their tokenisation.

A :class:`TrainExample` is a list of :class:`Segment` s: each is a piece of text with ``train``
True (its tokens carry loss) or False (context only: system prompt, question, feedback, earlier
turns, chat-template headers). Every method builds examples this way, so "which tokens are
trained" is visible in one place and tested on its own:

* SFT / rejection sampling / critique-loop: prompt (context) + reply (trained);
* RISE: the whole multi-turn prefix as context, only the final assistant turn trained;
* LeTI / FAFT: the whole sequence trained (plain LM loss over the feedback-conditioned text);
  LeTI pins its reward token (``cut="never"``) and lets a long feedback be cut first (``cut="first"``).

``weight`` is the per-sequence scalar the objective uses (advantage for REINFORCE, exp(r / tau)
for RISE, 1 for SFT); ``kl_coef`` the per-sequence KL coefficient (SCoRe pins attempt 1 harder).

Token-faithful examples. A reply the policy sampled trains on exactly what the policy saw and did:
the prompt ids it was given at generation time (``Turn.prompt_token_ids``: the chat template
rendered then, earlier attempts and feedback turns included, tokenised once and kept) as context,
and the ids it sampled (``Turn.token_ids``, up to and including the token that ended the reply:
end-of-turn, or the one that completed a stop string) as the trained span. Nothing is decoded and
re-tokenised, so the log-probabilities training computes are those of the sampled tokens in the
sampled context (:func:`turn_example`). Re-rendering instead trains other tokens: the template's
newline after end-of-turn (never sampled), end-of-turn in place of a stop string's tokens or
after a reply cut at max_new_tokens, and other ids for a reply sampled as a split the tokenizer
would not make or cut inside a multi-byte character (``benchmarks/token_faithful.py`` counts it
on the default run: every re-rendered sequence differed there, all at the reply's end). Native
tool schemas, which the old rendered context left out, are in the prompt ids.
Each example trains one reply, whose context is that turn's prompt ids; a later attempt's context
thus holds the earlier attempt as the policy saw it at that turn (the rollout renders the history
as text for each generation). Methods whose training context is not what the policy saw (LeTI's
hindsight reward token, FAFT's feedback block, the critique loop's refinement as an answer to the
original question) render their context and still train the sampled reply ids
(:func:`reply_example`). The rendered path remains for turns without ids: a backend that returns
none (an OpenAI-compatible server other than ``agentloop serve``, the scripted policy), collection
without ``return_logprobs``, text the learner did not sample (RISE's distillation teacher), and
critiques. ``TrainExample.meta["tokens"]`` says which path an example took.

Rendered chat examples are rendered by :func:`agentloop.policies.chat.render_messages`, the same
text the policy sees at generation time (the chat template, or the plain transcript for a tokenizer
without one); the assistant header is context and the reply plus its end-of-turn token is trained
(so the model learns to stop). This module does not import torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field

from agentloop.errors import ConfigError
from agentloop.types import Message, Record, Turn, assistant

__all__ = ["Segment", "TrainExample", "chat_example", "chat_segments", "encode_example", "has_sampled_ids",
           "reply_example", "turn_example"]


Cut = Literal["normal", "first", "never"]


class Segment(Record):
    """A piece of a training sequence; ``train`` says whether its tokens carry loss.

    ``cut`` says what :func:`encode_example` may drop when the sequence is longer than ``max_len``:
    ``"first"`` segments are shortened (from their start) before anything else, ``"never"`` ones are
    kept whole (LeTI's reward token), ``"normal"`` ones lose their start after that (the sequence
    keeps its end, where the trained reply is).
    """

    text: str = ""
    ids: tuple[int, ...] | None = Field(
        default=None, description="The segment's token ids, used as they are (sampled or generation-time ids); "
        "``text`` is then their decoding, for display only. None: the text is tokenised.")
    train: bool = False
    cut: Cut = Field(default="normal", description="Truncation priority: 'first', 'normal' or 'never' (see above).")


class TrainExample(Record):
    """One training sequence with its scalar weight (see the module docstring)."""

    segments: tuple[Segment, ...]
    weight: float = Field(default=1.0, description="Advantage (policy gradient), RWR weight, or 1 (SFT).")
    kl_coef: float = Field(default=0.0, ge=0.0, description="Per-token KL coefficient against the reference policy.")
    group: str | None = Field(default=None, description="Prompt id, for per-prompt baselines and logging.")
    meta: dict[str, Any] = Field(default_factory=dict, description="Where the example came from (method, episode id).")

    @property
    def text(self) -> str:
        return "".join(s.text for s in self.segments)

    @property
    def trained_text(self) -> str:
        return "".join(s.text for s in self.segments if s.train)


TrainTurns = Literal["last", "all", "none"]


def _render(tokenizer: Any, messages: Sequence[Message], generation_prompt: bool) -> str:
    from agentloop.policies.chat import render_messages  # generation's own rendering, template or not

    return render_messages(tokenizer, messages, generation_prompt)


def chat_segments(tokenizer: Any, messages: Sequence[Message], train: TrainTurns = "last") -> list[Segment]:
    """Render ``messages`` with the chat template, marking assistant replies as trained.

    ``train="last"`` trains only the final assistant message (RISE: earlier turns are context),
    ``"all"`` every assistant message, ``"none"`` nothing. The split relies on the template being
    prefix-stable (rendering ``messages[:i]`` is a prefix of rendering ``messages``), which holds
    for ChatML-style templates; a template that is not raises a ConfigError.
    """
    last_assistant = max((i for i, m in enumerate(messages) if m.role == "assistant"), default=-1)
    segments: list[Segment] = []
    done = ""
    for i, m in enumerate(messages):
        trained = m.role == "assistant" and (train == "all" or (train == "last" and i == last_assistant))
        if trained:
            head = _render(tokenizer, messages[:i], generation_prompt=True)
            if not head.startswith(done):
                raise ConfigError("chat template is not prefix-stable; chat_segments cannot split prompt from reply.")
            segments.append(Segment(text=head[len(done):]))
            done = head
        full = _render(tokenizer, messages[: i + 1], generation_prompt=False)
        if not full.startswith(done):
            raise ConfigError("chat template is not prefix-stable; chat_segments cannot split prompt from reply.")
        segments.append(Segment(text=full[len(done):], train=trained))
        done = full
    return _merge([s for s in segments if s.text])


def _merge(segments: list[Segment]) -> list[Segment]:
    out: list[Segment] = []
    for s in segments:
        # Text is merged with text only: tokenising merged text is what the template rendering means.
        if out and out[-1].train == s.train and out[-1].cut == s.cut and out[-1].ids is None and s.ids is None:
            out[-1] = Segment(text=out[-1].text + s.text, train=s.train, cut=s.cut)
        else:
            out.append(s)
    return out


def chat_example(tokenizer: Any, messages: Sequence[Message], *, train: TrainTurns = "last", weight: float = 1.0,
                 kl_coef: float = 0.0, group: str | None = None, **meta: Any) -> TrainExample:
    """A :class:`TrainExample` from a conversation (see :func:`chat_segments`); ``meta["tokens"]`` is "rendered"."""
    return TrainExample(segments=tuple(chat_segments(tokenizer, messages, train)), weight=weight, kl_coef=kl_coef,
                        group=group, meta={"tokens": "rendered", **meta})


def has_sampled_ids(turn: Turn) -> bool:
    """Whether ``turn`` records the ids its reply was sampled as and the prompt ids it was sampled from."""
    return turn.token_ids is not None and turn.prompt_token_ids is not None


def _ids_segment(tokenizer: Any, ids: Sequence[int], train: bool) -> Segment:
    return Segment(text=str(tokenizer.decode(list(ids), skip_special_tokens=False)), ids=tuple(ids), train=train)


def turn_example(tokenizer: Any, turn: Turn, *, weight: float = 1.0, kl_coef: float = 0.0, group: str | None = None,
                 **meta: Any) -> TrainExample:
    """The example of the reply ``turn`` sampled, in the context it was sampled in.

    With ids (:func:`has_sampled_ids`): the generation-time prompt ids as context and the sampled
    ids as the trained span, exactly (see the module docstring). Without: the turn's observation
    and action rendered by the chat template (:func:`chat_example`, only the reply trained).
    """
    if not has_sampled_ids(turn):
        return chat_example(tokenizer, [*turn.observation, assistant(turn.action)], train="last", weight=weight,
                            kl_coef=kl_coef, group=group, **meta)
    segments = (_ids_segment(tokenizer, turn.prompt_token_ids or (), False),
                _ids_segment(tokenizer, turn.token_ids or (), True))
    return TrainExample(segments=segments, weight=weight, kl_coef=kl_coef, group=group,
                        meta={**meta, "tokens": "sampled"})


def reply_example(tokenizer: Any, context: Sequence[Message], turn: Turn, *, weight: float = 1.0,
                  kl_coef: float = 0.0, group: str | None = None, **meta: Any) -> TrainExample:
    """The reply ``turn`` sampled, trained after a ``context`` of the method's making (not what the policy saw).

    The context is rendered by the chat template, ending with the assistant's generation prompt;
    the trained span is the sampled ids when the turn has them (not re-tokenised), else the
    rendered reply. For LeTI/FAFT-style relabelling and the critique loop's "refinement as an
    answer to the original question".
    """
    if turn.token_ids is None:
        return chat_example(tokenizer, [*context, assistant(turn.action)], train="last", weight=weight,
                            kl_coef=kl_coef, group=group, **meta)
    head = _render(tokenizer, context, generation_prompt=True)
    segments = (Segment(text=head), _ids_segment(tokenizer, turn.token_ids, True))
    return TrainExample(segments=segments, weight=weight, kl_coef=kl_coef, group=group,
                        meta={**meta, "tokens": "sampled_reply"})


def encode_example(tokenizer: Any, example: TrainExample, max_len: int) -> tuple[list[int], list[int], bool]:
    """Token ids and the 0/1 loss mask of ``example`` (mask[t] = 1 when token t is trained).

    Segments are tokenised one by one (no special tokens added: the template already wrote them)
    so each token's mask is exact; a segment with ``ids`` is taken as it is (never re-tokenised).
    A sequence longer than ``max_len`` is cut in this order until it fits: the start of each ``cut="first"`` segment (e.g. the head of a long traceback, whose end
    names the error), then tokens from the start of the sequence, skipping ``cut="never"``
    segments (so it keeps its *end*, where the trained reply is, and its pinned tokens). Only when
    the pinned tokens alone exceed ``max_len`` are they cut too (from the start). The third return
    value says whether anything was cut.
    """
    pieces: list[tuple[list[int], int, Cut]] = []
    for seg in example.segments:
        toks = seg.ids if seg.ids is not None else tokenizer(seg.text, add_special_tokens=False)["input_ids"]
        pieces.append((list(toks), int(seg.train), seg.cut))
    over = sum(len(t) for t, _, _ in pieces) - max_len
    cut = over > 0
    for rule in ("first", "normal"):
        for toks, _, kind in pieces:
            if over <= 0:
                break
            if kind == rule:
                drop = min(over, len(toks))
                del toks[:drop]
                over -= drop
    ids = [t for toks, _, _ in pieces for t in toks]
    mask = [m for toks, m, _ in pieces for _ in toks]
    if len(ids) > max_len:
        ids, mask = ids[-max_len:], mask[-max_len:]
    return ids, mask, cut
