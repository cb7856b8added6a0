"""The efficacy matrix: does each method make the embedded model better, and at self-correction too?

Each *cell* is one file in ``configs/efficacy/`` (``kind`` improve or grpo, a description, the
component config, the control it is compared with, optional transfer environments). A cell trains
from the embedded SmolLM2-135M-Instruct on CPU and reports, on held-out tasks, for the starting and
the trained model: Acc@t1, Acc@t2, delta(t1,t2), delta i->c and delta c->i, each with a 95%
interval (two greedy attempts, ``retry`` feedback: no oracle, no verdict), the paired gains with
bootstrap intervals, accuracy per operation where the environment tags it, wall time and peak RSS.

* ``improve`` cells run :func:`agentloop.improve.improve` and read its held-out episodes (iteration 0
  and the last iteration), so method-specific conditioning (LeTI's ``<|good|>``) applies;
* ``grpo`` cells run TRL's ``GRPOTrainer`` with the environment's verifier as the reward
  (:mod:`agentloop.baselines.trl_grpo`) and evaluate through :mod:`agentloop.evaluation`;
* ``transfer`` entries of a cell evaluate the starting and the final model on environments the run
  never saw (e.g. arithmetic -> GSM8K), reported the same way.

Results merge per cell into ``benchmarks/results/efficacy.json`` (``--smoke`` runs go to
``efficacy-smoke.json``); ``--table`` prints its tables; ``results_pages.py`` writes docs/results.md from it.

    .venv/bin/python benchmarks/efficacy.py --list
    .venv/bin/python benchmarks/efficacy.py --cell rise-arith            # one cell (<= 20 min, quiet 2-core machine)
    .venv/bin/python benchmarks/efficacy.py --all                        # every cell, each in its own process
    .venv/bin/python benchmarks/efficacy.py --cell grpo-arith --smoke    # a handful of tasks, 1 iteration, 8 tokens
    .venv/bin/python benchmarks/efficacy.py --table

``--smoke`` checks the machinery only (numbers mean nothing); ``--model DIR`` replaces the embedded
model (tests use a tiny random one). Numbers depend on the machine's load: it is recorded per cell.
The LeTI cells' procedural code tasks live in ``configs/efficacy/data`` and are rewritten by
``--write-code-tasks`` (a test checks the committed files match the generator).

Not covered: every cell is evaluated with the same intrinsic protocol (``retry``, no critic, no
verifier feedback), so the critique-loop cell's held-out figures do not use its critic; cells are
sized from earlier CPU timings (the default run: 410 s), not yet timed one by one on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ROOT = Path(__file__).resolve().parents[1]
CELLS_DIR = ROOT / "configs" / "efficacy"
RESULTS = ROOT / "benchmarks" / "results" / "efficacy.json"
SMOKE_RESULTS = ROOT / "benchmarks" / "results" / "efficacy-smoke.json"

if str(ROOT) not in sys.path:  # run as a script from a source tree
    sys.path.insert(0, str(ROOT))

from agentloop.baselines.heldout import HeldOutSettings  # noqa: E402 - after the path fix above


class CellFile(BaseModel):
    """One cell of the matrix, as written in ``configs/efficacy/NAME.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["improve", "grpo"] = Field(description="improve: agentloop.improve; grpo: TRL's GRPOTrainer.")
    description: str = Field(description="One line: method, environment, what the cell shows.")
    control: str | None = Field(default=None, description="The same-budget control cell this one is compared with.")
    budget: str = Field(default="", description="How this cell's sampling budget differs from its control's, when it "
                        "does (tasks x rollouts x iterations otherwise equal; tests/benchmarks checks it).")
    config: dict[str, Any] = Field(description="ImproveConfig (kind improve) or GRPOBaselineConfig (kind grpo).")
    transfer: list[HeldOutSettings] = Field(default_factory=list, description="Environments never seen in training, "
                                            "evaluated before and after like the held-out split.")
    notes: str = Field(default="", description="Diagnosis after a real run (kept in the table when there is no gain).")


def cell_names() -> list[str]:
    return sorted(p.stem for p in CELLS_DIR.glob("*.yaml"))


