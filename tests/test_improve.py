"""The improve loop end to end on a tiny random model: run, SIGKILL mid-iteration, resume, compare.

The tiny model (random Llama, the default model's tokenizer) answers nonsense, which is fine:
these tests check the machinery (run directory, episode keys, checkpoints, metrics, resume), not
learning; tests/algorithms checks the direction of each method's update.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from agentloop.config import load_config
from agentloop.errors import ConfigError
from agentloop.improve import ImproveConfig, improve
from tests.helpers import improve_config, run_keys

ROOT = Path(__file__).resolve().parents[1]


def test_improve_writes_run_directory(tiny_model_dir, tmp_path):
    cfg = ImproveConfig.model_validate(improve_config(tiny_model_dir))
    result = improve(cfg, out=tmp_path / "run")
    run = tmp_path / "run"
    keys = run_keys(run)
    assert len(keys) == len(set(keys)) == 3 * 5 + 2 * 6 * 2  # 3 evaluations of 5 tasks, 2 x 6 tasks x 2 samples
    assert {p.name for p in (run / "checkpoints").iterdir()} == {"iter-1", "iter-2"}
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [0, 1, 2]
    assert json.loads((run / "metrics.json").read_text())["n"] == 5 == result.n
    # the report is the recorded held-out episodes' accuracy: recount it from episodes.jsonl
    episodes = [json.loads(line) for line in (run / "episodes.jsonl").read_text().splitlines()]
    acc = {it: [bool(e["turns"][0].get("success")) for e in episodes
                if e["metadata"]["phase"] == "eval" and e["metadata"]["iteration"] == it] for it in (0, 2)}
    assert len(acc[0]) == len(acc[2]) == 5
    assert result.before == pytest.approx(sum(acc[0]) / 5) and result.after == pytest.approx(sum(acc[2]) / 5)
    assert result.gain == pytest.approx(result.after - result.before)
    assert (run / "result.json").exists()


def test_sigkill_mid_iteration_then_resume_loses_nothing(tiny_model_dir, tmp_path):
    plain = tmp_path / "plain"
    improve(ImproveConfig.model_validate(improve_config(tiny_model_dir)), out=plain)
    expected = Counter(run_keys(plain))

    killed = tmp_path / "killed"
    code = ("import json, sys; from agentloop.improve import ImproveConfig, improve; "
            "improve(ImproveConfig.model_validate(json.loads(sys.argv[1])), out=sys.argv[2])")
    proc = subprocess.Popen([sys.executable, "-c", code, json.dumps(improve_config(tiny_model_dir)), str(killed)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    episodes = killed / "episodes.jsonl"
    deadline = time.time() + 300
    # kill once iteration 1 has collected some (not all) of its episodes: mid-iteration
    while time.time() < deadline and proc.poll() is None:
        keys = run_keys(killed) if episodes.exists() else []
        if sum(k.startswith("collect|") and k.endswith("|iter=1") for k in keys) >= 3:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = run_keys(killed)
    assert 0 < sum(k.startswith("collect|") and k.endswith("|iter=1") for k in before) < 12
    assert not (killed / "checkpoints" / "iter-1").exists()

    improve(ImproveConfig.model_validate(improve_config(tiny_model_dir)), out=killed, resume=True)
    after = Counter(run_keys(killed))
    assert after == expected  # same episodes, none lost, none duplicated
    rows = [json.loads(line) for line in (killed / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [0, 1, 2]


def test_resume_after_finished_iteration_continues_from_checkpoint(tiny_model_dir, tmp_path):
    run = tmp_path / "run"
    improve(ImproveConfig.model_validate(improve_config(tiny_model_dir, iterations=1)), out=run)
    with pytest.raises(Exception, match="config differs|--resume"):
        improve(ImproveConfig.model_validate(improve_config(tiny_model_dir, iterations=2)), out=run)
    cfg2 = ImproveConfig.model_validate(improve_config(tiny_model_dir, iterations=1))
    result = improve(cfg2, out=run, resume=True)  # nothing left to do: metrics only
    assert len(run_keys(run)) == 2 * 5 + 6 * 2 and len(result.iterations) == 2


def test_bad_configs_fail_before_any_work(tmp_path):
    base = ROOT / "configs" / "default.yaml"
    with pytest.raises(ConfigError, match="method.bogus: unknown field"):
        load_config(ImproveConfig, base, ["method.bogus=1"])
    with pytest.raises(ConfigError, match="held-out split must differ"):
        load_config(ImproveConfig, base, ["env.eval_kwargs.split=train"])
    with pytest.raises(ConfigError, match="LeTI adds reward tokens"):
        load_config(ImproveConfig, base, ["method={name: leti}", "train.lora={r: 8}"])
    with pytest.raises(ConfigError, match="eval.max_attempts >= 2"):
        load_config(ImproveConfig, base, ["method={name: score}", "eval.max_attempts=1"])


def test_auto_threads_leave_the_cores_other_running_processes_use(monkeypatch):
    import importlib

    loop = importlib.import_module("agentloop.training.threads")

    assert loop.running_processes() >= 1  # this process at least (1 where /proc/loadavg is missing)
    monkeypatch.setattr(loop.os, "cpu_count", lambda: 2)
    state = {"load": 0.3, "running": 1}
    monkeypatch.setattr(loop.os, "getloadavg", lambda: (state["load"], 0.0, 0.0))
    monkeypatch.setattr(loop, "running_processes", lambda: state["running"])
    assert loop.cpu_threads(None) == 2  # quiet: only this process runs
    state["running"] = 2  # another run started at the same moment: the load average does not show it yet
    assert loop.cpu_threads(None) == 1
    state.update(load=2.5, running=1)  # busy for the last minute
    assert loop.cpu_threads(None) == 1
    assert loop.cpu_threads(3) == 3  # an explicit setting wins
    monkeypatch.setattr(loop.os, "cpu_count", lambda: 16)
    state.update(load=0.5, running=5)
    assert loop.cpu_threads(None) == 12


def test_cli_dry_run_default():
    out = subprocess.run([sys.executable, "-m", "agentloop.cli", "improve", "--dry-run", "iterations=5"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["iterations"] == 5


def test_training_tasks_never_include_held_out_prompts():
    from agentloop.improve_config import EnvSettings
    from agentloop.improve_tasks import env_factory, eval_indices, prompt_text, train_indices

    cfg = EnvSettings(id="math/arith-v0", kwargs={"difficulty": 1, "num_tasks": 100000}, train_kwargs={"seed": 0},
                      eval_kwargs={"seed": 1}, train_tasks=200, eval_tasks=300)
    eval_env = env_factory(cfg, "eval")()
    held_out = {prompt_text(eval_env, i) for i in eval_indices(cfg)}
    train_env = env_factory(cfg, "train")()
    first = train_indices(cfg, 1, held_out)
    assert len(first) == 200
    assert not held_out & {prompt_text(train_env, i) for i in first}
    assert not set(first) & set(train_indices(cfg, 2, held_out))  # fresh tasks each iteration


@pytest.mark.parametrize("method", [
    {"name": "rise", "max_attempts": 2, "samples_per_task": 2},
    {"name": "score", "samples_per_task": 2, "stage1_iterations": 1},
    {"name": "leti", "samples_per_task": 2},
    {"name": "critique_loop", "samples_per_task": 2},
    {"name": "faft", "samples_per_task": 2, "success_feedback": "Your final answer is correct."},
], ids=lambda m: m["name"])
def test_every_method_runs_two_iterations(tiny_model_dir, tmp_path, method):
    extra = {"method": method, "env": {**improve_config(tiny_model_dir)["env"], "train_tasks": 3, "eval_tasks": 3}}
    if method["name"] == "score":
        extra["eval"] = {"max_attempts": 2, "feedback": "retry", "max_new_tokens": 6, "batch_size": 4}
    result = improve(ImproveConfig.model_validate(improve_config(tiny_model_dir, **extra)), out=tmp_path / "run")
    assert [r["iteration"] for r in result.iterations] == [0, 1, 2]
    assert (tmp_path / "run" / "checkpoints" / "iter-2").is_dir()


def test_restart_from_base_restores_starting_weights(tiny_model_dir, tmp_path):
    import torch

    from agentloop.improve import ImproveLoop

    cfg = ImproveConfig.model_validate(improve_config(tiny_model_dir, method={"name": "critique_loop"}))
    loop = ImproveLoop(cfg, tmp_path / "run")
    start = [p.detach().clone() for p in loop.model.parameters()]
    with torch.no_grad():
        for p in loop.model.parameters():
            p.add_(1.0)
    loop.reload_base()
    assert all(torch.equal(a, b) for a, b in zip(start, loop.model.parameters()))


def test_cli_runs_prints_the_gain_and_resumes_from_the_runimprove_config(tiny_model_dir, tmp_path):
    import yaml

    cfg_path = tmp_path / "tiny.yaml"
    cfg_path.write_text(yaml.safe_dump(improve_config(tiny_model_dir, iterations=1)))
    run = tmp_path / "run"
    cli = [sys.executable, "-m", "agentloop.cli", "improve"]
    first = subprocess.run([*cli, str(cfg_path), "--out", str(run)], cwd=ROOT, capture_output=True, text=True,
                           timeout=300, check=False)
    assert first.returncode == 0, first.stderr
    assert "before" in first.stdout and "paired-bootstrap 95% interval" in first.stdout
    again = subprocess.run([*cli, "--resume", "--out", str(run)], cwd=ROOT, capture_output=True, text=True,
                           timeout=300, check=False)
    assert again.returncode == 0, again.stderr
    assert len(run_keys(run)) == 2 * 5 + 6 * 2


def test_eval_every_skips_intermediate_evaluations(tiny_model_dir, tmp_path):
    cfg = improve_config(tiny_model_dir, iterations=2)
    cfg["eval"] = {**cfg["eval"], "every": 5}
    result = improve(ImproveConfig.model_validate(cfg), out=tmp_path / "run")
    assert [r["phase"] for r in result.iterations] == ["eval", "train", "eval"]
    assert len(run_keys(tmp_path / "run")) == 2 * 5 + 2 * 6 * 2


def test_lora_run_saves_adapter_and_generation_copy_follows(tiny_model_dir, tmp_path):
    cfg = improve_config(tiny_model_dir, iterations=1)
    cfg["train"] = {**cfg["train"], "lora": {"r": 4, "alpha": 8}}
    improve(ImproveConfig.model_validate(cfg), out=tmp_path / "run")
    assert (tmp_path / "run" / "checkpoints" / "iter-1" / "adapter_config.json").exists()


def test_native_tool_env_reaches_the_policy_through_improve(tiny_model_dir, tmp_path):
    """improve wraps the generation policy (ConditionedPolicy): a native-tool environment's schemas must still
    reach it, in collection and in held-out evaluation."""
    from agentloop.registry import envs
    from agentloop.runs import RunDir
    from tests.helpers import TOOL_SCHEMA, RecordingPolicy, ToolsEnv, answer_of

    policy = RecordingPolicy(answer_of)
    env = {"id": "test/ImproveTools-v0", "train_kwargs": {"prefix": "a"}, "eval_kwargs": {"prefix": "b"},
           "train_tasks": 2, "eval_tasks": 2}
    with envs.registered("test/ImproveTools-v0", ToolsEnv, kwargs={"n_tasks": 4}):
        cfg = ImproveConfig.model_validate(improve_config(tiny_model_dir, iterations=1, env=env))
        result = improve(cfg, out=tmp_path / "run", policy=policy)
    episodes = RunDir.open(tmp_path / "run").episodes()
    assert len(episodes) == 2 * 2 + 2 * 2 and all(e.error is None and e.success for e in episodes)
    schemas = [tools for call in policy.tools for tools in (call or [])]
    assert len(schemas) == len(episodes) and all(t == [TOOL_SCHEMA] for t in schemas)
    assert result.before == result.after == 1.0 and result.held_out[-1].metrics.acc_by_attempt[0].value == 1.0


def test_improve_logs_steps_and_iterations_to_tensorboard(tiny_model_dir, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    method = {"name": "rise", "max_attempts": 2, "samples_per_task": 2, "filter": "all"}  # trains on every episode
    improve(ImproveConfig.model_validate(improve_config(tiny_model_dir, method=method)), out=tmp_path / "run")
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert "train/loss" in tags, tags
    steps = [e.step for e in events.Scalars("train/loss")]
    assert steps == sorted(steps) and len(steps) == len(set(steps)) > 1  # one axis across both iterations
    acc = [t for t in tags if t.startswith("iter/") and "acc_by_attempt" in t and not t.endswith(("/lo", "/hi", "/n"))]
    assert acc, tags
    assert sorted(e.step for e in events.Scalars(acc[0])) == [0, 1, 2]  # one point per evaluated iteration


def test_rise_held_out_protocols_use_its_own_feedback_text_after_the_answers_they_name(tiny_model_dir, tmp_path):
    """retry: RISE's text after every answer, every attempt played; binary: RISE's text after wrong answers only,
    the episode stops at a success; both branch from the same recorded first attempt."""
    extra = {"method": {"name": "rise", "max_attempts": 2, "samples_per_task": 2}, "iterations": 1,
             "eval": {"max_attempts": 2, "protocols": ["retry", "binary"], "max_new_tokens": 6, "batch_size": 4}}
    cfg = ImproveConfig.model_validate(improve_config(tiny_model_dir, **extra))
    result = improve(cfg, out=tmp_path / "run")
    episodes = [json.loads(line) for line in (tmp_path / "run" / "episodes.jsonl").read_text().splitlines()]
    held_out = [e for e in episodes if e["metadata"]["phase"] == "eval"]
    first = {(e["metadata"]["iteration"], e["metadata"]["task_index"]): e["turns"][0]["action"]
             for e in held_out if e["metadata"].get("mode") == "first"}
    assert len(first) == 2 * 5 and len(held_out) == 3 * 2 * 5
    template = cfg.method.feedback_template.split("{")[0].strip()  # "The answer is incorrect. Please try again..."
    for e in held_out:
        md = e["metadata"]
        if md.get("mode") == "first":
            continue
        assert e["turns"][0]["action"] == first[(md["iteration"], md["task_index"])]  # the shared first attempt
        if md["protocol"] == "retry" or not e["turns"][0]["success"]:
            assert len(e["turns"]) == 2
            last_user = [m["content"] for m in e["turns"][1]["observation"] if m["role"] == "user"][-1]
            assert last_user.startswith(template), last_user
        else:
            assert len(e["turns"]) == 1  # binary: stopped at the first success (oracle-stopped)
    assert list(result.self_correction) == ["retry", "binary"] and result.protocol == "retry"
    assert result.self_correction["binary"].after.oracle_stopped and not result.self_correction["retry"].after.oracle_stopped


def test_rise_best_of_n_branches_run_through_the_collector_and_are_recorded(tiny_model_dir, tmp_path):
    """method.best_of: the branches from failed second-attempt states are collected after the rollouts, recorded
    in episodes.jsonl under their own phase (so a resume reuses them), and counted in the iteration row."""
    extra = {"method": {"name": "rise", "max_attempts": 2, "samples_per_task": 2, "best_of": 3, "filter": "all"},
             "iterations": 1}
    cfg = ImproveConfig.model_validate(improve_config(tiny_model_dir, **extra))
    result = improve(cfg, out=tmp_path / "run")
    episodes = [json.loads(line) for line in (tmp_path / "run" / "episodes.jsonl").read_text().splitlines()]
    rollouts = {e["metadata"]["run_key"]: e for e in episodes if e["metadata"]["phase"] == "collect"}
    branches = [e for e in episodes if e["metadata"]["phase"] == "branch"]
    failed = [e for e in rollouts.values() if len(e["turns"]) == 2 and not e["turns"][1]["success"]]
    assert failed and len(branches) == 2 * len(failed)
    for b in branches:
        source = rollouts[b["metadata"]["source"]]
        assert len(b["turns"]) == 1 and b["turns"][0]["observation"] == source["turns"][1]["observation"]
    row = result.iterations[1]
    assert row["branch_episodes"] == len(branches) and 0.0 <= row["branch_success"] <= 1.0
    # collection records the ids the hf policy sampled, so every example trains them (none re-rendered)
    assert all(t["token_ids"] and t["prompt_token_ids"] for e in episodes if e["metadata"]["phase"] != "eval"
               for t in e["turns"])
    assert row["train_examples"] > 0 and row["train_examples_rendered"] == 0


def test_result_reports_self_correction_before_and_after_with_gains_and_operations(tiny_model_dir, tmp_path):
    """Two-attempt held-out evaluation: the summary carries both reports, the paired gains and per-operation rows,
    computed from the recorded per-task attempts; the printed result shows them."""
    from agentloop.evaluation.metrics import pad_attempts
    from agentloop.improve_report import format_result

    extra = {"method": {"name": "rise", "max_attempts": 2, "samples_per_task": 2}, "iterations": 1,
             "env": {"id": "math/arith-v0", "kwargs": {"difficulty": 6}, "train_kwargs": {"split": "train"},
                     "eval_kwargs": {"split": "test"}, "train_tasks": 4, "eval_tasks": 6},
             "eval": {"max_attempts": 2, "feedback": "retry", "max_new_tokens": 6, "batch_size": 4}}
    cfg = ImproveConfig.model_validate(improve_config(tiny_model_dir, **extra))
    r = improve(cfg, out=tmp_path / "run")
    first, final = r.held_out[0].problems["retry"], r.held_out[-1].problems["retry"]
    assert len(first) == len(final) == 6 and all(len(p.verdicts) == 2 for p in first)
    assert {p.tag for p in first} <= {"add", "sub", "sub_neg", "mul"}
    eps = sorted((json.loads(line) for line in (tmp_path / "run" / "episodes.jsonl").read_text().splitlines()),
                 key=lambda e: e["metadata"]["task_index"])
    recorded = [pad_attempts([t["success"] for t in e["turns"]], 2) for e in eps
                if e["metadata"]["phase"] == "eval" and e["metadata"]["iteration"] == 0
                and e["metadata"].get("protocol") == "retry"]
    assert recorded == [list(p.verdicts) for p in first]
    sc = r.self_correction["retry"]
    assert sc.before.acc_t1.value == pytest.approx(sum(p.verdicts[0] for p in first) / 6)
    assert sc.after.acc_t2.value == pytest.approx(sum(p.verdicts[1] for p in final) / 6)
    expected_delta = (sum(p.verdicts[1] - p.verdicts[0] for p in final)
                      - sum(p.verdicts[1] - p.verdicts[0] for p in first)) / 6
    assert sc.gains.gain_delta.value == pytest.approx(expected_delta)
    assert (r.before, r.after, r.gain) == (sc.before.acc_t1.value, sc.after.acc_t1.value, sc.gains.gain_acc_t1.value)
    assert sum(v.n for v in sc.before.by_op.values()) == 6
    text = format_result(r)
    assert "delta(t1,t2)" in text and "delta i->c" in text and "per operation" in text


def test_improve_and_eval_report_identical_figures_on_the_same_episodes(tiny_model_dir, tmp_path):
    """One report: the figures of improve's result and those agentloop eval's summary computes from the same
    recorded episodes are the same numbers, protocol by protocol."""
    from agentloop.evaluation.summarize import summarize
    from agentloop.runs import RunDir

    extra = {"iterations": 1, "seed": 3, "eval": {"max_attempts": 2, "protocols": ["retry", "binary"],
                                                  "max_new_tokens": 6, "batch_size": 4}}
    cfg = ImproveConfig.model_validate(improve_config(tiny_model_dir, **extra))
    r = improve(cfg, out=tmp_path / "run")
    episodes = RunDir(tmp_path / "run").episodes()
    for iteration, held in ((0, r.held_out[0]), (1, r.held_out[-1])):
        eps = [e for e in episodes if e.metadata.get("phase") == "eval" and e.metadata["iteration"] == iteration]
        metrics = summarize(eps, 2)
        assert list(metrics["protocols"]) == ["retry", "binary"]
        for name, report in held.protocols.items():
            block = metrics["protocols"][name]["overall"]
            expected = report.as_json()
            assert {k: block[k] for k in expected} == expected
    assert r.self_correction["binary"].after == r.held_out[-1].protocols["binary"]


@pytest.mark.parametrize("lora", [None, {"r": 4, "alpha": 8}])
def test_static_backend_generates_what_hf_does_in_the_loop(tiny_model_dir, tmp_path, lora):
    """generation.backend=static decodes the same weights: greedy evaluation of the starting model equals hf's, and
    the loop trains and evaluates again through the refreshed weights (the plain copy, or peft's LoRA layers)."""
    texts = {}
    for backend in ("hf", "static"):
        cfg = improve_config(tiny_model_dir, iterations=1, generation_dtype="float32", generation={"backend": backend})
        if lora:
            cfg["train"] = {**cfg["train"], "lora": lora}
        result = improve(ImproveConfig.model_validate(cfg), out=tmp_path / backend)
        assert [r["phase"] for r in result.iterations if r["phase"] == "eval"] == ["eval", "eval"]
        episodes = [json.loads(line) for line in (tmp_path / backend / "episodes.jsonl").read_text().splitlines()]
        texts[backend] = {e["metadata"]["run_key"]: [t["action"] for t in e["turns"]] for e in episodes
                          if e["metadata"].get("phase") == "eval" and int(e["metadata"].get("iteration", 0)) == 0}
    assert texts["hf"] and texts["hf"] == texts["static"]
