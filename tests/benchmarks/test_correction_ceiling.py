"""benchmarks/correction_ceiling.py on the real arithmetic env with a scripted policy (no model)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from agentloop.types import Completion

_spec = importlib.util.spec_from_file_location(
    "correction_ceiling_bench", Path(__file__).resolve().parents[2] / "benchmarks" / "correction_ceiling.py")
correction_ceiling = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(correction_ceiling)


class _WrongFirstRightFresh:
    """Greedy: a wrong answer; sampled first attempts: the right one; after feedback: the wrong one again."""

    def generate(self, conversations, sampling, tools=None):
        out = []
        for conv in conversations:
            a, op, b = re.search(r"What is (\d+) ([+\-x]) (\d+)\?", conv[0].content).groups()
            gold = {"+": int(a) + int(b), "-": int(a) - int(b), "x": int(a) * int(b)}[op]
            right = sampling.temperature > 0 and len(conv) == 1
            out += [Completion(text=f"Answer: {gold if right else gold + 1}")] * sampling.n
        return out


def test_next_answer_is_the_most_frequent_other_answer():
    assert correction_ceiling.next_answer_right("5", [("5", False), ("7", True), ("8", False), ("7", True)])
    assert not correction_ceiling.next_answer_right("5", [("5", False), ("8", False), ("8", False), ("7", True)])
    assert not correction_ceiling.next_answer_right("5", [("5", False)])


def test_ceiling_counts_fresh_answers_and_second_attempts_after_each_protocol():
    res = correction_ceiling.ceiling(_WrongFirstRightFresh(), "math/arith-v0", {"difficulty": 6, "split": "test"}, 6, 3,
                                     0.8, 32, ("\n\n",), ["binary", "env"])
    assert res["acc_t1"] == 0.0 and res["failures"] == 6
    assert res["fresh"] == {"right_share": 1.0, "failures_with_a_right_sample": 6, "next_answer_right": 6,
                            "repeat_share": 0.0, "next_answer_ceiling": 1.0}
    for name in ("binary", "env"):
        after = res["after_feedback"][name]
        assert after["right_share"] == 0.0 and after["repeat_share"] == 1.0
    assert "incorrect" in res["after_feedback"]["binary"]["example"]
    assert "too large" in res["after_feedback"]["env"]["example"]