def load_cell(name: str) -> CellFile:
    import yaml

    path = CELLS_DIR / f"{name}.yaml"
    if not path.exists():
        raise SystemExit(f"unknown cell {name!r}; cells: {', '.join(cell_names())} (files in {CELLS_DIR}).")
    return CellFile.model_validate(yaml.safe_load(path.read_text()))


# -- smoke sizing ----------------------------------------------------------------------------------------------
SMOKE_TASKS, SMOKE_TOKENS = 4, 8


def _smoke_improve(cfg: dict[str, Any]) -> dict[str, Any]:
    method = {**cfg["method"], "samples_per_task": 2}
    if method.get("name") == "score":
        method["stage1_iterations"] = 0
    return {**cfg, "iterations": 1, "threads": 1, "method": method,
            "env": {**cfg["env"], "train_tasks": SMOKE_TASKS, "eval_tasks": SMOKE_TASKS},
            "collect": {**cfg.get("collect", {}), "max_new_tokens": SMOKE_TOKENS, "batch_size": 8, "step_workers": 1},
            "train": {**cfg.get("train", {}), "batch_size": 4, "epochs": 1, "max_len": 256,
                      "gradient_checkpointing": False},
            "eval": {**cfg.get("eval", {}), "max_new_tokens": SMOKE_TOKENS, "batch_size": 8, "every": 1}}


def _smoke_heldout(h: dict[str, Any]) -> dict[str, Any]:
    return {**h, "tasks": SMOKE_TASKS, "max_new_tokens": SMOKE_TOKENS, "batch_size": 8}


def _smoke_grpo(cfg: dict[str, Any]) -> dict[str, Any]:
    return {**cfg, "train_tasks": SMOKE_TASKS, "num_generations": 2, "batch_size": 4, "epochs": 1,
            "max_completion_length": SMOKE_TOKENS, "threads": 1, "heldout": _smoke_heldout(cfg["heldout"])}


def sized(cell: CellFile, smoke: bool, model: str | None) -> CellFile:
    """The cell as it will run: smoke-sized when asked, with ``model`` replacing the embedded one."""
    config = dict(cell.config)
    transfer = [t.model_dump() for t in cell.transfer]
    if smoke:
        config = _smoke_improve(config) if cell.kind == "improve" else _smoke_grpo(config)
        transfer = [_smoke_heldout(t) for t in transfer]
    if model is not None:
        config["model"] = model
    if cell.kind == "improve":  # task files named relative to the repository (configs/efficacy/data/...)
        env = dict(config["env"])
        for key in ("kwargs", "train_kwargs", "eval_kwargs"):
            if "path" in env.get(key, {}) and not Path(env[key]["path"]).is_absolute():
                env[key] = {**env[key], "path": str(ROOT / env[key]["path"])}
        config["env"] = env
    return cell.model_copy(update={"config": config, "transfer": [HeldOutSettings(**t) for t in transfer]})


# -- procedural code tasks (LeTI cells) --------------------------------------------------------------------------
CODE_TASKS = {split: CELLS_DIR / "data" / f"code-tasks-{split}.jsonl" for split in ("train", "test")}
FENCE = "`" * 3
_NUMERIC = (  # (name, what the function returns, reference body, test inputs)
    ("add", "x plus {a}", "x + {a}", (0, 5, -3)),
    ("sub", "x minus {a}", "x - {a}", (0, 50, -3)),
    ("mul", "x multiplied by {a}", "x * {a}", (0, 3, -2)),
    ("mod", "the remainder of x divided by {a}", "x % {a}", (0, 7, 100)),
    ("smaller", "the smaller of x and {a}", "min(x, {a})", (0, 15, 100)),
    ("is_multiple", "True if x is divisible by {a}, else False", "x % {a} == 0", (0, 12, 35)),
)
_TEXT = (  # (name, what the function returns, reference body, test inputs)
    ("count", "how many times the character '{c}' occurs in the string s", "s.count('{c}')", ("", "{c}a{c}", "xyz")),
    ("ends_with", "True if the string s ends with the character '{c}', else False", "s.endswith('{c}')",
     ("", "ab{c}", "{c}ab")),
)


