"""Ray rollouts: same episodes as the single-process engine, and no episode lost or duplicated when a worker dies."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agentloop.distributed import DistributedConfig, RayRolloutEngine, make_engine
from agentloop.errors import ConfigError
from agentloop.policies.scripted import ScriptedPolicy
from agentloop.registry import envs
from agentloop.rollout import Job, RolloutEngine
from agentloop.runs import RunDir
from agentloop.types import Critique, CritiqueRequest, Episode
from tests.helpers import TOOL_SCHEMA, EchoEnv, RecordingPolicy, ToolsEnv, answer_of

ray = pytest.importorskip("ray")


ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ray_local():
    """One Ray instance for the whole module: starting Ray takes seconds.

    The workers unpickle test classes by reference (``tests.helpers.EchoEnv``), so they need the
    repository root on their path whatever directory pytest was started from.
    """
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def echo_id():
    with envs.registered("test/DistEcho-v0", EchoEnv, kwargs={"n_tasks": 7}) as spec:
        yield spec.id


def right_on_second_try(conversation) -> str:
    """Wrong first answer on odd tasks, right otherwise: episodes differ in length and outcome."""
    word = answer_of(conversation)
    tries = sum(1 for m in conversation if m.role == "assistant")
    return "nope" if tries == 0 and int(word[-1]) % 2 else word


class LengthCritic:
    """A deterministic critic: judges an answer right when it has the prompt's last word."""

    def critique(self, requests: list[CritiqueRequest]) -> list[Critique]:
        out = []
        for r in requests:
            ok = r.answer.strip() == r.question.rsplit(" ", 1)[-1]
            out.append(Critique(text="Looks right." if ok else "The reply is not the word asked for.",
                                final_correct=ok, critic="length"))
        return out


def _jobs(env_id: str, n: int, **make_kwargs) -> list[Job]:
    return [Job(env=env_id, seed=s, make_kwargs=dict(make_kwargs), metadata={"n": s}) for s in range(n)]


def _plain(episodes: list[Episode]) -> list[dict]:
    """Episodes without their random id (and the run key a run directory adds)."""
    out = []
    for ep in episodes:
        d = ep.model_dump(exclude={"id"})
        d["metadata"].pop("run_key", None)
        out.append(d)
    return out


def _engine(reply=answer_of, **dist) -> RayRolloutEngine:
    dist = {"address": "local", "num_workers": 2, "num_cpus_per_worker": 0.5, "episodes_per_worker": 3, **dist}
    return RayRolloutEngine(ScriptedPolicy(reply), distributed=DistributedConfig(**dist))


def test_config_rules():
    with pytest.raises(ValueError, match="address"):
        DistributedConfig(address="http://x")
    with pytest.raises(ValueError, match="per_node"):
        DistributedConfig(address="local", num_gpus_per_worker=1)
    with pytest.raises(ValueError):
        DistributedConfig(address="local", bogus=1)
    engine = make_engine(ScriptedPolicy(["a"]), distributed=DistributedConfig())
    assert isinstance(engine, RolloutEngine)  # address=None keeps the single-process engine
    with pytest.raises(ConfigError, match="make_policy"):
        RayRolloutEngine(distributed=DistributedConfig(address="local", generation="per_node"))


def test_env_worker_in_process(echo_id):
    """The worker's protocol without Ray: start -> observations to answer -> actions -> finished episodes."""
    from agentloop.distributed import EnvWorker
    from agentloop.rollout import RolloutConfig
    from agentloop.types import Completion, EpisodeError

    worker = EnvWorker(RolloutConfig())
    report = worker.advance(new=[(0, Job(env=echo_id, seed=0, options={"index": 1})),
                                 (1, Job(env=echo_id, seed=1, options={"index": 2}))])
    assert [i for i, _, _ in report.waiting_action] == [0, 1] and not report.finished
    failed = EpisodeError(stage="policy", type="RuntimeError", message="boom", turn=0)
    report = worker.advance(actions=[(0, Completion(text="word1")), (1, failed)])
    done = dict(report.finished)
    assert done[0].success and done[1].error == failed and worker.states == {}


