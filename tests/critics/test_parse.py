"""parse_critique: the step-level format of docs/methods.md section 4, its variants, and malformed text."""

from __future__ import annotations

import random

import pytest

from agentloop.critics.llm import parse_critique

WELL_FORMED = """Step sentence: Tom has 3 apples and buys 4 more, so he has 3 + 4 = 7 apples.
Correctness of the step: Correct
Explanation: 3 + 4 = 7.
Step sentence: He gives away 2, so he has 7 - 2 = 4 apples.
Correctness of the step: Wrong
Explanation: 7 - 2 = 5, not 4.
Step sentence: The answer is 4.
Correctness of the step: Wrong
Explanation: follows from the previous error.
Correctness of the final answer: Wrong
Explanation: The correct answer is 5."""


def test_well_formed_critique() -> None:
    c = parse_critique(WELL_FORMED)
    assert c.parse_error is None and c.final_correct is False and c.first_wrong_step == 1
    assert [s.correct for s in c.steps] == [True, False, False]
    assert c.steps[1].step == "He gives away 2, so he has 7 - 2 = 4 apples."
    assert c.steps[1].explanation == "7 - 2 = 5, not 4."
    assert c.text == WELL_FORMED and c.critic == "llm"


def test_markdown_numbering_case_and_synonyms() -> None:
    text = """Here is my critique.
1. **Step sentence:** x = 2
   **Correctness of the step:** correct
   - Explanation: fine
   and still fine
2. **Step sentence**: y = x + 1 = 4
   **Correctness of the step**: Incorrect.
**CORRECTNESS OF THE FINAL ANSWER**：*Incorrect*
Explanation: y should be 3"""
    c = parse_critique(text, critic="mine")
    assert c.parse_error is None and c.critic == "mine"
    assert [s.correct for s in c.steps] == [True, False]
    assert c.steps[0].explanation == "fine and still fine"
    assert c.steps[1].step == "y = x + 1 = 4"
    assert (c.first_wrong_step, c.final_correct) == (1, False)


def test_all_correct_and_verdict_only() -> None:
    c = parse_critique("Correctness of the final answer: Correct\nExplanation: ok")
    assert (c.final_correct, c.first_wrong_step, c.steps, c.parse_error) == (True, None, (), None)
    c = parse_critique("Step 1: a\nCorrectness of the step: Right\nCorrectness of the final answer: Yes")
    assert c.steps[0].correct is True and c.final_correct is True


def test_step_with_unknown_verdict_keeps_none() -> None:
    c = parse_critique("Step sentence: a\nCorrectness of the step: Partially\nCorrectness of the final answer: Wrong")
    assert c.steps[0].correct is None and c.first_wrong_step is None and c.final_correct is False
    assert c.parse_error is None


@pytest.mark.parametrize("text, error", [
    ("", "empty"),
    ("   \n ", "empty"),
    ("The solution looks fine to me.", "no 'Correctness of the final answer"),
    ("Step sentence: a\nCorrectness of the step: Wrong", "no 'Correctness of the final answer"),
    ("Correctness of the final answer: maybe", "neither Correct nor Wrong"),
])
def test_malformed_text_gives_a_parse_error_not_an_exception(text: str, error: str) -> None:
    c = parse_critique(text)
    assert c.parse_error is not None and error in c.parse_error
    assert c.final_correct is None


def test_truncated_critique_keeps_the_steps_it_has() -> None:
    c = parse_critique(WELL_FORMED.split("Correctness of the final answer")[0])
    assert len(c.steps) == 3 and c.first_wrong_step == 1 and c.final_correct is None and c.parse_error


def test_random_text_never_raises() -> None:
    rng = random.Random(0)
    pieces = ["Step sentence:", "Correctness of the step:", "Correctness of the final answer:", "Explanation:",
              "Correct", "Wrong", "\n", "**", "：", "1.", "x", " ", "\u00e9", "\x00", "Step 3:"]
    for _ in range(300):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 40)))
        c = parse_critique(text)
        assert c.final_correct in (True, False, None)
        assert (c.final_correct is None) == (c.parse_error is not None)
