"""`evaluate` on Ray workers (distributed.address='local'): the same metrics as one process, resumable."""

from __future__ import annotations

from pathlib import Path

import pytest
from agentloop.policies.scripted import ScriptedPolicy
from tests.helpers import fixer_reply

from agentloop.distributed import DistributedConfig, RayRolloutEngine
from agentloop.errors import ConfigError
from agentloop.evaluation.evaluate import EvalConfig, evaluate
from agentloop.runs import RunDir

ray = pytest.importorskip("ray")

ROOT = Path(__file__).resolve().parents[2]
DIST = {"address": "local", "num_workers": 2, "num_cpus_per_worker": 0.5, "episodes_per_worker": 2}


@pytest.fixture(scope="module")
def ray_local():
    """One Ray instance for the module (starting Ray takes seconds); workers import tests.helpers from ROOT."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
    yield
    ray.shutdown()


def _keyed(run: RunDir) -> dict[str, tuple]:
    return {ep.metadata["run_key"]: (ep.success, [t.action for t in ep.turns]) for ep in run.episodes()}


def test_ray_eval_equals_single_process_and_leaves_ray_running(tmp_path, ray_local, echo_ids, monkeypatch):
    ran_on_ray = []
    real_run = RayRolloutEngine.run

    def counting_run(self, jobs, on_episode=None, **kw):  # the real run, counted: proves the Ray engine was used
        ran_on_ray.append(len(list(jobs)))
        return real_run(self, jobs, on_episode, **kw)

    monkeypatch.setattr(RayRolloutEngine, "run", counting_run)
    base = EvalConfig(envs=list(echo_ids), max_attempts=2, feedback="binary")
    single = evaluate(base, tmp_path / "one", policy=ScriptedPolicy(fixer_reply))
    cfg = EvalConfig.model_validate({**base.model_dump(), "distributed": DIST})  # as a config file gives it
    spread = evaluate(cfg, tmp_path / "ray", policy=ScriptedPolicy(fixer_reply))
    # two phases: the 9 shared first attempts, then the 9 binary episodes replaying them on the workers
    assert spread.new_episodes == single.new_episodes == 18 and ran_on_ray == [9, 9]
    assert spread.metrics == single.metrics
    assert _keyed(spread.run) == _keyed(single.run)
    assert spread.run.read_config()["distributed"]["address"] == "local"
    assert ray.is_initialized()  # the engine did not start Ray, so it left the shared instance running


def test_ray_eval_resumes_and_may_switch_engines(tmp_path, ray_local, echo_ids):
    cfg = EvalConfig(envs=list(echo_ids), max_attempts=2, feedback="binary", distributed=DIST)
    seen = []

    def crash(ep):
        seen.append(ep)
        if len(seen) == 3:
            raise KeyboardInterrupt  # a kill after 3 finished episodes

    with pytest.raises(KeyboardInterrupt):
        evaluate(cfg, tmp_path / "run", policy=ScriptedPolicy(fixer_reply), on_episode=crash)
    assert len(RunDir.open(tmp_path / "run").episodes()) == 3
    # resume on one process: where episodes run is not part of what the run is
    single = cfg.model_copy(update={"distributed": DistributedConfig()})
    res = evaluate(single, tmp_path / "run", policy=ScriptedPolicy(fixer_reply), resume=True)
    keys = [ep.metadata["run_key"] for ep in res.run.episodes()]
    assert res.new_episodes == 15 and len(keys) == len(set(keys)) == 18
    again = evaluate(cfg, tmp_path / "run", policy=ScriptedPolicy(fixer_reply), resume=True)
    assert again.new_episodes == 0 and again.metrics == res.metrics


def test_per_node_refuses_instances_before_creating_the_run(tmp_path, echo_ids):
    cfg = EvalConfig(envs=[echo_ids[0]], distributed={**DIST, "generation": "per_node"})
    with pytest.raises(ConfigError, match="per_node"):
        evaluate(cfg, tmp_path / "r", policy=ScriptedPolicy(fixer_reply))
    assert not (tmp_path / "r").exists()
