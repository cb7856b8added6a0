"""Final-answer extraction and equivalence checking for math environments (pure functions).

``extract_answer`` finds the final answer in a reply, trying in order: the last ``\\boxed{...}``,
the last ``#### ...`` line, the last ``Answer: ...`` / ``the answer is ...``, and finally the last
number in the text. ``answers_match`` decides equivalence: an exact numeric comparison first
(integers, decimals, fractions, thousands separators, ``$``/``%`` stripped), then math-verify for
everything else (LaTeX fractions, expressions, sets). ``judge`` turns both into a
:class:`~agentloop.env.Verdict` whose ``feedback`` never reveals the gold answer (that goes into
``oracle_feedback``) but says what a number line can (:func:`direction_hint`: the sign is wrong, the
answer is too large or too small), so that the environment's feedback carries information a model can
learn to use.

Robustness: every function here takes any text without raising. A predicted answer much longer
than the gold one (over ``MAX_VERIFY_CHARS`` and twice the gold's length), or one with a power
tower, an exponent of 6+ digits or a large factorial that the gold lacks (whose exact value would
take minutes to compute, holding the GIL), is judged wrong without calling math-verify, whose parser needs seconds on long or deeply nested input and has no
timeout outside the main thread (rollouts judge in worker threads).

Not covered: answers that need units reasoning ("2 hours" vs "120 minutes"), multiple-choice
letters, and proofs.

Example::

    >>> extract_answer("so x = 3.\\nAnswer: \\\\frac{1}{2}")
    '\\\\frac{1}{2}'
    >>> answers_match("0.5", "\\\\frac{1}{2}")
    True
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from agentloop.env import Verdict

ANSWER_FORMAT = "Give the final answer on the last line in the form 'Answer: <number>'."
NUMBER_RE = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?(?:/\d+)?|-?\$?\.\d+")
MAX_VERIFY_CHARS = 200
ANSWER_RE = re.compile(r"(?:final answer|answer)\s*(?:is|:|=)\s*[:=]?\s*(.+)", re.IGNORECASE)


def _last_boxed(text: str) -> str | None:
    start = text.rfind("\\boxed")
    if start < 0:
        return None
    i = text.find("{", start)
    if i < 0:
        return None
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1:j].strip()
    return None  # unbalanced braces: malformed


def _clean(answer: str) -> str:
    answer = answer.strip().strip("*").strip()
    answer = re.sub(r"^\$+|\$+$", "", answer).strip()  # LaTeX math delimiters around the whole answer
    return answer.rstrip(".").strip()


def extract_answer(text: str) -> str | None:
    """The final answer written in ``text``, or None when there is none."""
    if not text or not text.strip():
        return None
    boxed = _last_boxed(text)
    if boxed:
        return _clean(boxed)
    if "####" in text:
        tail = text.rsplit("####", 1)[1].strip().splitlines()
        if tail and tail[0].strip():
            return _clean(tail[0])
    matches = ANSWER_RE.findall(text)
    if matches:
        line = matches[-1].strip().splitlines()[0] if matches[-1].strip() else ""
        number = NUMBER_RE.search(line)
        if number and not re.search(r"\\frac|\\sqrt|[a-zA-Z]\s*[=^]", line):
            return _clean(number.group(0))
        if line:
            return _clean(line)
    numbers = NUMBER_RE.findall(text)
    return _clean(numbers[-1]) if numbers else None


def to_number(text: str) -> Fraction | None:
    """Exact value of a plain number ('1,234', '$5', '3.50', '-2/3', '45%'), else None."""
    t = text.strip().replace(",", "").replace("$", "").replace(" ", "")
    t = t[:-1] if t.endswith("%") else t
    if not re.fullmatch(r"-?(\d+(\.\d*)?|\.\d+)(/\d+)?", t):
        return None
    try:
        return Fraction(t)
    except (ValueError, ZeroDivisionError):
        return None


def _math_verify(pred: str, gold: str) -> bool:
    from math_verify import parse, verify

    # math-verify's timeouts use SIGALRM, which only works in the main thread; rollouts step in threads.
    timeout = 5 if threading.current_thread() is threading.main_thread() else None
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    try:
        g = parse(f"${gold}$", parsing_timeout=timeout)
        p = parse(f"${pred}$", parsing_timeout=timeout)
        if not g or not p:
            return False
        return bool(verify(g, p, timeout_seconds=timeout))
    except Exception:  # malformed input is a wrong answer, never a crash
        return False


def answers_match(pred: str, gold: str) -> bool:
    """True when ``pred`` and ``gold`` denote the same value."""
    a, b = to_number(pred), to_number(gold)
    if a is not None and b is not None:
        return a == b
    if pred.strip() == gold.strip():
        return True
    if len(pred) > max(MAX_VERIFY_CHARS, 2 * len(gold)) or _too_costly(pred, gold):
        return False  # no realistic equivalent; math-verify would take seconds (unbounded in threads)
    return _math_verify(pred, gold)


_POWER = re.compile(r"\^|\*\*")
_BIG_EXPONENT = re.compile(r"(?:\^|\*\*)\s*\{?\s*\(?\s*\d{6,}")
_BIG_FACTORIAL = re.compile(r"\d{4,}\s*\)?\s*!|\}\s*\)?\s*!|\)\s*!")


def _too_costly(pred: str, gold: str) -> bool:
    """A predicted answer whose exact evaluation could take minutes and hold the GIL (a power tower, a
    huge exponent or factorial) while the gold answer has no such form: it cannot be its equivalent."""
    if len(_POWER.findall(pred)) > len(_POWER.findall(gold)) + 1:
        return True  # 10^{10^{10^{10}}}: sympy evaluates the exact integer
    return bool((_BIG_EXPONENT.search(pred) and not _BIG_EXPONENT.search(gold))
                or (_BIG_FACTORIAL.search(pred) and not _BIG_FACTORIAL.search(gold)))


def direction_hint(pred: str, gold: str) -> str:
    """What a checker can say about a wrong number without giving the answer away: that its sign is
    wrong (the magnitude is right), or that it is too large / too small; "" when either side is not a
    plain number or they are equal. The information a number line gives, no digit of the answer.

    >>> direction_hint("7", "-7"), direction_hint("12", "10"), direction_hint("x", "3")
    (' Its sign is wrong.', ' It is too large.', '')
    """
    a, b = to_number(pred), to_number(gold)
    if a is None or b is None or a == b:
        return ""
    if a == -b:
        return " Its sign is wrong."
    return " It is too large." if a > b else " It is too small."


def judge(reply: str, gold: str) -> Verdict:
    """Check a reply against the gold answer; feedback says what went wrong without the answer."""
    pred = extract_answer(reply)
    oracle = f"The correct answer is {gold}."
    if pred is None:
        return Verdict(reward=0.0, success=False, parse_error="no final answer found",
                       feedback=f"I could not find a final answer in your reply. {ANSWER_FORMAT}",
                       oracle_feedback=f"I could not find a final answer in your reply. {oracle}",
                       info={"extracted_answer": None})
    if answers_match(pred, gold):
        return Verdict(reward=1.0, success=True, feedback=f"Your final answer {pred} is correct.",
                       info={"extracted_answer": pred})
    feedback = (f"Your final answer {pred} is incorrect.{direction_hint(pred, gold)} "
                "Check your reasoning and calculations step by step.")
    if to_number(pred) is None and to_number(gold) is not None:
        feedback += " The answer should be a single number."
    return Verdict(reward=0.0, success=False, feedback=feedback,
                   oracle_feedback=f"Your final answer {pred} is incorrect. {oracle}", info={"extracted_answer": pred})


def direction_followed(previous: Mapping[str, Any], current: Mapping[str, Any]) -> bool | None:
    """Did the next answer do what :func:`judge`'s verdict on the previous one said (``previous`` and
    ``current``: the two turns' ``info``)? "Its sign is wrong": the next answer is the previous one negated;
    "too large" / "too small": it is smaller / larger; "no final answer found": it has one. None when the
    verdict said none of these (a right answer, an answer that is not a plain number).

    >>> direction_followed({"feedback": "Your final answer 12 is incorrect. It is too large.",
    ...                     "extracted_answer": "12"}, {"extracted_answer": "9"})
    True
    """
    said = str(previous.get("feedback") or "")
    after = current.get("extracted_answer")
    if said.startswith("I could not find a final answer"):
        return after is not None
    before = to_number(str(previous.get("extracted_answer") or ""))
    if before is None or "is incorrect" not in said:
        return None
    now = to_number(str(after)) if after is not None else None
    for hint, ok in ((" Its sign is wrong.", lambda x: x == -before), (" It is too large.", lambda x: x < before),
                     (" It is too small.", lambda x: x > before)):
        if hint in said:
            return now is not None and ok(now)
    return None


__all__ = ["ANSWER_FORMAT", "MAX_VERIFY_CHARS", "answers_match", "direction_followed", "direction_hint",
           "extract_answer", "judge", "to_number"]
