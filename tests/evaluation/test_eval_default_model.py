"""One small end-to-end evaluation of the embedded default model (real generation, real report)."""

from __future__ import annotations

import pytest

from agentloop.evaluation.evaluate import EvalConfig, evaluate
from agentloop.evaluation.report import build_report


@pytest.mark.slow
def test_default_model_eval_and_report(tmp_path):
    cfg = EvalConfig(envs=["math/arith-v0"], limit=2, max_attempts=2, feedback="env", sampling={"max_new_tokens": 16},
                     policy={"id": "hf", "kwargs": {"max_batch_size": 4}})
    res = evaluate(cfg, tmp_path / "run")
    eps = [e for e in res.run.episodes() if e.metadata["mode"] == "sequential"]  # not the shared first attempts
    assert len(eps) == 2 and all(ep.error is None for ep in eps)
    assert all(t.token_ids for ep in eps for t in ep.turns)  # exact token counts were requested
    accs = res.metrics["overall"]["acc_by_attempt"]
    assert len(accs) == 2 and accs[0]["n"] == 2
    assert res.metrics["overall"]["tokens"]["exact"] is True
    _, html = build_report([res.run.path])
    assert "Accuracy by attempt" in html.read_text()
