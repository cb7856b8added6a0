"""Every metric on hand-computed cases (docs/methods.md section 7)."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from agentloop.evaluation import metrics as M

# 6 problems, 2 attempts: t1 = [1,1,0,0,0,1], t2 = [1,0,1,1,0,1]
ATT = [[True, True], [True, False], [False, True], [False, True], [False, False], [True, True]]


def test_accuracy_and_transitions_hand_computed():
    accs = M.accuracy_by_attempt(ATT)
    assert [a.value for a in accs] == [pytest.approx(3 / 6), pytest.approx(4 / 6)]
    assert all(a.n == 6 for a in accs)
    assert M.delta_i_to_c(ATT).value == pytest.approx(2 / 6)
    assert M.delta_c_to_i(ATT).value == pytest.approx(1 / 6)
    assert M.delta(ATT).value == pytest.approx(1 / 6)
    fr = M.fix_rate(ATT)
    assert fr.value == pytest.approx(2 / 3) and fr.n == 3
    assert M.break_rate(ATT).value == pytest.approx(1 / 3)


def test_identity_delta_equals_i_to_c_minus_c_to_i_on_random_data():
    rng = random.Random(0)
    for _ in range(50):
        att = [[rng.random() < 0.5 for _ in range(rng.randint(1, 4))] for _ in range(rng.randint(1, 40))]
        for t1, t2 in [(1, 2), (1, 3), (2, 4)]:
            d = M.delta(att, t1, t2).value
            assert d == pytest.approx(M.delta_i_to_c(att, t1, t2).value - M.delta_c_to_i(att, t1, t2).value)
            acc1 = M.accuracy_at(att, t1).value
            if acc1 < 1:
                assert M.fix_rate(att, t1, t2).value == pytest.approx(M.delta_i_to_c(att, t1, t2).value / (1 - acc1))


def test_padding_carries_last_verdict_forward():
    assert M.pad_attempts([True], 3) == [True, True, True]
    assert M.pad_attempts([False, True], 3) == [False, True, True]
    assert M.pad_attempts([], 2) == [False, False]
    assert M.accuracy_at([[False, True], [True]], 2).value == 1.0


def test_wilson_interval_known_values():
    lo, hi = M.wilson_interval(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    lo, hi = M.wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    e = M.proportion([True] * 3 + [False])
    assert e.method == "wilson" and e.lo < 0.75 < e.hi and e.n == 4
    assert M.proportion([]).value is None
    assert e.fmt() == f"75.0 [{e.lo * 100:.1f}, {e.hi * 100:.1f}] (N=4)"


def _brute_pass_at_k(outcomes: list[bool], k: int) -> float:
    subsets = list(itertools.combinations(range(len(outcomes)), k))
    return sum(any(outcomes[i] for i in s) for s in subsets) / len(subsets)


def test_pass_at_k_matches_brute_force_enumeration():
    for n in range(1, 9):
        for c in range(n + 1):
            outcomes = [True] * c + [False] * (n - c)
            for k in range(1, n + 1):
                assert M.pass_at_k(n, c, k) == pytest.approx(_brute_pass_at_k(outcomes, k), abs=1e-12)
    assert M.pass_at_k(200, 10, 1) == pytest.approx(0.05)
    assert M.pass_at_k(5, 0, 3) == 0.0 and M.pass_at_k(5, 3, 3) == 1.0
    with pytest.raises(ValueError, match="1 <= k <= n"):
        M.pass_at_k(3, 1, 4)


def test_pass_at_k_estimate_over_problems():
    counts = [(4, 1), (4, 0), (4, 4), (2, 1)]
    est = M.pass_at_k_estimate(counts, k=2)  # 0.5, 0, 1, 1
    assert est.n == 4 and est.value == pytest.approx(2.5 / 4) and est.method == "bootstrap"
    est3 = M.pass_at_k_estimate(counts, k=3)  # the 2-sample problem cannot give pass@3: 0.75, 0, 1
    assert est3.n == 3 and est3.value == pytest.approx(1.75 / 3)
    assert M.pass_at_k_estimate([(1, 1)], k=2).value is None


def test_majority_vote_and_rise():
    assert M.majority_correct([("3", False), ("4", True), ("3", False)]) is False
    assert M.majority_correct([("4", True), ("3", False)]) is True  # tie: first seen wins
    assert M.majority_correct([(None, False), (None, False), ("4", True)]) is True  # unparsed don't vote
    assert M.majority_correct([(None, True)]) is False
    seq = [
        [("1", False), ("2", True)],                          # t1 wrong; any attempt right
        [("5", True)],                                        # stopped at success: padded with ("5", True)
        [("7", False), ("8", False), ("7", False)],
    ]
    par = [[("2", True), ("2", True), ("1", False)], [("5", True), ("6", False), ("6", False)], [("7", False)] * 3]
    r = M.rise_metrics(seq, par, k=3)
    assert r["m1@t1"].value == pytest.approx(1 / 3)
    assert r["m1@t3"].value == pytest.approx(2 / 3)   # p1 padded: votes 1,2,2 -> "2" right; p2: 5 right; p3 wrong
    assert r["p1@t3"].value == pytest.approx(2 / 3)
    assert r["m3@t1"].value == pytest.approx(1 / 3)


def test_confidence_and_critique_scores():
    # q1: P_a = 1/2, P_b = 1 (right stays right), P_c = 0 ; q2: P_a = 0, P_c = 1/2 ; q3: P_a = 1, P_b = 1/2
    q1 = [(True, True), (False, False)]
    q2 = [(False, True), (False, False)]
    q3 = [(True, True), (True, False)]
    out = M.confidence_critique([q1, q2, q3])
    cl = (0.5 * 1 + 0 + 1 * 0.5) / (0.5 + 0 + 1)
    cs = (0.5 * 0 + 1 * 0.5 + 0) / (0.5 + 1 + 0)
    assert out["CL"].value == pytest.approx(cl) and out["CS"].value == pytest.approx(cs)
    assert out["CL"].n == 3 and out["CL"].lo <= out["CL"].value <= out["CL"].hi


def test_critic_quality():
    verdicts = [True, False, False, None, True, False]
    labels = [True, False, True, False, False, False]
    q = M.critic_quality(verdicts, labels)
    assert q["verdict_accuracy"].value == pytest.approx(3 / 6)  # idx 0, 1, 5
    assert q["wrong_precision"].value == pytest.approx(2 / 3) and q["wrong_precision"].n == 3
    assert q["wrong_recall"].value == pytest.approx(2 / 4) and q["wrong_recall"].n == 4
    assert q["parsed"].value == pytest.approx(5 / 6)
    assert M.first_error_step_accuracy([0, 2, None], [0, 1, None]).value == pytest.approx(2 / 3)
    assert M.closed_loop_accuracy([[False, True], [False, False]]).value == 0.5


def test_bootstrap_and_paired_difference():
    e = M.mean_estimate([0.2, 0.4, 0.6, 0.8])
    assert e.method == "bootstrap" and e.value == pytest.approx(0.5) and 0.2 <= e.lo <= 0.5 <= e.hi <= 0.8
    assert M.mean_estimate([1, 0, 1]).method == "wilson"
    d = M.paired_difference([0, 0, 1, 1], [1, 1, 1, 1])
    assert d.value == pytest.approx(0.5) and d.n == 4 and 0 <= d.lo <= d.hi <= 1
    same = M.paired_difference([0.3] * 10, [0.3] * 10)
    assert same.lo == same.hi == pytest.approx(0.0)
    with pytest.raises(ValueError, match="same problems"):
        M.paired_difference([1], [1, 2])
    assert not math.isnan(M.bootstrap_interval([1.0, 2.0])[0])


def test_ratio_estimate_is_a_micro_average():
    e = M.ratio_estimate([1, 3, 0], [2, 4, 4])
    assert e.value == pytest.approx(4 / 10) and e.n == 3 and e.lo <= 0.4 <= e.hi
    assert M.ratio_estimate([], []).value is None