def code_tasks() -> dict[str, list[dict[str, Any]]]:
    """Simple function-writing tasks the 135M model can partly solve, dealt into disjoint train/test splits.

    Each task is a template with one constant (a number 2-30 or a letter); a task is held out when a hash
    of its id falls below 0.3, so no held-out task (template + constant) is trained on.
    """
    import hashlib

    rows = []
    for name, what, body, inputs in _NUMERIC:
        for a in range(2, 31):
            fn = f"{name}_{a}"
            ref = f"def {fn}(x):\n    return {body.format(a=a)}"
            tests = [f"assert {fn}({x}) == {eval(body.format(a=a), {'x': x})}" for x in inputs]  # noqa: S307
            rows.append({"id": fn, "prompt": f"Write a Python function {fn}(x) that returns {what.format(a=a)}. "
                         f"Write it in a {FENCE}python code block.", "tests": tests, "reference": ref})
    for name, what, body, inputs in _TEXT:
        for c in "abcdefghijklmnopqrstuvwxyz":
            fn = f"{name}_{c}"
            ref = f"def {fn}(s):\n    return {body.format(c=c)}"
            tests = [f"assert {fn}({x.format(c=c)!r}) == {eval(body.format(c=c), {'s': x.format(c=c)})!r}"  # noqa: S307
                     for x in inputs]
            rows.append({"id": fn, "prompt": f"Write a Python function {fn}(s) that returns {what.format(c=c)}. "
                         f"Write it in a {FENCE}python code block.", "tests": tests, "reference": ref})
    held = lambda r: int.from_bytes(hashlib.sha256(r["id"].encode()).digest()[:8], "big") / 2**64 < 0.3  # noqa: E731
    return {"train": [r for r in rows if not held(r)], "test": [r for r in rows if held(r)]}


def write_code_tasks() -> None:
    """(Re)write configs/efficacy/data/code-tasks-{train,test}.jsonl from :func:`code_tasks`."""
    for split, rows in code_tasks().items():
        CODE_TASKS[split].parent.mkdir(parents=True, exist_ok=True)
        CODE_TASKS[split].write_text("".join(json.dumps(r) + "\n" for r in rows))


# -- running a cell --------------------------------------------------------------------------------------------
def _peak_rss_mib() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(max(own, children) / 1024, 1)


def _measured(before: list[list[bool]], after: list[list[bool]], ops: list[str | None] | None,
              seed: int) -> dict[str, Any]:
    from agentloop.baselines.heldout import block, compare

    return {"before": block(before, ops, seed), "after": block(after, ops, seed), "gains": compare(before, after, seed)}


def _run_improve(cell: CellFile, run_dir: Path) -> tuple[dict[str, Any], Any, str | None]:
    """(held-out figures, the improve summary, the final checkpoint) of an improve cell."""
    from agentloop.baselines.heldout import attempts_of, improve_eval_episodes, ops_of
    from agentloop.improve import ImproveConfig, improve
    from agentloop.runs import RunDir

    cfg = ImproveConfig.model_validate(cell.config)
    result = improve(cfg, out=run_dir, resume=run_dir.exists())
    before_eps, after_eps = improve_eval_episodes(run_dir, 0), improve_eval_episodes(run_dir, cfg.iterations)
    k = cfg.eval.max_attempts
    figures = _measured(attempts_of(before_eps, k), attempts_of(after_eps, k), ops_of(before_eps), cfg.seed)
    latest = RunDir(run_dir).latest_checkpoint()
    return figures, result.model_dump(mode="json"), str(latest) if latest is not None else None


def _run_grpo(cell: CellFile, run_dir: Path) -> tuple[dict[str, Any], Any, str | None]:
    from agentloop.baselines.trl_grpo import GRPOBaselineConfig, run_grpo

    cfg = GRPOBaselineConfig.model_validate(cell.config)
    result = run_grpo(cfg, run_dir)
    figures = _measured(result.before, result.after, result.ops, cfg.seed)
    summary = result.model_dump(mode="json", exclude={"before", "after", "ops"})
    return figures, summary, result.model_dir


