"""Experiment tracking (agentloop.tracking): tags, config rules, and what each backend writes, offline."""

from __future__ import annotations

import json
import os
import sqlite3
import struct
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from agentloop.errors import ConfigError
from agentloop.evaluation.metrics import Estimate
from agentloop.tracking import (
    MultiTracker,
    Tracker,
    TrackingConfig,
    flatten_metrics,
    make_tracker,
    resource_metrics,
    tag,
)

ROOT = Path(__file__).resolve().parents[2]
TRAIN = [{"train/loss": 2.0}, {"train/loss": 1.5}, {"train/loss": 0.25}]  # steps 1, 2, 3
EVAL = {0: {"acc@t1": 0.25, "acc@t2": 0.5, "delta_i->c": 0.25}, 1: {"acc@t1": 0.75, "acc@t2": 0.75, "delta_i->c": 0.0}}


def log_example_run(tracker: Tracker) -> None:
    """Training steps and per-iteration eval rows on their own axes, as `improve` logs them."""
    tracker.log_config({"method": {"name": "score"}, "seed": 3})
    for step, row in enumerate(TRAIN, 1):
        tracker.log(row, step=step)
    for iteration, row in EVAL.items():
        tracker.log(flatten_metrics(row, "eval"), step=iteration)
    tracker.log({"wall_s": 12.5}, step=7)  # a tag without a prefix


EXPECTED = {
    "train/loss": [(1, 2.0), (2, 1.5), (3, 0.25)],
    "eval/acc_at_t1": [(0, 0.25), (1, 0.75)],
    "eval/acc_at_t2": [(0, 0.5), (1, 0.75)],
    "eval/delta_i_to_c": [(0, 0.25), (1, 0.0)],
    "wall_s": [(7, 12.5)],
}


# -- tags -------------------------------------------------------------------------------------------
def test_tags_are_safe_for_every_backend():
    assert tag("acc@t1") == "acc_at_t1"
    assert tag("delta_i->c") == "delta_i_to_c"
    assert tag("eval/pass rate (%)") == "eval/pass_rate____"


def test_flatten_metrics_walks_records_estimates_and_attempt_lists():
    from agentloop.training.trainer import TrainStats

    row = {
        "iteration": 2, "phase": "eval", "acc@t1": 0.5, "excludes_zero": True, "note": None,
        "acc": Estimate(value=0.4, n=10, lo=0.1, hi=0.7, method="wilson"),
        "acc_by_attempt": [0.4, 0.6],
        "train": TrainStats(steps=3, tokens=1200, seconds=4.0, loss_first=2.0, loss_last=1.0),
    }
    flat = flatten_metrics(row, prefix="it")
    assert flat["it/iteration"] == 2.0 and flat["it/acc_at_t1"] == 0.5 and flat["it/excludes_zero"] == 1.0
    assert "it/phase" not in flat and "it/note" not in flat and "it/acc/method" not in flat
    assert (flat["it/acc"], flat["it/acc/lo"], flat["it/acc/hi"], flat["it/acc/n"]) == (0.4, 0.1, 0.7, 10.0)
    assert (flat["it/acc_by_attempt/1"], flat["it/acc_by_attempt/2"]) == (0.4, 0.6)
    assert flat["it/train/loss_last"] == 1.0 and flat["it/train/tokens_per_s"] == 300.0
    assert "it/train/loss_mean" not in flat  # None
    assert all(isinstance(v, float) for v in flat.values())


def test_resource_metrics_report_peak_memory():
    mem = resource_metrics()
    assert mem["memory/rss_peak_mb"] > 10  # a python process with pydantic loaded


# -- config ----------------------------------------------------------------------------------------
def test_config_defaults_to_tensorboard_and_explains_conflicts():
    assert TrackingConfig().backends == ("tensorboard",)
    with pytest.raises(ValidationError, match="lists 'wandb' twice"):
        TrackingConfig(backends=["wandb", "wandb"])
    with pytest.raises(ValidationError, match="add 'wandb' to backends or drop wandb_entity"):
        TrackingConfig(wandb_entity="me")
    with pytest.raises(ValidationError, match="add 'mlflow' to backends or drop mlflow_tracking_uri"):
        TrackingConfig(backends=["tensorboard"], mlflow_tracking_uri="sqlite:///x.db")
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        TrackingConfig(backend="wandb")
    with pytest.raises(ValidationError):
        TrackingConfig(backends=["neptune"])


