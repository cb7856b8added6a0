"""Compute-matched comparison and run-vs-run pairing on hand-built episodes."""

from __future__ import annotations

import pytest

from agentloop.errors import ConfigError
from agentloop.evaluation.compare import compare_runs, compute_matched, token_matched_prefix
from agentloop.types import Episode, Turn, user


def _ep(task: int, verdicts: list[tuple[str, bool]], mode: str = "sequential", sample: int = 0,
        tokens: int = 10, env: str = "e") -> Episode:
    turns = tuple(Turn(index=i, attempt=i, observation=(user("q"),), action=a, success=ok,
                       token_ids=tuple(range(tokens))) for i, (a, ok) in enumerate(verdicts))
    key = f"{env}|task={task}|sample={sample}|seed=0"
    return Episode(env_id=env, seed=0, task_id=str(task), turns=turns,
                   metadata={"run_key": key if mode == "sequential" else "par|" + key, "env_label": env,
                             "task_index": task, "sample": sample, "mode": mode})


def test_token_matched_prefix():
    assert token_matched_prefix([10, 10, 10], 25) == 2
    assert token_matched_prefix([30, 10], 20) == 1  # always at least one sample
    assert token_matched_prefix([5, 5, 5], 100) == 3
    assert token_matched_prefix([], 10) == 0


def test_compute_matched_hand_case():
    seq = [_ep(0, [("1", False), ("2", True)], tokens=10),   # fixed on attempt 2, 20 tokens
           _ep(1, [("5", True)], tokens=10)]                 # right at once, 10 tokens
    par = [_ep(0, [("1", False)], "parallel", 0, 10), _ep(0, [("2", True)], "parallel", 1, 10),
           _ep(1, [("5", True)], "parallel", 0, 10), _ep(1, [("6", False)], "parallel", 1, 10)]
    cm = compute_matched(seq, par, k=2)
    assert cm["n_problems"] == 2 and cm["tokens_exact"]
    assert cm["seq_final"]["value"] == 1.0
    assert cm["par_first"]["value"] == 0.5
    assert cm["par_majority"]["value"] == 0.5   # p0 tie 1/2 -> first seen "1" wrong; p1 tie -> "5" right
    assert cm["par_oracle"]["value"] == 1.0
    assert cm["tm_samples"]["value"] == 1.5     # p0 budget 20 -> 2 samples, p1 budget 10 -> 1 sample
    assert cm["tm_oracle"]["value"] == 1.0
    assert cm["diff_seq_vs_par_majority"]["value"] == pytest.approx(0.5)


def test_compare_runs_pairs_and_refuses_mismatch():
    a = [_ep(i, [("x", i % 2 == 0)]) for i in range(4)]
    b = [_ep(i, [("x", True)]) for i in range(4)]
    out = compare_runs([("a", a, 1), ("b", b, 1)])
    assert out["n_shared"] == 4
    assert out["runs"][1]["diff_final"]["value"] == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="different environments"):
        compare_runs([("a", a, 1), ("c", [_ep(0, [("x", True)], env="other")], 1)])
    with pytest.raises(ConfigError, match="share no problem"):
        compare_runs([("a", a[:2], 1), ("b", b[2:], 1)])