def test_env_worker_reports_native_tools():
    from agentloop.distributed import EnvWorker
    from agentloop.rollout import RolloutConfig

    report = EnvWorker(RolloutConfig()).advance(new=[(0, Job(env=ToolsEnv, seed=0)), (1, Job(env=EchoEnv, seed=1))])
    assert [i for i, _, _ in report.waiting_action] == [0, 1]
    assert report.tools == {0: [TOOL_SCHEMA]}


def test_central_generation_carries_tools_to_the_policy(ray_local):
    """Native-tool environments on Ray workers: the driver's generate gets each episode's tool schemas."""
    policy = RecordingPolicy(answer_of)
    jobs = [Job(env=ToolsEnv, seed=s, options={"index": s}) for s in range(3)] + [Job(env=EchoEnv, seed=3)]
    with _engine() as engine:
        engine = engine.using(policy)  # the same worker actors with another driver policy
        got = engine.run(jobs)
    assert all(ep.error is None and ep.success for ep in got)
    calls = [t for t in policy.tools if t is not None]
    assert sum(x == [TOOL_SCHEMA] for call in calls for x in call) == 3
    # a driver policy without a tools argument: the native episodes error (stage policy), the others run
    with _engine() as engine:
        native, plain = engine.run([Job(env=ToolsEnv, seed=0), Job(env=EchoEnv, seed=1, options={"index": 1})])
    assert native.error.stage == "policy" and "render its tools natively" in native.error.message
    assert plain.error is None and plain.success


def test_central_generation_matches_single_process(ray_local, echo_id):
    jobs = _jobs(echo_id, 12, max_attempts=2, feedback="env")
    expected = RolloutEngine(ScriptedPolicy(right_on_second_try)).run(jobs)
    policy = ScriptedPolicy(right_on_second_try)
    with RayRolloutEngine(policy, distributed=DistributedConfig(
            address="local", num_workers=2, num_cpus_per_worker=0.5, episodes_per_worker=4)) as engine:
        got = engine.run(jobs)
    assert _plain(got) == _plain(expected)
    assert any(len(ep.turns) == 2 for ep in got) and all(ep.success for ep in got)
    # central batching: 8 live episodes per round -> far fewer generate calls than episodes x turns
    assert policy.calls < sum(len(ep.turns) for ep in got)


def test_per_node_generation_matches_single_process(ray_local, echo_id):
    import functools

    jobs = _jobs(echo_id, 8, max_attempts=2, feedback="binary")
    expected = RolloutEngine(ScriptedPolicy(right_on_second_try)).run(jobs)
    dist = DistributedConfig(address="local", num_workers=2, num_cpus_per_worker=0.5, generation="per_node")
    with RayRolloutEngine(make_policy=functools.partial(ScriptedPolicy, right_on_second_try),
                          distributed=dist) as engine:
        got = engine.run(jobs)
    assert _plain(got) == _plain(expected)


def test_critiques_and_policy_errors_match_single_process(ray_local, echo_id):
    def flaky(conversation) -> str:
        word = answer_of(conversation)
        if word.endswith("3"):
            raise RuntimeError("policy failed on task 3")
        return right_on_second_try(conversation)

    jobs = _jobs(echo_id, 9, max_attempts=3, feedback="critic")
    expected = RolloutEngine(ScriptedPolicy(flaky), LengthCritic()).run(jobs)
    with RayRolloutEngine(ScriptedPolicy(flaky), LengthCritic(), distributed=DistributedConfig(
            address="local", num_workers=2, num_cpus_per_worker=0.5, episodes_per_worker=2)) as engine:
        got = engine.run(jobs)
    strip = [{**d, "error": d["error"] and {k: v for k, v in d["error"].items() if k != "traceback"}}
             for d in _plain(got)]
    want = [{**d, "error": d["error"] and {k: v for k, v in d["error"].items() if k != "traceback"}}
            for d in _plain(expected)]
    assert strip == want
    assert any(ep.error is not None and ep.error.stage == "policy" for ep in got)
    assert any(t.critique is not None for ep in got for t in ep.turns)


