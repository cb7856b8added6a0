"""The efficacy matrix machinery: every cell's config, the same-budget rule, and two cells end to end in smoke
mode on a tiny random model (GRPO through TRL, and an improve cell with transfer environments)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("efficacy_bench", ROOT / "benchmarks" / "efficacy.py")
efficacy = importlib.util.module_from_spec(_spec)
sys.modules["efficacy_bench"] = efficacy  # pydantic resolves the module's annotations through sys.modules
_spec.loader.exec_module(efficacy)


def _validate(cell):
    from agentloop.baselines.trl_grpo import GRPOBaselineConfig
    from agentloop.improve import ImproveConfig

    return (ImproveConfig if cell.kind == "improve" else GRPOBaselineConfig).model_validate(cell.config)


def test_the_matrix_has_every_method_and_each_cell_validates_at_both_sizes():
    names = efficacy.cell_names()
    cells = {n: efficacy.load_cell(n) for n in names}
    methods = {c.config["method"]["name"] if c.kind == "improve" else "grpo" for c in cells.values()}
    assert methods == {"rs_sft", "rise", "score", "leti", "critique_loop", "faft", "grpo", "gold_sft"}
    assert any(c.transfer for c in cells.values())
    for name, cell in cells.items():
        for smoke in (False, True):
            cfg = _validate(efficacy.sized(cell, smoke, None))
            heldout = cfg.eval if cell.kind == "improve" else cfg.heldout
            protocols = [p.name for p in heldout.protocol_list()] if cell.kind == "improve" else \
                [p.name for p in heldout.protocols]
            assert protocols == cell.protocols and protocols[0] == "retry", name
            assert heldout.max_attempts == (5 if "5" in name else 2), name  # RISE's 5-turn cell: p1@t5, m1@t5
        if cell.control is not None:  # the control is evaluated under every protocol the cell is compared with it
            assert set(cell.protocols) <= set(efficacy.load_cell(cell.control).protocols), name
        assert cell.control is None or cell.control in cells, f"{name}: control {cell.control} is not a cell"


def _budget(cell) -> int:
    """Training samples drawn over the run: tasks x samples per task x iterations (GRPO: prompts x group)."""
    c = cell.config
    if cell.kind == "grpo":
        return c["train_tasks"] * c["num_generations"] * int(c.get("epochs", 1))
    return c["env"]["train_tasks"] * c["method"]["samples_per_task"] * c["iterations"]


def test_methods_and_their_controls_share_the_budget_and_the_held_out_tasks():
    for name in efficacy.cell_names():
        cell = efficacy.load_cell(name)
        if cell.control is None or name.startswith("transfer"):
            continue
        control = efficacy.load_cell(cell.control)
        # best-of-N candidates are samples on top of the rollouts: such a cell differs even at equal rollouts
        differs = _budget(cell) != _budget(control) or (cell.kind != "grpo" and cell.config["method"].get("best_of", 1) > 1)
        if cell.budget:  # a cell that differs says how, with both figures
            assert differs and str(_budget(control)) in cell.budget, name
        else:
            assert not differs, f"{name} and its control {cell.control} differ in budget"
        ours = cell.config["heldout"] if cell.kind == "grpo" else {
            "env": cell.config["env"]["id"], "tasks": cell.config["env"]["eval_tasks"],
            "kwargs": {**cell.config["env"].get("kwargs", {}), **cell.config["env"]["eval_kwargs"]}}
        env = control.config["env"]
        assert ours["env"] == env["id"] and ours["tasks"] == env["eval_tasks"]
        assert ours["kwargs"] == {**env.get("kwargs", {}), **env["eval_kwargs"]}


def test_arithmetic_cells_hold_out_the_disjoint_test_split():
    for name in efficacy.cell_names():
        env = efficacy.load_cell(name).config["env"]
        if isinstance(env, dict) and env["id"] == "math/arith-v0":
            assert (env["train_kwargs"]["split"], env["eval_kwargs"]["split"]) == ("train", "test"), name


def test_code_task_files_are_current_disjoint_and_solved_by_their_references():
    import agentloop

    tasks = efficacy.code_tasks()
    for split, rows in tasks.items():  # the committed files are exactly what the generator writes
        assert efficacy.CODE_TASKS[split].read_text().splitlines() == [json.dumps(r) for r in rows]
    assert not {r["id"] for r in tasks["train"]} & {r["id"] for r in tasks["test"]}
    assert 50 <= len(tasks["test"]) <= 80 and len(tasks["train"]) > 2 * len(tasks["test"])
    family = lambda r: r["id"].rsplit("_", 1)[0]  # noqa: E731
    assert not {family(r) for r in tasks["families"]} & {family(r) for r in tasks["train"]}  # unseen templates
    for split in ("train", "families"):  # the unnamed tasks: the same tasks, the name only in the tests
        unnamed = tasks[f"{split}-unnamed"]
        assert [{**r, "prompt": ""} for r in unnamed] == [{**r, "prompt": ""} for r in tasks[split]]
        assert all(r["id"] not in r["prompt"] and r["id"] in r["tests"][0] for r in unnamed)
        assert all(" that takes " in r["prompt"] and " that returns " not in r["prompt"] for r in unnamed)
        opaque = tasks[f"{split}-opaque"]  # and the name one no convention gives away, distinct per task
        assert [r["prompt"] for r in opaque] == [r["prompt"] for r in unnamed]
        names = {r["reference"].split("(")[0].removeprefix("def ") for r in opaque}
        assert len(names) == len(opaque) and all(n.startswith("fn_") for n in names)
    fence = "`" * 3
    for split in tasks:
        env = agentloop.make("code/tasks-v0", path=str(efficacy.CODE_TASKS[split])).unwrapped
        for i in range(env.num_tasks()):
            task = env.get_task(i)
            assert env.verify(task, f"{fence}python\n{task.answer['reference']}\n{fence}").success, task.id
            wrong = task.answer["reference"].replace("return ", "return not ")  # a wrong body fails some test
            assert not env.verify(task, f"{fence}python\n{wrong}\n{fence}").success, task.id


def test_diagnosis_reads_the_intervals_unless_the_cell_has_notes():
    up = {"value": 0.1, "lo": 0.02, "hi": 0.18}
    down = {"value": -0.1, "lo": -0.18, "hi": -0.02}
    flat = {"value": 0.01, "lo": -0.05, "hi": 0.07}
    assert efficacy.diagnosis({"gains": {"gain_acc_t1": up, "gain_delta": flat}}) == \
        "Acc@t1: gain; delta(t1,t2): no significant change"
    assert efficacy.diagnosis({"gains": {"gain_acc_t1": down}}) == "Acc@t1: loss"
    assert efficacy.diagnosis({"gains": {"gain_acc_t1": up}, "notes": "collapsed to one answer"}) == \
        "collapsed to one answer"


@pytest.mark.slow
def test_grpo_cell_and_a_transfer_cell_run_in_smoke_mode_and_merge_into_one_table(tmp_path, tiny_model_dir):
    pytest.importorskip("trl", reason="the GRPO cell needs trl (a declared dependency of agentloop)")
    results = tmp_path / "efficacy.json"
    grpo = efficacy.run_cell("grpo-arith", smoke=True, model=tiny_model_dir, runs_dir=tmp_path, results=results)
    assert grpo["summary"]["train_steps"] >= 1 and grpo["summary"]["reward_errors"] == 0
    weights = Path(grpo["summary"]["model_dir"], "config.json")
    stamp = weights.stat().st_mtime_ns
    again = efficacy.run_cell("grpo-arith", smoke=True, model=tiny_model_dir, runs_dir=tmp_path, results=results)
    assert weights.stat().st_mtime_ns == stamp  # resumed: the saved model is reused, not trained again
    assert (again["before"], again["after"], again["summary"]) == (grpo["before"], grpo["after"], grpo["summary"])
    rise = efficacy.run_cell("transfer-rise-arith", smoke=True, model=tiny_model_dir, runs_dir=tmp_path,
                             results=results)
    for entry in (grpo, rise):
        assert list(entry["protocols"]) == ["retry", "binary", "env"]
        for protocol, figures in entry["protocols"].items():
            for side in ("before", "after"):
                assert figures[side]["n_episodes"] == efficacy.SMOKE_TASKS and figures[side]["max_attempts"] == 2
                assert {"acc_t1", "acc_t2", "delta_t1_t2", "delta_i_to_c", "delta_c_to_i"} <= set(figures[side])
                assert set(figures[side]["by_op"]) <= {"add", "sub", "sub_neg", "mul"}
                assert figures[side]["oracle_stopped"] == (protocol != "retry")
            assert {"gain_acc_t1", "gain_acc_t2", "gain_delta"} <= set(figures["gains"])
        assert {k: entry[k] for k in ("before", "after", "gains")} == \
            {k: entry["protocols"]["retry"][k] for k in ("before", "after", "gains")}  # retry = the old fields
        # one shared first attempt: every protocol's Acc@t1 is the same number
        assert len({json.dumps(f["after"]["acc_t1"]) for f in entry["protocols"].values()}) == 1
        assert entry["wall_s"] > 0 and entry["peak_rss_mib"] > 0 and entry["smoke"]
    assert [t["env"] for t in rise["transfer"]] == ["math/gsm8k-v0", "countdown/Countdown-v0"]
    # The transfer "after" evaluation loads the run's final checkpoint, "before" the starting model.
    after_cfg = json.loads((tmp_path / "transfer-rise-arith" / "transfer-0-after" / "config.json").read_text())
    assert "iter-1" in json.dumps(after_cfg) and "iter-1" not in (
        tmp_path / "transfer-rise-arith" / "transfer-0-before" / "config.json").read_text()
    saved = json.loads(results.read_text())["cells"]
    assert set(saved) == {"grpo-arith", "transfer-rise-arith"}  # merged per cell
    # --refresh computes every figure again from the run directories: the same numbers, nothing generated
    assert efficacy.main(["--refresh", "all", "--results", str(results)]) == 0
    assert json.loads(results.read_text())["cells"] == saved
    assert efficacy.refresh({**saved["grpo-arith"], "run_dir": str(tmp_path / "gone")}, results) is None
    table = efficacy.table(results)
    assert len([line for line in table.splitlines() if line.startswith("| ")]) == 1 + 2 * 3 + 2  # header, cells x
    # protocols, transfers (retry only)
    assert "grpo-arith (smoke)" in table and "math/gsm8k-v0" in table and "countdown/Countdown-v0" in table
    ops = efficacy.ops_table(results)
    assert "| transfer-rise-arith |" in ops and "| grpo-arith |" in ops
    assert efficacy.main(["--table", "--results", str(results)]) == 0
    # the direct comparison of two cells' trained models, paired over the same held-out tasks
    vs = efficacy.versus(rise, grpo)
    assert set(vs) == {"retry", "binary", "env"} and vs["binary"]["vs"] == "grpo-arith"
    assert vs["binary"]["gain_acc_t1"]["n"] == efficacy.SMOKE_TASKS
    ours, theirs = efficacy.final_problems(rise)["binary"], efficacy.final_problems(grpo)["binary"]
    assert vs["binary"]["gain_acc_t2"]["value"] == pytest.approx(
        (sum(p.verdicts[1] for p in ours) - sum(p.verdicts[1] for p in theirs)) / efficacy.SMOKE_TASKS)
    assert efficacy.versus(rise, {**grpo, "run_dir": str(tmp_path / "gone")}) is None
    # a cell that played more attempts than its control is compared on the attempts both played
    longer = {**rise, "after": {**rise["after"], "max_attempts": 5}}
    assert [p.verdicts for p in efficacy.final_problems(longer, 2)["binary"]] == [p.verdicts for p in ours]
    assert efficacy.versus(longer, grpo) == vs and vs["binary"]["attempts"] == 2
    assert efficacy.main(["--versus", "transfer-rise-arith", "grpo-arith", "--results", str(results)]) == 0


def test_a_seeded_rerun_is_its_own_entry_next_to_the_cell(tmp_path, tiny_model_dir):
    """--seed N reruns a cell with another seed as NAME@seedN (its own run directory and entry), so the
    table shows how far two runs of one cell differ; the rerun is compared with the cell's control too."""
    results = tmp_path / "efficacy.json"
    first = efficacy.run_cell("rs_sft-arith", smoke=True, model=tiny_model_dir, runs_dir=tmp_path, results=results)
    again = efficacy.run_cell("rise-arith", smoke=True, model=tiny_model_dir, runs_dir=tmp_path, results=results,
                              seed=7)
    assert again["cell"] == "rise-arith@seed7" and again["config"]["seed"] == 7 and first["config"]["seed"] == 0
    assert again["command"].endswith("--cell rise-arith --smoke --seed 7")
    assert (tmp_path / "rise-arith@seed7" / "config.json").exists()
    assert json.loads((tmp_path / "rise-arith@seed7" / "config.json").read_text())["seed"] == 7
    assert again["vs_control"]["vs"] == "rs_sft-arith" and again["vs_control"] == again["protocols"]["retry"]["vs_control"]
    # the schema the checks read: cells[NAME].protocols[PROTOCOL].vs_control.gain_delta = {value, lo, hi}
    saved = json.loads(results.read_text())["cells"]["rise-arith@seed7"]
    for protocol in ("retry", "binary", "env"):
        assert {"value", "lo", "hi"} <= set(saved["protocols"][protocol]["vs_control"]["gain_delta"])
        assert {"before", "after", "gains", "vs_control"} <= set(saved["protocols"][protocol])
    assert set(json.loads(results.read_text())["cells"]) == {"rs_sft-arith", "rise-arith@seed7"}


