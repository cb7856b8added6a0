"""LeTI: learning from textual feedback (Wang et al. 2023; docs/methods.md section 3).

Training sequence (one per sampled solution):
``{<|good|> or <|bad|>}{<|lang_feedback|>FEEDBACK<|/lang_feedback|> if failed}{PROMPT}{SOLUTION}``
where FEEDBACK is the environment's feedback (the interpreter's error, the failing test, a
timeout). The reward and feedback tokens are new special tokens added to the tokenizer (and the
embedding matrix resized). Loss: the plain LM loss over the whole sequence (every token trained,
padding masked). At inference (collection and evaluation) the prompt is conditioned on
``<|good|>``. ``textual_feedback: false`` is the paper's binary-feedback ablation (no feedback block).

Tokens: the solution is trained as the ids the policy sampled (``Turn.token_ids``); the relabelled
prompt around it is rendered by the chat template, since the policy saw ``<|good|>`` there, not the
hindsight reward token (:mod:`agentloop.training.data`).

Placement (a documented choice): the conditioning block is written at the start of the first
user message rather than before the chat template's system header, so the same text reaches the
model through any policy backend's chat formatting.

Regulariser (``regulariser``): the paper mixes every step 1:1 with a batch of general text, trained with
the plain LM loss, so that fine-tuning on the model's own samples does not wear away what pre-training
taught. Here ``regulariser_ratio`` x (number of LeTI sequences) chunks of ``regulariser_chars`` characters
are drawn from a text source and added to the iteration's examples; the trainer's seeded shuffle mixes
them into the steps (1:1 in expectation per step, not paired batches: a choice the paper leaves to the
trainer). Sources: ``python-stdlib``, the running interpreter's own standard-library modules (general
Python code that every install ships: the only code corpus available offline here, not the paper's), or
a path to a text file or a folder of ``.py``/``.txt``/``.md`` files. The draw is seeded by the
iteration's episode ids, so a resumed run draws the same chunks.
"""

from __future__ import annotations

import hashlib
import random
import sysconfig
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from agentloop.algorithms.base import Algorithm, MethodConfig, usable
from agentloop.errors import ConfigError
from agentloop.training.data import Segment, TrainExample, chat_segments
from agentloop.types import Episode, Message, assistant

__all__ = ["BAD", "FEEDBACK_CLOSE", "FEEDBACK_OPEN", "GOOD", "LeTI", "LeTIConfig", "add_reward_tokens",
           "leti_conversation", "leti_example", "regulariser_chunks"]

GOOD, BAD = "<|good|>", "<|bad|>"
FEEDBACK_OPEN, FEEDBACK_CLOSE = "<|lang_feedback|>", "<|/lang_feedback|>"
SPECIAL_TOKENS = (GOOD, BAD, FEEDBACK_OPEN, FEEDBACK_CLOSE)


class LeTIConfig(MethodConfig):
    """LeTI settings."""

    name: Literal["leti"] = "leti"
    textual_feedback: bool = Field(default=True, description="False = binary-feedback ablation (reward token only).")
    max_feedback_chars: int = Field(default=1000, ge=0, description="Feedback is cut to its last N characters.")
    regulariser: str | None = Field(
        default=None, description="General-text source mixed into training (the paper's regulariser): "
        "'python-stdlib' or a path to a text file or folder; None = no regulariser. See the module docstring.")
    regulariser_ratio: float = Field(default=1.0, gt=0.0, le=8.0,
                                     description="Regulariser chunks per LeTI sequence (1 = the paper's 1:1).")
    regulariser_chars: int = Field(default=1200, ge=64, description="Characters per regulariser chunk (whole lines).")

    def check(self, improve_config: Any) -> None:
        if improve_config.train.lora is not None:
            raise ValueError("method.name=leti with train.lora set: LeTI adds reward tokens whose new embeddings must be "
                             "trained, which a LoRA adapter does not do; use full fine-tuning (train.lora: null).")