class ExitOnceEnv(EchoEnv):
    """EchoEnv whose process dies (os._exit) at the first step of task 2, once: the marker file remembers."""

    def __init__(self, marker: str, always: bool = False, **kw):
        super().__init__(**kw)
        self.marker, self.always = marker, always

    def step(self, action):
        if self.task.id == "2" and (self.always or not Path(self.marker).exists()):
            Path(self.marker).write_text("died")
            os._exit(1)
        return super().step(action)


def test_worker_death_reruns_episodes_without_loss_or_duplicates(ray_local, tmp_path):
    marker = str(tmp_path / "died")
    with envs.registered("test/ExitOnce-v0", ExitOnceEnv, kwargs={"marker": marker, "n_tasks": 5}) as spec:
        jobs = [Job(env=spec.id, seed=s, options={"index": s % 5}) for s in range(10)]
        expected = RolloutEngine(ScriptedPolicy(answer_of)).run(
            [Job(env=EchoEnv(n_tasks=5), seed=j.seed, options=j.options) for j in jobs])
        run = RunDir.create(tmp_path / "run", config={"test": "death"}, kind="eval")
        with _engine() as engine:
            got = engine.run(jobs, run_dir=run)
            assert engine.restarts == 1 and len(engine.workers) == 2
    assert Path(marker).exists()  # a worker really died
    on_disk = RunDir.open(tmp_path / "run").episodes()
    keys = [ep.metadata["run_key"] for ep in on_disk]
    assert len(on_disk) == len(jobs) and len(set(keys)) == len(jobs)
    assert all(ep.error is None and ep.success for ep in got)
    plain = [{**d, "env_id": "x"} for d in _plain(got)]
    assert plain == [{**d, "env_id": "x"} for d in _plain(expected)]
    # resuming the finished run skips every recorded key and writes nothing
    with _engine() as engine:
        assert engine.run(jobs, run_dir=RunDir.create(tmp_path / "run", {"test": "death"}, resume=True)) == []
    assert len(RunDir.open(tmp_path / "run").episodes()) == len(jobs)


def test_worker_killed_from_outside(ray_local, echo_id, tmp_path):
    jobs = _jobs(echo_id, 12, max_attempts=2, feedback="env")
    run = RunDir.create(tmp_path / "run", config={"test": "kill"})
    with _engine(right_on_second_try) as engine:
        killed = []

        def kill_once(_: Episode) -> None:
            if not killed:
                killed.append(True)
                ray.kill(next(iter(engine.workers.values())))

        got = engine.run(jobs, on_episode=kill_once, run_dir=run)
        assert engine.restarts == 1
    on_disk = run.episodes()
    assert len(got) == len(on_disk) == 12 and len({ep.metadata["run_key"] for ep in on_disk}) == 12
    assert all(ep.success for ep in got)


def test_episode_that_always_kills_its_worker_is_recorded_as_failed(ray_local, tmp_path):
    marker = str(tmp_path / "died")
    with envs.registered("test/ExitAlways-v0", ExitOnceEnv, kwargs={"marker": marker, "always": True}) as spec:
        jobs = [Job(env=spec.id, seed=s, options={"index": s}) for s in range(4)]
        with _engine(max_episode_retries=1, max_worker_restarts=4) as engine:
            got = engine.run(jobs)
    assert len(got) == 4
    assert got[2].error is not None and got[2].error.type == "WorkerDied"
    assert all(ep.success for i, ep in enumerate(got) if i != 2)
