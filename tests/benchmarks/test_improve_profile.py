"""benchmarks/improve_profile.py end to end in --small mode on a tiny random model (seconds)."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

from tests.helpers import improve_config

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("improve_profile_bench", ROOT / "benchmarks" / "improve_profile.py")
bench = importlib.util.module_from_spec(_spec)
sys.modules["improve_profile_bench"] = bench
_spec.loader.exec_module(bench)


def test_small_profile_splits_time_and_memory_by_phase(tiny_model_dir, tmp_path, capsys):
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(improve_config(tiny_model_dir)))
    dest = tmp_path / "profile.json"
    code = bench.main(["--config", str(config), "--small", "--set", "method.name=rise", "--set", "env.eval_tasks=4", "--set", "env.train_tasks=4",
                       "--set", "collect.max_new_tokens=4", "--set", "eval.max_new_tokens=4",
                       "--out", str(tmp_path / "run"), "--json", str(dest)])
    assert code == 0
    record = json.loads(dest.read_text())
    phases = record["phases"]
    assert list(phases) == ["generation", "training", "evaluation", "other"]
    assert sum(p["seconds"] for p in phases.values()) == pytest.approx(record["wall_s"], abs=0.3)
    for name in ("generation", "training", "evaluation"):
        assert phases[name]["seconds"] > 0, name
        assert 0 < phases[name]["peak_rss_mib"] <= record["peak_rss_mib"], name
    assert phases["training"]["tokens_per_s"] and record["train_tokens_per_s_by_iteration"]
    assert 0 < phases["training"]["tokens"] <= phases["training"]["padded_tokens"]
    assert phases["generation"]["tokens"] > 0 and phases["evaluation"]["tokens"] > 0
    assert record["overrides"][:len(bench.SMALL)] == bench.SMALL
    out = capsys.readouterr().out
    assert "| generation |" in out and "| total |" in out


def test_tree_rss_counts_child_processes():
    """The vllm backend's engine lives in child processes: the tree's RSS must include them."""
    import subprocess
    import time

    child = subprocess.Popen([sys.executable, "-c", "import sys, time; x = b'x' * (64 << 20); print(1, flush=True); "
                              "time.sleep(60)"], stdout=subprocess.PIPE)
    try:
        assert child.stdout.readline().strip() == b"1"  # its 64 MiB are written (resident)
        time.sleep(0.1)
        assert child.pid in bench._descendants(os.getpid())
        assert bench.tree_rss_kib() - bench._status_kib("VmRSS") >= 60 << 10
    finally:
        child.kill()
        child.wait()
