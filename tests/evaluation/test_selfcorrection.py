"""The one self-correction report: hand-computed figures, the counting rule for errored episodes, paired gains."""

from __future__ import annotations

import pytest

from agentloop.evaluation.selfcorrection import ProblemAttempts, paired_gains, problems_of, self_correction
from agentloop.types import Episode, EpisodeError, Turn


def _ep(verdicts, answers=None, task=0, error=False, op=None) -> Episode:
    answers = answers or [str(v) for v in verdicts]
    turns = tuple(Turn(index=i, attempt=i, observation=(), action=a, reward=float(v), success=v,
                       info={"extracted_answer": a, **({"op": op} if op else {})})
                  for i, (v, a) in enumerate(zip(verdicts, answers)))
    err = EpisodeError(stage="policy", type="RuntimeError", message="boom", turn=len(turns)) if error else None
    return Episode(env_id="t/x-v0", seed=0, turns=turns, error=err, metadata={"task_index": task})


def _p(verdicts, answers=None, key="k", tag=None) -> ProblemAttempts:
    return ProblemAttempts(key=key, verdicts=tuple(verdicts), answers=tuple(answers or [None] * len(verdicts)), tag=tag)


def test_counting_rule_success_carries_forward_error_counts_wrong():
    stopped = _ep([True])                       # oracle-stopped at a success: right at t2, t3
    errored = _ep([True], error=True)           # right at t1, then the policy failed: wrong at t2, t3
    never = _ep([], error=True)                 # failed before any answer: wrong everywhere
    played = _ep([False, False])                # two wrong answers, then ran out of turns: stays wrong
    rows = problems_of([stopped, errored, never, played], 3)
    assert [p.verdicts for p in rows] == [(True, True, True), (True, False, False), (False, False, False),
                                          (False, False, False)]
    r = self_correction([stopped, errored, never, played], 3)
    assert r.n_episodes == 4 and r.n_errors == 2
    assert [a.value for a in r.acc_by_attempt] == [0.5, 0.25, 0.25]


def test_t2_and_tk_are_different_names_with_three_attempts():
    # problem a: wrong, right, wrong; b: right, wrong, right; c: wrong, wrong, right; d: right x3
    rows = [_p([False, True, False], ["1", "2", "1"], "a"), _p([True, False, True], ["5", "6", "5"], "b"),
            _p([False, False, True], ["7", "8", "9"], "c"), _p([True, True, True], ["3", "3", "3"], "d")]
    r = self_correction(rows, protocol="retry")
    assert (r.acc_t1.value, r.acc_t2.value, r.acc_tk.value) == (0.5, 0.5, 0.75)
    assert r.delta_t1_t2.value == pytest.approx(0.0) and r.delta_t1_tk.value == pytest.approx(0.25)
    assert (r.delta_i_to_c.value, r.delta_c_to_i.value) == (0.25, 0.25)        # t1 -> t2: a fixed, b broken
    assert (r.delta_i_to_c_tk.value, r.delta_c_to_i_tk.value) == (0.25, 0.0)   # t1 -> t3: c fixed
    assert r.delta_t1_t2.value == pytest.approx(r.delta_i_to_c.value - r.delta_c_to_i.value)
    assert r.p1_tk.value == 1.0          # every problem right at some attempt (oracle pick)
    assert r.m1_tk.value == 0.5          # majorities: a '1' wrong, b '5' right, c tie -> '7' wrong, d right
    assert r.fix_rate.value == 0.5 and r.fix_rate.n == 2 and r.break_rate.value == 0.5


def test_operations_and_single_attempt():
    r = self_correction([_p([True, False], tag="add"), _p([False, True], tag="sub"), _p([False, False], tag="sub")])
    assert r.by_op["add"].acc_t1.value == 1.0 and r.by_op["sub"].n == 2 and r.by_op["sub"].acc_t2.value == 0.5
    one = self_correction([_p([True]), _p([False])])
    assert one.max_attempts == 1 and one.acc_t2 is None and one.delta_t1_t2 is None and one.p1_tk is None


def test_paired_gains_pair_by_problem_and_refuse_other_problems():
    before = [_p([True, False], key="a"), _p([False, True], key="b"), _p([False, False], key="c")]
    after = [_p([True, True], key="c"), _p([True, True], key="a"), _p([False, True], key="b")]  # other order
    g = paired_gains(before, after)
    assert g.n == 3 and g.gain_acc_t1.value == pytest.approx(1 / 3) and g.gain_acc_t2.value == pytest.approx(2 / 3)
    # delta(t1,t2): before (-1 + 1 + 0) / 3 = 0, after (0 + 1 + 0) / 3 -> gain +1/3
    assert g.gain_delta.value == pytest.approx(1 / 3) and g.gain_delta_tk.value == g.gain_delta.value
    with pytest.raises(ValueError, match="same tasks"):
        paired_gains(before, after[:2])


def _arith_ep(answers: list[str], gold: str, task: int) -> Episode:
    from agentloop.environments.math.checking import judge

    turns = []
    for i, a in enumerate(answers):
        v = judge(f"Answer: {a}", gold)
        turns.append(Turn(index=i, attempt=i, observation=(), action=f"Answer: {a}", reward=v.reward, success=v.success,
                          info={**v.info, "feedback": v.feedback}))
    return Episode(env_id="math/arith-v0", seed=0, turns=tuple(turns), metadata={"task_index": task})


def test_uptake_counts_second_attempts_that_did_what_the_verdict_asked():
    eps = [_arith_ep(["7", "-7"], "-7", 0),    # sign wrong -> negated: taken (and right)
           _arith_ep(["30", "40"], "56", 1),   # too small -> larger: taken, still wrong
           _arith_ep(["30", "30"], "56", 2),   # repeated: not taken
           _arith_ep(["5"], "5", 3)]           # right at once: not counted
    r = self_correction(eps, 2, protocol="env", oracle_stopped=True)
    assert [p.uptake for p in problems_of(eps, 2)] == [True, True, False, None]
    assert r.uptake.value == pytest.approx(2 / 3) and r.uptake.n == 3
    assert r.delta_t1_t2.value == pytest.approx(0.25)  # only the negation fixed an answer
    # an environment that checks nothing (the base class's feedback_uptake, or an unknown id): no figure
    assert self_correction([_ep([False, True]), _ep([False, False], task=1)], 2).uptake is None
    assert self_correction(eps, 1).uptake is None  # one attempt: nothing follows a verdict
