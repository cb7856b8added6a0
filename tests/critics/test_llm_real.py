"""LLMCritic over the embedded default model: real critic text always becomes a Critique record."""

from __future__ import annotations

import pytest

from agentloop.critics.llm import LLMCritic
from agentloop.types import CritiqueRequest, SamplingParams


@pytest.mark.slow
def test_real_model_critique_is_a_record(hf32) -> None:
    critic = LLMCritic(policy=hf32, sampling=SamplingParams(max_new_tokens=40))
    requests = [CritiqueRequest(question="What is 2+3?", answer="2+3 = 6. The answer is 6."),
                CritiqueRequest(question="What is 4*5?", answer="4*5 = 20. The answer is 20.")]
    critiques = critic.critique(requests)
    assert len(critiques) == 2
    for c in critiques:
        assert c.text and c.critic == "llm"
        assert (c.final_correct is None) == (c.parse_error is not None)