def add_reward_tokens(tokenizer: Any, model: Any = None) -> int:
    """Add LeTI's special tokens (idempotent) and resize ``model``'s embeddings; returns how many were new."""
    missing = [t for t in SPECIAL_TOKENS if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_special_tokens({"additional_special_tokens": missing}, replace_extra_special_tokens=False)
    if model is not None and model.get_input_embeddings().weight.shape[0] < len(tokenizer):
        model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    return len(missing)


def _prefix(success: bool, feedback: str | None, textual: bool) -> str:
    if success:
        return GOOD
    if textual and feedback:
        return f"{BAD}{FEEDBACK_OPEN}{feedback}{FEEDBACK_CLOSE}"
    return BAD


def leti_conversation(prompt: Sequence[Message], prefix: str) -> list[Message]:
    """The prompt with ``prefix`` written at the start of its first user message."""
    out, done = [], False
    for m in prompt:
        if m.role == "user" and not done:
            m, done = m.model_copy(update={"content": prefix + m.content}), True
        out.append(m)
    return out


def leti_example(tokenizer: Any, prompt: Sequence[Message], solution: str, success: bool, feedback: str | None,
                 textual: bool = True, max_feedback_chars: int = 1000, group: str | None = None,
                 solution_ids: Sequence[int] | None = None) -> TrainExample:
    """The feedback-conditioned sequence of one sampled solution; every token is trained.

    When the sequence is longer than the trainer's ``max_len`` the feedback text is cut first (its
    start; the end of a traceback names the error) and the reward and feedback-delimiter tokens
    never are (see :func:`~agentloop.training.data.encode_example`). ``solution_ids``: the ids the
    policy sampled the solution as; they are the solution's tokens (after the rendered, relabelled
    prompt and the assistant header) instead of the re-rendered ``solution`` text.
    """
    fb = (feedback or "")[-max_feedback_chars:] if max_feedback_chars else ""
    prefix = _prefix(success, fb, textual)
    conversation = leti_conversation(prompt, prefix)
    if solution_ids is None:
        text = "".join(s.text for s in chat_segments(tokenizer, [*conversation, assistant(solution)], train="none"))
        reply: list[Segment] = []
    else:
        from agentloop.policies.chat import render_messages  # generation's rendering, template or not

        text = render_messages(tokenizer, conversation, generation_prompt=True)
        reply = [Segment(text=str(tokenizer.decode(list(solution_ids), skip_special_tokens=False)),
                         ids=tuple(solution_ids), train=True)]
    meta = {"success": success, "tokens": "rendered" if solution_ids is None else "sampled_reply"}
    at = text.find(prefix)
    if at < 0:  # a template that rewrote the user message: no pinning possible, train the text as is
        return TrainExample(segments=(Segment(text=text, train=True), *reply), group=group, meta=meta)
    head, reward, tail = text[:at], prefix[: len(BAD if not success else GOOD)], text[at + len(prefix):]
    pieces = [Segment(text=head, train=True), Segment(text=reward, train=True, cut="never")]
    if prefix != reward:  # <|lang_feedback|>FEEDBACK<|/lang_feedback|>
        pieces += [Segment(text=FEEDBACK_OPEN, train=True, cut="never"), Segment(text=fb, train=True, cut="first"),
                   Segment(text=FEEDBACK_CLOSE, train=True, cut="never")]
    pieces += [Segment(text=tail, train=True), *reply]
    return TrainExample(segments=tuple(p for p in pieces if p.text or p.ids), group=group, meta=meta)


def _source_files(source: str) -> list[Path]:
    if source == "python-stdlib":
        return sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))
    path = Path(source).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.suffix in (".py", ".txt", ".md") and p.is_file())
    raise ConfigError(f"method.regulariser: {source!r} is neither 'python-stdlib' nor an existing file or folder; "
                      "give a text file or a folder of .py/.txt/.md files.")


def regulariser_chunks(source: str, chars: int) -> list[str]:
    """The source's text cut into consecutive pieces of whole lines, each at most ``chars`` long (a longer
    line is its own piece, cut at ``chars``); blank pieces are dropped."""
    chunks: list[str] = []
    for f in _source_files(source):
        piece = ""
        for line in f.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True):
            if piece and len(piece) + len(line) > chars:
                chunks.append(piece)
                piece = ""
            piece += line[:chars]
        chunks.append(piece)
    chunks = [c for c in chunks if c.strip()]
    if not chunks:
        raise ConfigError(f"method.regulariser: {source!r} holds no text; point it at files with content.")
    return chunks


class LeTI(Algorithm):
    """See the module docstring."""

    objective = "sft"

    def __init__(self, config: LeTIConfig):
        super().__init__(config)
        self._chunks: list[str] | None = None

    def setup(self, model: Any, tokenizer: Any) -> None:
        add_reward_tokens(tokenizer, model)

    def condition(self, conversation: Sequence[Message]) -> list[Message]:
        return leti_conversation(conversation, GOOD)

    def examples(self, episodes: Sequence[Episode], tokenizer: Any) -> list[TrainExample]:
        out = []
        for ep in usable(episodes):
            turn = ep.turns[0]
            feedback = str(turn.info.get("feedback", "") or "")
            out.append(leti_example(tokenizer, turn.observation, turn.action, bool(turn.success), feedback,
                                    self.config.textual_feedback, self.config.max_feedback_chars, group=ep.task_id,
                                    solution_ids=turn.token_ids))
        return out + self.regulariser_examples(episodes, len(out))

    def regulariser_examples(self, episodes: Sequence[Episode], n_leti: int) -> list[TrainExample]:
        """``regulariser_ratio * n_leti`` general-text chunks (plain LM loss), drawn with a seed made from the
        episodes' ids (see the module docstring); none without a regulariser."""
        c = self.config
        if c.regulariser is None or n_leti == 0:
            return []
        if self._chunks is None:
            self._chunks = regulariser_chunks(c.regulariser, c.regulariser_chars)
        seed = hashlib.sha256("\n".join(sorted(str(e.id) for e in episodes)).encode()).hexdigest()
        rng = random.Random(seed)
        n = max(1, round(c.regulariser_ratio * n_leti))
        picks = rng.sample(range(len(self._chunks)), n) if n <= len(self._chunks) else \
            [rng.randrange(len(self._chunks)) for _ in range(n)]
        return [TrainExample(segments=(Segment(text=self._chunks[i], train=True),), meta={"regulariser": True})
                for i in picks]