def _transfer(cell: CellFile, run_dir: Path, checkpoint: str | None, seed: int) -> list[dict[str, Any]]:
    from agentloop.baselines.heldout import attempts_of, evaluate_model, ops_of

    out = []
    model = cell.config.get("model")
    for i, t in enumerate(cell.transfer):
        before = evaluate_model(model, t, run_dir / f"transfer-{i}-before", seed=seed)
        after = evaluate_model(model, t, run_dir / f"transfer-{i}-after", seed=seed, checkpoint=checkpoint)
        figures = _measured(attempts_of(before, t.max_attempts), attempts_of(after, t.max_attempts), ops_of(before), seed)
        out.append({"env": t.env, "kwargs": t.kwargs, **figures})
    return out


def run_cell(name: str, *, smoke: bool = False, model: str | None = None, runs_dir: Path | None = None,
             results: Path | None = None, seed: int | None = None) -> dict[str, Any]:
    """Run one cell and merge its entry into the results file; returns the entry.

    ``seed`` reruns the cell with another seed (sampling during collection, training order) under the
    entry ``NAME@seedN``: the run-to-run spread of a result, next to the cell's own entry.
    """
    cell = sized(load_cell(name), smoke, model)
    if seed is not None:
        cell = cell.model_copy(update={"config": {**cell.config, "seed": seed}})
        name = f"{name}@seed{seed}"
    runs_dir = runs_dir or ROOT / "runs" / ("efficacy-smoke" if smoke else "efficacy")
    run_dir = runs_dir / name
    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    t0 = time.perf_counter()
    figures, summary, checkpoint = (_run_improve if cell.kind == "improve" else _run_grpo)(cell, run_dir)
    run_seed = int(cell.config.get("seed", 0))  # the cell's own, or the rerun's
    transfer = _transfer(cell, run_dir, checkpoint, run_seed) if cell.transfer else []
    entry = {
        "cell": name, "kind": cell.kind, "description": cell.description, "control": cell.control,
        "budget": cell.budget, "method": cell.config["method"]["name"] if cell.kind == "improve" else "grpo (trl)",
        "env": cell.config["env"]["id"] if cell.kind == "improve" else cell.config["env"],
        "smoke": smoke, "model": cell.config.get("model") or "SmolLM2-135M-Instruct (embedded)",
        **figures, "transfer": transfer, "summary": summary, "notes": cell.notes,
        "wall_s": round(time.perf_counter() - t0, 1), "peak_rss_mib": _peak_rss_mib(), "cpu_count": os.cpu_count(),
        "load_avg_start": load_start, "load_avg_end": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "run_dir": str(run_dir),
        "command": f"python benchmarks/efficacy.py --cell {name.split('@')[0]}" + (" --smoke" if smoke else "")
                   + (f" --seed {seed}" if seed is not None else ""),
        "config": cell.config,
    }
    path = results or (SMOKE_RESULTS if smoke else RESULTS)
    control = json.loads(path.read_text())["cells"].get(cell.control or "") if path.exists() else None
    entry["vs_control"] = versus(entry, control, run_seed) if control else None
    merge_result(path, entry)
    return entry


def final_attempts(entry: dict[str, Any]) -> list[list[bool]] | None:
    """The trained model's per-task held-out attempts of a finished cell, read back from its run directory
    (None when the directory is gone). Sorted by task index, like every held-out block."""
    from agentloop.baselines.heldout import attempts_of, improve_eval_episodes
    from agentloop.runs import RunDir

    run_dir = Path(entry["run_dir"])
    if entry["kind"] == "improve":
        episodes = improve_eval_episodes(run_dir, int(entry["config"]["iterations"])) if run_dir.exists() else []
    else:
        episodes = list(RunDir(run_dir / "eval-after").episodes()) if (run_dir / "eval-after").exists() else []
    return attempts_of(episodes, int(entry["after"]["max_attempts"])) if episodes else None


def versus(entry: dict[str, Any], other: dict[str, Any], seed: int = 0) -> dict[str, Any] | None:
    """Paired gains of ``entry``'s trained model over ``other``'s on the same held-out tasks (paired bootstrap):
    the direct comparison of a method with its control. None when either run directory is gone or the
    held-out sets differ."""
    from agentloop.baselines.heldout import compare

    if entry["env"] != other["env"]:
        return None
    ours, theirs = final_attempts(entry), final_attempts(other)
    if ours is None or theirs is None or len(ours) != len(theirs):
        return None
    return {"vs": other["cell"], **compare(theirs, ours, seed)}