def test_a_missing_tracker_package_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # makes `import wandb` fail
    with pytest.raises(ConfigError, match=r"'wandb'.*pip install 'agentloop\[tracking\]'"):
        make_tracker(TrackingConfig(backends=["tensorboard", "wandb"]), tmp_path)


def test_nothing_is_imported_unless_configured(tmp_path):
    code = textwrap.dedent(f"""
        import sys
        import agentloop
        from agentloop.tracking import TrackingConfig, flatten_metrics, make_tracker
        tracker = make_tracker(TrackingConfig(backends=[]), {str(tmp_path)!r})
        tracker.log(flatten_metrics({{"loss": 1.0}}), step=1)
        tracker.close()
        heavy = [m for m in ("tensorboardX", "tensorboard", "wandb", "mlflow", "trackio", "torch") if m in sys.modules]
        print(heavy)
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    assert not any(tmp_path.iterdir())  # no backend, no files


# -- fan-out ---------------------------------------------------------------------------------------
class Recorder:
    """A tracker that keeps what it was given (a real Tracker, for checking the fan-out)."""

    def __init__(self) -> None:
        self.rows: list[tuple[dict[str, float], int]] = []
        self.closed = False

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        self.rows.append((dict(metrics), step))

    def log_config(self, config: Mapping[str, Any]) -> None:
        pass

    def close(self) -> None:
        self.closed = True


class Broken(Recorder):
    def log(self, metrics: Mapping[str, float], step: int) -> None:
        raise OSError("disk full")


def test_fan_out_switches_off_a_failing_tracker_and_keeps_the_others():
    good, bad = Recorder(), Broken()
    assert isinstance(good, Tracker)  # the Protocol is runtime-checkable
    tracker = MultiTracker([bad, good])
    with pytest.warns(RuntimeWarning, match="Broken failed in log.*switched off.*disk full"):
        tracker.log({"a": 1.0}, step=1)
    tracker.log({"a": 2.0}, step=2)  # no second warning: the broken one is gone
    tracker.close()
    assert good.rows == [({"a": 1.0}, 1), ({"a": 2.0}, 2)] and good.closed and not bad.closed


# -- backends --------------------------------------------------------------------------------------
def scalars_of(log_dir: Path) -> tuple[dict[str, list[tuple[int, float]]], list[str]]:
    """Scalars and text tags as TensorBoard itself reads them from the event files."""
    event_accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator",
        reason="reading event files needs tensorboard: pip install 'agentloop[tracking]'")
    acc = event_accumulator.EventAccumulator(str(log_dir))
    acc.Reload()
    scalars = {t: [(e.step, pytest.approx(e.value)) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}
    return scalars, acc.Tags().get("tensors", [])


def test_tensorboard_event_files_in_the_run_dir_load_with_tensorboards_reader(tmp_path):
    tracker = make_tracker(TrackingConfig(), tmp_path)  # the default: TensorBoard only
    log_example_run(tracker)
    tracker.close()
    files = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert len(files) == 1
    scalars, tensors = scalars_of(tmp_path / "tensorboard")
    assert scalars == EXPECTED
    assert any(t.startswith("config") for t in tensors)  # the config as a text summary


def wandb_records(path: Path) -> Iterator[Any]:
    """The protobuf records of an offline ``run-*.wandb`` file (a LevelDB-style log: 32 KiB blocks of
    7-byte-headed chunks after the ':W&B' file header)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, pos, buf = path.read_bytes(), 7, b""
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # block trailer too short for a header: padding
            pos += 32768 - pos % 32768
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos: pos + 7])
        buf += data[pos + 7: pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST chunk
            record = pb.Record()
            record.ParseFromString(buf)
            buf = b""
            yield record


def test_wandb_offline_run_records_each_prefix_on_its_own_step_axis(tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="the wandb backend needs wandb: pip install 'agentloop[tracking]'")
    monkeypatch.setenv("WANDB_SILENT", "true")
    tracker = make_tracker(TrackingConfig(backends=["wandb"], project="agentloop-test", run_name="r1"), tmp_path)
    log_example_run(tracker)
    tracker.close()
    import wandb

    wandb.teardown()  # W&B's service process writes the offline file; at exit, or now
    [run_file] = (tmp_path / "wandb").glob("offline-run-*/run-*.wandb")
    history: dict[str, list[tuple[int, float]]] = {}
    config: dict[str, Any] = {}
    for record in wandb_records(run_file):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            row = {item.key or ".".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            axis = next((k for k in row if k == "step" or k.endswith("/step")), None)
            if axis is None:  # W&B's own rows (_runtime, _timestamp)
                assert all(k.startswith("_") for k in row), row
                continue
            for key, value in row.items():
                if not key.startswith("_") and key != axis:
                    history.setdefault(key, []).append((row[axis], value))
        elif kind == "config":
            config.update({item.key: json.loads(item.value_json) for item in record.config.update})
        elif kind == "run":
            assert record.run.project == "agentloop-test" and record.run.display_name == "r1"
    assert history == EXPECTED
    assert config["method"] == {"name": "score"} and config["seed"] == 3


def test_mlflow_run_in_a_local_store_has_every_metric_by_step(tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="the mlflow backend needs mlflow-skinny: pip install 'agentloop[tracking]'")
    pytest.importorskip("sqlalchemy", reason="mlflow's local store needs sqlalchemy: pip install 'agentloop[tracking]'")
    from mlflow.tracking import MlflowClient

    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    tracker = make_tracker(TrackingConfig(backends=["mlflow"], project="exp", run_name="r1"), tmp_path / "run")
    [mlflow_tracker] = tracker.trackers
    log_example_run(tracker)
    tracker.close()
    assert not any((tmp_path / "cwd").iterdir())  # everything stays in the run folder
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'run' / 'mlflow.db'}")
    run = client.get_run(mlflow_tracker.run_id)
    assert run.info.run_name == "r1" and run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "exp"
    got = {k: sorted((m.step, pytest.approx(m.value)) for m in client.get_metric_history(run.info.run_id, k))
           for k in run.data.metrics}
    assert got == EXPECTED
    assert run.data.params == {"method.name": "score", "seed": "3"}
    [config] = (tmp_path / "run" / "mlartifacts").glob("*/artifacts/config.json")
    assert json.loads(config.read_text())["method"] == {"name": "score"}


def test_trackio_run_is_stored_in_its_local_database(tmp_path):
    pytest.importorskip("trackio", reason="the trackio backend needs trackio: pip install 'agentloop[tracking]'")
    # trackio fixes its storage folder at import ($TRACKIO_DIR): a fresh process keeps it under tmp_path.
    code = textwrap.dedent(f"""
        from agentloop.tracking import TrackingConfig, make_tracker
        from tests.core.test_tracking import log_example_run
        tracker = make_tracker(TrackingConfig(backends=["trackio"], project="agentloop-test", run_name="r1"),
                               {str(tmp_path / "run")!r})
        log_example_run(tracker)
        tracker.close()
    """)
    env = {**os.environ, "TRACKIO_DIR": str(tmp_path / "trackio")}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    with sqlite3.connect(tmp_path / "trackio" / "agentloop-test.db") as db:
        rows = db.execute("SELECT run_name, step, metrics FROM metrics ORDER BY id").fetchall()
        [(config,)] = db.execute("SELECT config FROM configs WHERE run_name = 'r1'").fetchall()
    got: dict[str, list[tuple[int, float]]] = {}
    for run_name, step, metrics in rows:
        assert run_name == "r1"
        for key, value in json.loads(metrics).items():
            got.setdefault(key, []).append((step, pytest.approx(value)))
    assert got == EXPECTED
    assert json.loads(config)["method"] == {"name": "score"}


def test_readme_tracking_example_runs_as_written(tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="the docs/usage.md example logs to mlflow: pip install 'agentloop[tracking]'")
    import re

    blocks = re.findall(r"```python\n(# track a run\n.*?)```", (ROOT / "docs" / "usage.md").read_text(), flags=re.S)
    assert len(blocks) == 1, "docs/usage.md lost its tracking example"
    monkeypatch.chdir(tmp_path)
    exec(compile(blocks[0], "docs/usage.md", "exec"), {})
    scalars, _ = scalars_of(tmp_path / "runs" / "my-run" / "tensorboard")
    assert scalars["train/loss"] == [(1, 1.2), (2, 0.9), (3, 0.7)]
    assert scalars["iter/delta_i_to_c"] == [(1, 0.09)] and scalars["memory/rss_peak_mb"][0][0] == 1
    assert (tmp_path / "runs" / "my-run" / "mlflow.db").exists()


def test_a_resolved_config_reads_back_as_written():
    # improve --resume validates the stored config, where every field is written out with its default
    from agentloop.tracking import TrackingConfig

    stored = TrackingConfig().model_dump(mode="json")
    assert TrackingConfig.model_validate(stored) == TrackingConfig()
