"""Shared fixtures: a toy yes/no task environment, a tiny random Llama, and a trainer factory."""

from __future__ import annotations

import itertools

import pytest

from agentloop.env import Task, TaskEnv, Verdict
from agentloop.types import user


class YesEnv(TaskEnv):
    """Task i asks question i; the right answer is 'yes'. Feedback names the mistake (never the answer)."""

    retry_instruction = "Check your answer and answer again."

    def num_tasks(self) -> int:
        return 4

    def get_task(self, index: int) -> Task:
        return Task(id=f"t{index}", messages=(user(f"Question {index}: is it true?"),), answer="yes")

    def verify(self, task: Task, action: str) -> Verdict:
        ok = action.strip() == "yes"
        return Verdict(reward=float(ok), success=ok, feedback="correct" if ok else "NameError: 'no' is not it",
                       info={"feedback_lines": 1})


class AlternatingPolicy:
    """Answers 'yes' or 'no' in a fixed alternating order (per call), so both outcomes appear."""

    def __init__(self, pattern: tuple[str, ...] = ("no", "yes", "no", "no", "yes")):
        self._cycle = itertools.cycle(pattern)

    def generate(self, conversations, sampling):
        from agentloop.types import Completion

        return [Completion(text=next(self._cycle)) for _ in conversations for _ in range(sampling.n)]


def tiny_llama(vocab: int, pad: int):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True, pad_token_id=pad)
    return LlamaForCausalLM(cfg).eval()


@pytest.fixture()
def tiny_model(tokenizer):
    return tiny_llama(len(tokenizer), tokenizer.pad_token_id)
