"""Answer extraction and equivalence checking (environments/math/checking.py)."""

from __future__ import annotations

import threading

import pytest

from agentloop.environments.math.checking import (answers_match, direction_followed, direction_hint, extract_answer, judge,
                                                  to_number)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("so the result is \\boxed{\\frac{1}{2}}.", "\\frac{1}{2}"),
        ("first \\boxed{3}, no wait \\boxed{4}", "4"),
        ("\\boxed{\\sqrt{\\frac{3}{4}}}", "\\sqrt{\\frac{3}{4}}"),
        ("She pays 2 * 9 = 18 dollars.\n#### 18", "18"),
        ("#### 1,234\n", "1,234"),
        ("Step 1: 5 + 6 = 11\nAnswer: 11", "11"),
        ("Therefore, the answer is $18.", "18"),
        ("The final answer is: 42.", "42"),
        ("Answer: \\frac{3}{4}", "\\frac{3}{4}"),
        ("I think the answer is 42.", "42"),
        ("5 apples and then 7 more", "7"),
        ("It costs -3.5 degrees", "-3.5"),
        ("\\boxed{12", "12"),  # unbalanced box: malformed, falls back to the last number
        ("no numbers here", None),
        ("", None),
        ("   \n", None),
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    ("pred", "gold", "same"),
    [
        ("0.5", "\\frac{1}{2}", True),
        ("1/2", "0.5", True),
        ("1,234", "1234", True),
        ("5.00", "5", True),
        ("$18", "18", True),
        ("50%", "50", True),
        ("-7", "-7", True),
        ("2x+1", "1+2x", True),
        ("\\frac{6}{4}", "\\frac{3}{2}", True),
        ("\\sqrt{4}", "2", True),
        ("3", "4", False),
        ("0.333", "1/3", False),
        ("\\frac{1}{", "1", False),  # malformed: wrong, never a crash
        ("banana", "3", False),
        ("", "3", False),
    ],
)
def test_answers_match(pred, gold, same):
    assert answers_match(pred, gold) is same


def test_to_number_is_exact():
    assert to_number("1,000.50") == to_number("2001/2")
    assert to_number("x") is None and to_number("1/0") is None


def test_math_verify_works_outside_the_main_thread():
    out: list[bool] = []
    t = threading.Thread(target=lambda: out.append(answers_match("\\frac{2}{4}", "0.5")))
    t.start()
    t.join()
    assert out == [True]


def test_judge_feedback_never_leaks_the_answer():
    right = judge("... so Answer: 47", "47")
    assert right.success and right.reward == 1.0 and right.oracle_feedback is None
    wrong = judge("... so Answer: 46", "47")
    assert not wrong.success and wrong.reward == 0.0
    assert "46" in wrong.feedback and "47" not in wrong.feedback
    assert "47" in (wrong.oracle_feedback or "")
    assert wrong.info["extracted_answer"] == "46"
    missing = judge("I am not sure.", "47")
    assert missing.parse_error and "Answer:" in missing.feedback and "47" not in missing.feedback
    word = judge("Answer: forty", "40")
    assert "single number" in word.feedback and "40" not in word.feedback


@pytest.mark.parametrize("pred,gold,hint", [
    ("7", "-7", " Its sign is wrong."),       # the magnitude is right: a negative result answered as positive
    ("-12", "12", " Its sign is wrong."),
    ("20", "17", " It is too large."),
    ("-20", "-17", " It is too small."),
    ("3/4", "0.5", " It is too large."),      # exact values, not strings
    ("17", "17", ""),                          # equal: nothing to say
    ("x + 1", "3", ""),                        # not plain numbers: no direction
    ("0", "0.0", ""),
])
def test_direction_hint(pred, gold, hint):
    assert direction_hint(pred, gold) == hint


def test_judge_feedback_carries_the_direction_but_not_the_answer():
    wrong = judge("Answer: 7", "-7")
    assert "Its sign is wrong." in wrong.feedback and "-7" not in wrong.feedback
    assert "It is too small." in judge("Answer: 30", "56").feedback
    assert "too" not in judge("Answer: 56", "56").feedback and "sign" not in judge("Answer: 56", "56").feedback


@pytest.mark.parametrize("first, second, gold, followed", [
    ("7", "-7", "-7", True),          # sign wrong -> negated
    ("7", "-6", "-7", False),         # sign wrong -> anything else
    ("7", "7", "-7", False),          # repeated
    ("30", "40", "56", True),         # too small -> larger (still wrong counts: the direction was taken)
    ("30", "20", "56", False),
    ("60", "57", "56", True),         # too large -> smaller
    ("60", None, "56", False),        # no answer after a direction
    ("56", "57", "56", None),         # right first: nothing asked
])
def test_direction_followed(first, second, gold, followed):
    prev = judge(f"Answer: {first}", gold)
    cur = judge(f"Answer: {second}" if second is not None else "no idea", gold)
    assert direction_followed({**prev.info, "feedback": prev.feedback}, {**cur.info, "feedback": cur.feedback}) is followed


def test_direction_followed_after_a_missing_answer_asks_for_one():
    missing = judge("I think so", "4")
    prev = {**missing.info, "feedback": missing.feedback}
    assert direction_followed(prev, {"extracted_answer": "4"}) is True
    assert direction_followed(prev, {"extracted_answer": None}) is False
    assert direction_followed({"feedback": "Your final answer x+1 is incorrect.", "extracted_answer": "x+1"},
                              {"extracted_answer": "3"}) is None  # not a plain number: no direction was given