def merge_result(path: Path, entry: dict[str, Any]) -> None:
    """Replace this cell's entry in the results file, keeping the others (atomic write)."""
    from agentloop.runs import atomic_write_text

    data = json.loads(path.read_text()) if path.exists() else {"cells": {}}
    data["cells"][entry["cell"]] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


# -- the table --------------------------------------------------------------------------------------------------
def _pct(e: dict[str, Any] | None) -> str:
    return "n/a" if not e or e.get("value") is None else f"{100 * e['value']:.1f}"


def _ci(e: dict[str, Any] | None, signed: bool = True) -> str:
    if not e or e.get("value") is None:
        return "n/a"
    f = "{:+.1f}" if signed else "{:.1f}"
    ci = f" [{f.format(100 * e['lo'])}, {f.format(100 * e['hi'])}]" if e.get("lo") is not None else ""
    return f.format(100 * e["value"]) + ci


def _excludes_zero(e: dict[str, Any] | None) -> bool:
    return bool(e and e.get("lo") is not None and (e["lo"] > 0 or e["hi"] < 0))


def diagnosis(entry: dict[str, Any]) -> str:
    """One line: what the cell shows (the YAML's notes, or a reading of the intervals)."""
    if entry.get("notes"):
        return entry["notes"]
    g = entry["gains"]
    parts = []
    for key, label in (("gain_acc_t1", "Acc@t1"), ("gain_delta", "delta(t1,t2)")):
        if key in g:
            word = "gain" if _excludes_zero(g[key]) and g[key]["value"] > 0 else \
                   "loss" if _excludes_zero(g[key]) else "no significant change"
            parts.append(f"{label}: {word}")
    return "; ".join(parts)


def _row(name: str, e: dict[str, Any], b: dict[str, Any], a: dict[str, Any], g: dict[str, Any], env: str,
         control: dict[str, Any] | None = None) -> str:
    arrow = lambda key: f"{_pct(b.get(key))} → {_pct(a.get(key))}"  # noqa: E731
    vs = "n/a" if not control else f"{_ci(control.get('gain_acc_t1'))} / {_ci(control.get('gain_delta'))}"
    return (f"| {name} | {e['method']} | {env} | {a['n']} | {arrow('acc_t1')} | {arrow('acc_t2')} | "
            f"{_ci(b.get('delta_t1_t2'))} → {_ci(a.get('delta_t1_t2'))} | {_pct(a.get('delta_i_to_c'))} / "
            f"{_pct(a.get('delta_c_to_i'))} | {_ci(g.get('gain_acc_t1'))} | {vs} | {e['wall_s'] / 60:.1f} | "
            f"{e['peak_rss_mib'] / 1024:.1f} | {diagnosis(e)} |")