def test_cells_finishing_together_keep_each_others_entries(tmp_path):
    """merge_result from several processes at once (cells run side by side): every entry survives."""
    import multiprocessing as mp

    path = tmp_path / "efficacy.json"
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_merge_many, args=(path, k)) for k in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * 4
    assert sorted(json.loads(path.read_text())["cells"]) == sorted(f"c{k}-{i}" for k in range(4) for i in range(25))


def _merge_many(path, k):
    for i in range(25):
        efficacy.merge_result(path, {"cell": f"c{k}-{i}"})


def test_a_warm_started_cell_trains_and_is_measured_from_the_other_cells_model(tmp_path, tiny_model_dir, monkeypatch):
    """``start: CELL`` (e.g. tool-use cells after SFT on gold calls): the cell's model, its 'before' figures included,
    is CELL's final checkpoint from the same runs directory; without that run it stops and says which to run."""
    import yaml

    cells = tmp_path / "cells"
    cells.mkdir()
    base = yaml.safe_load((efficacy.CELLS_DIR / "rs_sft-arith.yaml").read_text())
    (cells / "first.yaml").write_text(yaml.safe_dump(base))
    (cells / "warm.yaml").write_text(yaml.safe_dump({**base, "start": "first", "control": None}))
    monkeypatch.setattr(efficacy, "CELLS_DIR", cells)
    runs, results = tmp_path / "runs", tmp_path / "efficacy.json"
    with pytest.raises(SystemExit, match="--cell first"):
        efficacy.run_cell("warm", smoke=True, runs_dir=runs, results=results)
    efficacy.run_cell("first", smoke=True, model=tiny_model_dir, runs_dir=runs, results=results)
    from agentloop.runs import RunDir

    start = str(RunDir(runs / "first").latest_checkpoint())
    warm = efficacy.run_cell("warm", smoke=True, runs_dir=runs, results=results)
    assert warm["model"] == start and warm["config"]["model"] == start
    assert json.loads((runs / "warm" / "config.json").read_text())["model"] == start
