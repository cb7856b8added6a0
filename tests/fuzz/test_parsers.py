"""Parsers of model replies, fuzzed with hypothesis: whatever a model writes, they return a record, never raise.

Each strategy mixes random text with the fragments the parser looks for (fences, tags, keys,
brackets), so the examples reach the parsers' deeper branches, not only the "nothing found" path.
Runs are short (``max_examples=200``) so the suite stays fast.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from agentloop.critics.llm import parse_critique
from agentloop.environments.code.execution import extract_code
from agentloop.environments.math.checking import answers_match, extract_answer, judge, to_number
from agentloop.environments.tools import parse_tool_calls
from agentloop.environments.travel.plan import PlanParseError, parse_plan
from agentloop.types import Critique

# derandomize + no database: the same examples on every run (reproducible in CI, no .hypothesis/ folder written)
FUZZ = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def _text_with(fragments: list[str]) -> st.SearchStrategy[str]:
    """Random text interleaved with parser-relevant fragments."""
    piece = st.one_of(st.text(max_size=30), st.sampled_from(fragments),
                      st.integers(-10**30, 10**30).map(str), st.floats(allow_nan=True).map(repr))
    return st.lists(piece, max_size=12).map("".join)


# Deep nesting and huge numbers: what recursive parsers and int() choke on.
DEEP = st.builds(lambda head, opener, n, tail: head + opener * n + tail,
                 st.sampled_from(["", "Answer: ", "<tool_call>", "```json\n", "```python\n", '{"name": "f", "arguments": "',
                                  '[{"days": ']),
                 st.sampled_from(["[", "(", "{", "-", "9", "\\boxed{", "[{\"a\": "]), st.integers(900, 6000),
                 st.text(max_size=10))


MATH = ["\\boxed{", "}", "{", "####", "Answer:", "the answer is", "final answer =", "$", "\\frac{1}{2}", "/", "0/0",
        "1,234", ".5", "-", "%", "\n", "\\sqrt{", "x = ", "1e999", "(", ")", "\\", "^", "9" * 400]
CODE = ["```", "```python\n", "```py", "```\n", "def f(x):\n    return x\n", "import os\n", "x = 1\n", "\n", "class A:",
        "\x00", "\t", "'''", "lambda", "(" * 50, "# comment\n", "-" * 3000]
TOOLS = ["<tool_call>", "</tool_call>", "{", "}", "[", "]", '"name": ', '"arguments": ', '"parameters": ', '"function": ',
         '"tool_calls": ', '"f"', '"{}"', '"{bad"', ", ", ":", "null", "1e999", "NaN", "```json\n", "```", '"\\ud800"',
         "true", "[" * 40, "[" * 3000, "9" * 5000]
PLAN = ["Day 1:", "Day 2:\n", "**Day 3**", "\n", "Current City: ", "from A to B", "Transportation: ", "Flight Number: F1",
        "Breakfast: ", "Attraction: ", "Lunch: ", "Dinner: ", "Accommodation: ", "-", "[", "]", "{", "}",
        '{"days": ', '"current_city": ', '"plan": ', "None", "1e999", "```json\n", "```", "(", ")", ",", "'a'",
        '"Day": "x"', "[" * 60, "{}", "[" * 3000, "(" * 3000, "9" * 5000, '"days": 1e999', "Day 1:\nCurrent City: x\n"]
CRITIQUE = ["Step sentence: ", "Step 1: ", "Correctness of the step: ", "Correctness of the final answer: ",
            "Explanation: ", "Wrong", "Correct", "**", "\n", "\r\n", "\x85", "\u2028", "Neither", ": ", "1. "]


@FUZZ
@example("Answer: " + "[" * 3000, "3")
@given(st.one_of(_text_with(MATH), DEEP), st.sampled_from(["3", "-2/3", "0.5", "\\frac{1}{2}", "1,000", "x^2", ""]))
def test_math_answer_extraction_never_raises(text, gold):
    pred = extract_answer(text)
    assert pred is None or isinstance(pred, str)
    if pred is not None:
        to_number(pred)
        assert isinstance(answers_match(pred, gold), bool)
    verdict = judge(text, gold)
    assert verdict.reward in (0.0, 1.0) and verdict.success == (verdict.reward == 1.0)


@FUZZ
@given(_text_with(CODE))
def test_code_block_extraction_never_raises(text):
    code = extract_code(text)
    assert code is None or isinstance(code, str)


def test_code_block_extraction_survives_deep_nesting():
    assert extract_code("x = " + "-" * 3000 + "1") is None


def _call_objects() -> st.SearchStrategy[str]:
    leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=8))
    value = st.recursive(leaf, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
                         max_leaves=8)
    call = st.fixed_dictionaries({}, optional={"name": value | st.text(max_size=6), "arguments": value,
                                               "parameters": value, "function": value, "id": value,
                                               "tool_calls": value})
    return st.one_of(call, st.lists(call, max_size=3), value).map(json.dumps)


@FUZZ
@example("[" * 5000)  # the regressions hypothesis found: nesting deeper than the JSON decoder's stack
@example("<tool_call>" + "[" * 5000 + "</tool_call>")
@example('{"name": "f", "arguments": "' + "[" * 5000 + '"}')
@example('{"name": "f", "arguments": {"x": ' + "9" * 5000 + "}}")  # over Python's int-digits limit
@given(st.one_of(_text_with(TOOLS), _call_objects(), DEEP,
                 st.tuples(_call_objects(), st.text(max_size=10)).map(lambda t: f"<tool_call>{t[0]}</tool_call>{t[1]}")))
def test_tool_call_parsing_never_raises(text):
    parsed = parse_tool_calls(text)
    assert all(isinstance(e, str) and e for e in parsed.errors)
    for call in parsed.calls:
        assert isinstance(call.name, str) and call.name and isinstance(call.arguments, dict)


def _plan_objects() -> st.SearchStrategy[str]:
    leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8))
    day = st.dictionaries(st.sampled_from(["days", "Day", "current_city", "Current City", "transportation", "breakfast",
                                           "attraction", "lunch", "dinner", "accommodation", "other"]),
                          leaf | st.lists(leaf, max_size=2), max_size=8)
    plan = st.lists(day | leaf, max_size=4)
    return st.one_of(plan, st.fixed_dictionaries({"plan": plan | leaf})).map(lambda o: json.dumps(o) if
                                                                            not isinstance(o, str) else o)


@FUZZ
@example("[" * 5000)  # the regressions hypothesis found
@example("[" + "9" * 5000 + "]")
@example('[{"days": 1e999, "current_city": "x"}]')
@given(st.one_of(_text_with(PLAN), _plan_objects(), _plan_objects().map(repr), DEEP))
def test_travel_plan_parsing_returns_a_plan_or_its_documented_error(text):
    try:
        plan = parse_plan(text)
    except PlanParseError as e:  # the documented outcome: its message is the model's feedback
        assert str(e)
        return
    assert isinstance(plan, tuple) and plan
    for day in plan:
        assert isinstance(day.days, int)


@FUZZ
@given(st.one_of(_text_with(CRITIQUE), DEEP))
def test_critique_parsing_never_raises(text):
    c = parse_critique(text)
    assert isinstance(c, Critique)
    assert c.final_correct in (True, False, None)
    assert (c.parse_error is None) == (c.final_correct is not None)


@pytest.mark.parametrize("opener", ["[", "(", "{", "-", "9"])
def test_math_judge_of_a_huge_answer_is_fast_in_a_worker_thread(opener):
    """Rollouts judge in threads, where math-verify has no timeout: a long hostile answer must not stall them."""
    reply = "Answer: " + opener * 3000
    out: list[float] = []

    def run() -> None:
        t = time.perf_counter()
        judge(reply, "\\frac{1}{2}")
        out.append(time.perf_counter() - t)
    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout=30)
    assert out and out[0] < 1.0, f"judging took {out or 'over 30'} s"


@pytest.mark.parametrize("reply", ["\\boxed{10^{10^{10^{10}}}}", "\\boxed{9^{99999999}}", "\\boxed{(10^{10})!}"],
                         ids=["power-tower", "huge-exponent", "huge-factorial"])
def test_math_judge_of_an_answer_too_costly_to_evaluate_returns(reply):
    """Judged in a rollout thread, such an answer made sympy compute an exact giant integer holding the GIL: the
    whole process froze. So this runs in a child process with a deadline."""
    code = ("import sys, threading; from agentloop.environments.math.checking import judge; out = []; "
            "t = threading.Thread(target=lambda: out.append(judge(sys.argv[1], '3').success)); t.start(); t.join(); "
            "print(out[0])")  # in a thread, as rollouts judge: math-verify has no timeout there
    try:
        out = subprocess.run([sys.executable, "-c", code, reply], capture_output=True, text=True, timeout=60,
                             check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"judging {reply!r} did not finish in 60 s")
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr[-2000:]