def table(path: Path = RESULTS) -> str:
    """The markdown table of every cell in the results file (transfer environments as extra rows)."""
    if not path.exists():
        return f"(no results yet: run `python benchmarks/efficacy.py --all`, which writes {path.relative_to(ROOT)})"
    cells = json.loads(path.read_text())["cells"]
    lines = ["| cell | method | held-out env | N | Acc@t1 before → after | Acc@t2 before → after | "
             "Δ(t1,t2) before → after [95% CI] | Δi→c / Δc→i after | Acc@t1 gain [95% CI] | "
             "after − control's after: Acc@t1 / Δ(t1,t2) [95% CI] | wall (min) | peak RSS (GiB) | diagnosis |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in sorted(cells):
        e = cells[name]
        label = name + (" (smoke)" if e.get("smoke") else "")
        lines.append(_row(label, e, e["before"], e["after"], e["gains"], e["env"], e.get("vs_control")))
        for t in e.get("transfer", []):
            lines.append(_row(f"{name} → transfer", e, t["before"], t["after"], t["gains"], t["env"]))
    return "\n".join(lines)


def ops_table(path: Path = RESULTS) -> str:
    """Accuracy per operation (environments that tag it), before -> after, Acc@t1 and Acc@t2."""
    if not path.exists():
        return ""
    lines = ["| cell | op | N | Acc@t1 before → after | Acc@t2 before → after |", "|---|---|---|---|---|"]
    for name, e in sorted(json.loads(path.read_text())["cells"].items()):
        for op, b in e["before"].get("by_op", {}).items():
            a = e["after"]["by_op"].get(op, {})
            lines.append(f"| {name} | {op} | {b['n']} | {_pct(b.get('acc_t1'))} → {_pct(a.get('acc_t1'))} | "
                         f"{_pct(b.get('acc_t2'))} → {_pct(a.get('acc_t2'))} |")
    return "\n".join(lines) if len(lines) > 2 else ""


# -- command line ---------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cell", action="append", default=[], help="Run this cell (repeatable).")
    p.add_argument("--all", action="store_true", help="Run every cell, each in its own process (per-cell peak RSS).")
    p.add_argument("--smoke", action="store_true", help="A handful of tasks, 1 iteration, 8 tokens: machinery only.")
    p.add_argument("--model", default=None, help="Model folder instead of the embedded SmolLM2-135M-Instruct.")
    p.add_argument("--results", type=Path, default=None, help="Results JSON (default efficacy.json, or "
                   "efficacy-smoke.json with --smoke).")
    p.add_argument("--runs-dir", type=Path, default=None, help="Where the cells' run directories go.")
    p.add_argument("--seed", type=int, default=None, help="Rerun the cell with this seed (entry NAME@seedN): how "
                   "far two runs of it differ.")
    p.add_argument("--table", action="store_true", help="Print the markdown tables of the results file.")
    p.add_argument("--list", action="store_true", help="List the cells.")
    p.add_argument("--versus", nargs=2, metavar=("CELL", "OTHER"), default=None,
                   help="Paired gains of CELL's trained model over OTHER's (both finished, run directories kept); "
                   "stored as CELL's vs_control when OTHER is its control.")
    p.add_argument("--write-code-tasks", action="store_true", help="Regenerate the LeTI cells' code task files.")
    args = p.parse_args(argv)
    results = args.results or (SMOKE_RESULTS if args.smoke else RESULTS)
    if args.write_code_tasks:
        write_code_tasks()
        return 0
    if args.list:
        for name in cell_names():
            print(f"{name:28s} {load_cell(name).description}")
        return 0
    if args.versus:
        cells = json.loads(results.read_text())["cells"] if results.exists() else {}
        missing = [c for c in args.versus if c not in cells]
        if missing:
            p.error(f"not in {results}: {', '.join(missing)} (run them first)")
        entry, other = cells[args.versus[0]], cells[args.versus[1]]
        vs = versus(entry, other, int(entry["config"].get("seed", 0)))
        if vs is None:
            p.error("run directory missing or the held-out sets differ")
        print(f"{args.versus[0]} - {args.versus[1]} (after training, paired over {vs['gain_acc_t1']['n']} tasks): "
              f"Acc@t1 {_ci(vs['gain_acc_t1'])}, Acc@t2 {_ci(vs['gain_acc_t2'])}, delta(t1,t2) {_ci(vs['gain_delta'])}")
        if entry.get("control") == args.versus[1]:
            merge_result(results, {**entry, "vs_control": vs})
        return 0
    if args.table:
        print(table(results))
        ops = ops_table(results)
        print(f"\n{ops}" if ops else "")
        return 0
    if not args.cell and not args.all:
        p.error("give --cell NAME, --all, --table or --list")
    names = cell_names() if args.all else args.cell
    if args.all:
        failed = []
        for name in names:  # a process per cell: peak RSS is the cell's own, and one crash does not stop the rest
            cmd = [sys.executable, __file__, "--cell", name, "--results", str(results)]
            cmd += ["--smoke"] * args.smoke + (["--model", args.model] if args.model else [])
            cmd += ["--runs-dir", str(args.runs_dir)] if args.runs_dir else []
            cmd += ["--seed", str(args.seed)] if args.seed is not None else []
            if subprocess.run(cmd, cwd=ROOT).returncode:
                failed.append(name)
        print(table(results))
        if failed:
            print(f"failed cells: {', '.join(failed)}", file=sys.stderr)
        return 1 if failed else 0
    for name in names:
        entry = run_cell(name, smoke=args.smoke, model=args.model, runs_dir=args.runs_dir, results=results,
                         seed=args.seed)
        print(f"{name}: {diagnosis(entry)} (wall {entry['wall_s']:.0f} s, peak RSS {entry['peak_rss_mib']:.0f} MiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
