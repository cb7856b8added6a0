"""The self-correction block and paired gains on hand-computed attempts; held-out evaluation of a scripted policy."""

from __future__ import annotations

import re

import pytest
from agentloop.baselines.heldout import HeldOutSettings, attempts_of, block, compare, evaluate_model, ops_of
from agentloop.policies.scripted import ScriptedPolicy

# Four problems: right then wrong; wrong then right (twice); right twice.
ATTEMPTS = [[True, False], [False, True], [False, True], [True, True]]
OPS = ["add", "sub", "sub", "add"]


def test_block_matches_hand_computed_figures():
    b = block(ATTEMPTS, OPS)
    assert b["n"] == 4 and b["max_attempts"] == 2
    assert b["acc_t1"]["value"] == 0.5 and b["acc_t2"]["value"] == 0.75
    assert b["delta_t1_t2"]["value"] == pytest.approx(0.25)
    assert b["delta_i_to_c"]["value"] == 0.5 and b["delta_c_to_i"]["value"] == 0.25
    assert b["acc_t1"]["lo"] < 0.5 < b["acc_t1"]["hi"]  # an interval, not a point
    assert b["by_op"]["add"] == {"n": 2, "acc_t1": b["by_op"]["add"]["acc_t1"], "acc_t2": b["by_op"]["add"]["acc_t2"]}
    assert (b["by_op"]["add"]["acc_t1"]["value"], b["by_op"]["add"]["acc_t2"]["value"]) == (1.0, 0.5)
    assert (b["by_op"]["sub"]["acc_t1"]["value"], b["by_op"]["sub"]["acc_t2"]["value"]) == (0.0, 1.0)
    assert "by_op" not in block(ATTEMPTS, [None] * 4) and "acc_t2" not in block([[True], [False]])


def test_compare_pairs_gains_over_the_same_problems():
    after = [[True, True], [True, True], [False, False], [True, True]]
    g = compare(ATTEMPTS, after)
    assert g["gain_acc_t1"]["value"] == pytest.approx(0.25)  # 0.5 -> 0.75
    assert g["gain_acc_t2"]["value"] == pytest.approx(0.0)   # 0.75 -> 0.75
    assert g["gain_delta"]["value"] == pytest.approx(-0.25)  # delta 0.25 -> 0.0
    with pytest.raises(ValueError, match="same tasks"):
        compare(ATTEMPTS, after[:3])


def _fix_subtractions(conversation) -> str:
    """Right at once on additions; wrong then right on subtractions; always wrong on products."""
    q = re.search(r"What is (.*)\?", conversation[0].content).group(1)
    value = eval(q.replace("x", "*"))  # noqa: S307 - the environment's own arithmetic
    tries = sum(m.role == "assistant" for m in conversation)
    right = "+" in q or ("-" in q and tries >= 1)
    return f"Answer: {value if right else value + 1}"


def test_evaluate_model_plays_two_attempts_without_oracle_and_tags_operations(tmp_path):
    settings = HeldOutSettings(env="math/arith-v0", kwargs={"difficulty": 6, "split": "test"}, tasks=40)
    eps = evaluate_model(None, settings, tmp_path / "ev", policy=ScriptedPolicy(_fix_subtractions))
    attempts, ops = attempts_of(eps, 2), ops_of(eps)
    assert len(attempts) == 40 and set(ops) == {"add", "sub", "sub_neg", "mul"}
    # retry feedback reveals no verdict, so both attempts are always played: stopping at a success would
    # use the oracle (Acc@t2 would copy every right first answer without the model saying it again).
    assert all(len(e.turns) == 2 for e in eps)
    for a, op in zip(attempts, ops):
        assert a == {"add": [True, True], "sub": [False, True], "sub_neg": [False, True], "mul": [False, False]}[op]
    # A finished run directory is reused, not re-generated.
    again = evaluate_model(None, settings, tmp_path / "ev", policy=ScriptedPolicy("Answer: 0"))
    assert attempts_of(again, 2) == attempts
