"""The efficacy matrix: does each method make the embedded model better, and at self-correction too?

Each *cell* is one file in ``configs/efficacy/`` (``kind`` improve or grpo, a description, the
component config, the control it is compared with, optional transfer environments). A cell trains
from the embedded SmolLM2-135M-Instruct on CPU and reports, on held-out tasks, for the starting and
the trained model, under every protocol the cell declares (``protocols``, e.g. ``[retry, binary, env]``;
:mod:`agentloop.evaluation.protocols`), all branching from one shared greedy first attempt: the
:class:`~agentloop.evaluation.selfcorrection.SelfCorrection` report (Acc@t1, Acc@t2, delta(t1,t2),
delta i->c and delta c->i with 95% intervals; Acc@tK, p1@tK, m1@tK with K > 2; accuracy per operation
where the environment tags it), the paired :class:`~agentloop.evaluation.selfcorrection.Gains` and the
paired comparison with the control's trained model under the same protocol; wall time and peak RSS.

Results schema: ``cells[NAME].protocols[PROTOCOL]`` = ``{before, after, gains, vs_control}``, e.g.
``cells["rise-arith"].protocols["binary"].vs_control.gain_delta = {value, lo, hi}``; the retry figures
are also the entry's top-level ``before``/``after``/``gains``/``vs_control``, as in every entry written
before protocols existed (which the table reads as retry). Protocols that stop at a success are
marked oracle-stopped (``after.oracle_stopped``) in the file and the table.

* ``improve`` cells run :func:`agentloop.improve.improve` and read its held-out episodes (iteration 0
  and the last iteration), so method-specific conditioning (LeTI's ``<|good|>``) applies;
* ``grpo`` cells run TRL's ``GRPOTrainer`` with the environment's verifier as the reward
  (:mod:`agentloop.baselines.trl_grpo`) and evaluate through :mod:`agentloop.evaluation`;
* ``transfer`` entries of a cell evaluate the starting and the final model on environments the run
  never saw (e.g. arithmetic -> GSM8K), reported the same way; a starting model's transfer evaluation that
  another cell in the same ``--runs-dir`` finished with the same settings is copied, not generated again
  (:func:`agentloop.baselines.heldout.finished_twin`: greedy, so the episodes would be the same).

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

Not covered: cells are sized from earlier CPU timings, not yet timed one by one on a quiet machine. A cell
and its control evaluated with different numbers of attempts are compared on the attempts both played
(:func:`versus`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

ROOT = Path(__file__).resolve().parents[1]
CELLS_DIR = ROOT / "configs" / "efficacy"
RESULTS = ROOT / "benchmarks" / "results" / "efficacy.json"
SMOKE_RESULTS = ROOT / "benchmarks" / "results" / "efficacy-smoke.json"

if str(ROOT) not in sys.path:  # run as a script from a source tree
    sys.path.insert(0, str(ROOT))

from agentloop.baselines.heldout import HeldOutTasks  # noqa: E402 - after the path fix above


class CellFile(BaseModel):
    """One cell of the matrix, as written in ``configs/efficacy/NAME.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["improve", "grpo"] = Field(description="improve: agentloop.improve; grpo: TRL's GRPOTrainer.")
    description: str = Field(description="One line: method, environment, what the cell shows.")
    control: str | None = Field(default=None, description="The same-budget control cell this one is compared with.")
    budget: str = Field(default="", description="How this cell's sampling budget differs from its control's, when it "
                        "does (tasks x rollouts x iterations otherwise equal; tests/benchmarks checks it).")
    config: dict[str, Any] = Field(description="ImproveConfig (kind improve) or GRPOBaselineConfig (kind grpo).")
    protocols: list[str] = Field(default_factory=lambda: ["retry"], min_length=1, description="The evaluation "
                                 "protocols of the held-out split, from one shared first attempt (retry first: it is "
                                 "the entry's top-level figures, as before protocols existed); they replace the "
                                 "config's eval feedback (improve) or heldout protocols (grpo).")
    transfer: list[HeldOutTasks] = Field(default_factory=list, description="Environments never seen in training, "
                                         "evaluated before and after like the held-out split.")
    notes: str = Field(default="", description="Diagnosis after a real run (kept in the table when there is no gain).")
    start: str | None = Field(default=None, description="A warm start: the cell whose trained model this one starts "
                              "from (its final checkpoint replaces the embedded model for training and for every "
                              "'before' figure). Run that cell first, into the same --runs-dir.")


    @field_validator("protocols")
    @classmethod
    def _retry_first(cls, v: list[str]) -> list[str]:
        from agentloop.evaluation.protocols import parse_protocols

        parse_protocols(v)
        if v[0] != "retry":
            raise ValueError("list retry first: its figures are the entry's top-level before/after/gains/vs_control, "
                             "read by every earlier result")
        return v


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
    transfer = [t.model_dump(mode="json") for t in cell.transfer]
    if smoke:
        config = _smoke_improve(config) if cell.kind == "improve" else _smoke_grpo(config)
        transfer = [_smoke_heldout(t) for t in transfer]
    if model is not None:
        config["model"] = model
    if cell.kind == "improve":
        evalc = {k: v for k, v in config.get("eval", {}).items() if k not in ("feedback", "protocols")}
        config["eval"] = {**evalc, "protocols": list(cell.protocols)}
    else:
        config["heldout"] = {**config["heldout"], "protocols": list(cell.protocols)}
        config["heldout"].pop("feedback", None)
    if cell.kind == "improve":  # task files named relative to the repository (configs/efficacy/data/...)
        env = dict(config["env"])
        for key in ("kwargs", "train_kwargs", "eval_kwargs"):
            if "path" in env.get(key, {}) and not Path(env[key]["path"]).is_absolute():
                env[key] = {**env[key], "path": str(ROOT / env[key]["path"])}
        config["env"] = env
    return cell.model_copy(update={"config": config, "transfer": [HeldOutTasks(**t) for t in transfer]})


# -- procedural code tasks (LeTI cells) --------------------------------------------------------------------------
CODE_TASKS = {split: CELLS_DIR / "data" / f"code-tasks-{split}.jsonl" for split in
              ("train", "test", "families", "train-unnamed", "families-unnamed", "train-opaque", "families-opaque")}
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


# Held-out task *families*: templates no training task uses (the ``families`` split), so that a first attempt
# can fail where training on every family's constants would have taught the answer.
_FAMILY_NUMERIC = (
    ("larger", "the larger of x and {a}", "max(x, {a})", (0, 15, 100)),
    ("abs_diff", "the absolute difference between x and {a}", "abs(x - {a})", (0, 15, 100)),
    ("floor_div", "x divided by {a}, rounded down to a whole number", "x // {a}", (0, 7, 100)),
    ("is_greater", "True if x is greater than {a}, else False", "x > {a}", (0, 15, 100)),
    ("add_double", "x plus {a}, all doubled", "(x + {a}) * 2", (0, 5, -3)),
)
_FAMILY_TEXT = (
    ("starts_with", "True if the string s starts with the character '{c}', else False", "s.startswith('{c}')",
     ("", "ab{c}", "{c}ab")),
    ("remove", "the string s with every '{c}' removed", "s.replace('{c}', '')", ("", "{c}a{c}", "xyz")),
)


def _numeric_rows(templates: tuple, constants: range) -> list[dict[str, Any]]:
    rows = []
    for name, what, body, inputs in templates:
        for a in constants:
            fn = f"{name}_{a}"
            ref = f"def {fn}(x):\n    return {body.format(a=a)}"
            tests = [f"assert {fn}({x}) == {eval(body.format(a=a), {'x': x})}" for x in inputs]  # noqa: S307
            rows.append({"id": fn, "prompt": f"Write a Python function {fn}(x) that returns {what.format(a=a)}. "
                         f"Write it in a {FENCE}python code block.", "tests": tests, "reference": ref})
    return rows


def _text_rows(templates: tuple, letters: str) -> list[dict[str, Any]]:
    rows = []
    for name, what, body, inputs in templates:
        for c in letters:
            fn = f"{name}_{c}"
            ref = f"def {fn}(s):\n    return {body.format(c=c)}"
            tests = [f"assert {fn}({x.format(c=c)!r}) == {eval(body.format(c=c), {'s': x.format(c=c)})!r}"  # noqa: S307
                     for x in inputs]
            rows.append({"id": fn, "prompt": f"Write a Python function {fn}(s) that returns {what.format(c=c)}. "
                         f"Write it in a {FENCE}python code block.", "tests": tests, "reference": ref})
    return rows


def code_tasks() -> dict[str, list[dict[str, Any]]]:
    """Simple function-writing tasks the 135M model can partly solve, dealt into disjoint splits.

    ``train``/``test``: each task is a template with one constant (a number 2-30 or a letter); a task is held
    out when a hash of its id falls below 0.3, so no held-out task (template + constant) is trained on.
    ``families``: templates no ``train`` task uses (:data:`_FAMILY_NUMERIC`, :data:`_FAMILY_TEXT`; constants
    2-13 and a-l), for evaluating on task families the training never showed. ``train-unnamed`` and
    ``families-unnamed``: the same tasks with the function's name only in the tests (:func:`_unnamed`);
    ``train-opaque`` and ``families-opaque``: and that name one no convention gives away (:func:`_opaque`).
    """
    rows = _numeric_rows(_NUMERIC, range(2, 31)) + _text_rows(_TEXT, "abcdefghijklmnopqrstuvwxyz")
    families = _numeric_rows(_FAMILY_NUMERIC, range(2, 14)) + _text_rows(_FAMILY_TEXT, "abcdefghijkl")
    held = lambda r: int.from_bytes(hashlib.sha256(r["id"].encode()).digest()[:8], "big") / 2**64 < 0.3  # noqa: E731
    train = [r for r in rows if not held(r)]
    return {"train": train, "test": [r for r in rows if held(r)], "families": families,
            "train-unnamed": [_unnamed(r) for r in train], "families-unnamed": [_unnamed(r) for r in families],
            "train-opaque": [_opaque(r) for r in train], "families-opaque": [_opaque(r) for r in families]}


def _unnamed(row: dict[str, Any]) -> dict[str, Any]:
    """The task with its function's name left out of the prompt, as in an MBPP prompt without its test cases:
    the tests still call ``name_constant(...)``, so a first attempt passes only if it guesses the name, and the
    ``env`` feedback after a wrong one names it (``NameError: name 'larger_2' is not defined``). Feedback that
    carries what the question does not: the splits for measuring whether a model reads its traceback."""
    fn, rest = row["prompt"].removeprefix("Write a Python function ").split(" that returns ", 1)
    arg = fn[fn.index("(") + 1:-1]
    return {**row, "prompt": f"Write a Python function that takes {arg} and returns {rest}"}


def _opaque(row: dict[str, Any]) -> dict[str, Any]:
    """The unnamed task (:func:`_unnamed`) whose tests call a name no convention gives away (``fn_`` and six hex
    digits of a hash of the task's id, like a generated API name): the first attempt cannot guess it, so every
    pass needs the ``env`` feedback's ``NameError`` line. Isolates reading the traceback from learning the
    naming convention of ``name_constant``, which training on the unnamed tasks also teaches."""
    name = "fn_" + hashlib.sha256(row["id"].encode()).hexdigest()[:6]
    swap = lambda text: re.sub(rf"\b{row['id']}\b", name, text)  # noqa: E731
    return {**_unnamed(row), "tests": [swap(t) for t in row["tests"]], "reference": swap(row["reference"])}


def write_code_tasks() -> None:
    """(Re)write configs/efficacy/data/code-tasks-{SPLIT}.jsonl from :func:`code_tasks`."""
    for split, rows in code_tasks().items():
        CODE_TASKS[split].parent.mkdir(parents=True, exist_ok=True)
        CODE_TASKS[split].write_text("".join(json.dumps(r) + "\n" for r in rows))


# -- running a cell --------------------------------------------------------------------------------------------
def _peak_rss_mib() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(max(own, children) / 1024, 1)


Figures = dict[str, dict[str, Any]]  # protocol -> {"before", "after", "gains"}


def _measured(before: dict[str, list[Any]], after: dict[str, list[Any]], k: int) -> Figures:
    """Per protocol both sides evaluated: the two :class:`SelfCorrection` reports and the paired :class:`Gains`
    (agentloop.evaluation.selfcorrection: the one report every command uses)."""
    from agentloop.evaluation.selfcorrection import paired_gains, self_correction

    out: Figures = {}
    for name, b in before.items():
        if name not in after:
            continue
        a = after[name]
        stopped = bool(b and b[0].metadata.get("oracle_stopped"))
        dump = lambda x: x.as_json()  # noqa: E731
        out[name] = {"before": dump(self_correction(b, k, protocol=name, oracle_stopped=stopped)),
                     "after": dump(self_correction(a, k, protocol=name, oracle_stopped=stopped)),
                     "gains": dump(paired_gains(_by_task(b, k), _by_task(a, k), k))}
    return out


def _by_task(episodes: list[Any], k: int) -> list[Any]:
    """The problems of held-out episodes keyed by task index only, so an improve run's evaluation pairs with an
    ``agentloop eval`` of the same tasks (GRPO cells) whatever their environment labels and seeds."""
    from agentloop.evaluation.selfcorrection import problems_of

    return [p.model_copy(update={"key": f"task={e.metadata.get('task_index')}|sample={e.metadata.get('sample', 0)}"})
            for e, p in zip(episodes, problems_of(episodes, k))]


def _with_protocols(figures: Figures, order: list[str]) -> dict[str, Any]:
    """The entry's figure fields: every protocol under ``protocols`` (in the cell's order), retry's also at the
    top level (the fields every earlier result has)."""
    figures = {p: figures[p] for p in [*order, *figures] if p in figures}
    head = figures.get("retry") or next(iter(figures.values()))
    return {**head, "protocols": figures}


def _eval_episodes(cell_kind: str, run_dir: Path, iterations: int, side: str) -> dict[str, list[Any]]:
    """The held-out episodes of a finished cell per protocol: before (the starting model) or after training."""
    from agentloop.baselines.heldout import by_protocol, improve_eval_episodes
    from agentloop.runs import RunDir

    if cell_kind == "improve":
        return improve_eval_episodes(run_dir, 0 if side == "before" else iterations) if run_dir.exists() else {}
    path = run_dir / f"eval-{side}"
    return by_protocol(RunDir(path).episodes()) if path.exists() else {}


def _run_improve(cell: CellFile, run_dir: Path) -> tuple[Figures, Any, str | None]:
    """(held-out figures per protocol, the improve summary, the final checkpoint) of an improve cell."""
    from agentloop.improve import ImproveConfig, improve
    from agentloop.runs import RunDir

    cfg = ImproveConfig.model_validate(cell.config)
    result = improve(cfg, out=run_dir, resume=run_dir.exists())
    figures = _measured(_eval_episodes("improve", run_dir, cfg.iterations, "before"),
                        _eval_episodes("improve", run_dir, cfg.iterations, "after"), cfg.eval.max_attempts)
    latest = RunDir(run_dir).latest_checkpoint()
    return figures, result.model_dump(mode="json", exclude={"held_out"}), str(latest) if latest is not None else None


def _run_grpo(cell: CellFile, run_dir: Path) -> tuple[Figures, Any, str | None]:
    from agentloop.baselines.trl_grpo import GRPOBaselineConfig, run_grpo

    cfg = GRPOBaselineConfig.model_validate(cell.config)
    result = run_grpo(cfg, run_dir)
    k = cfg.heldout.max_attempts
    figures = _measured(_eval_episodes("grpo", run_dir, 0, "before"), _eval_episodes("grpo", run_dir, 0, "after"), k)
    summary = result.model_dump(mode="json", exclude={"before", "after", "ops"})
    return figures, summary, result.model_dir


def _transfer(cell: CellFile, run_dir: Path, checkpoint: str | None, seed: int) -> list[dict[str, Any]]:
    from agentloop.baselines.heldout import evaluate_model

    out = []
    model = cell.config.get("model")
    # cells that start from the same model (a warm start, or the embedded one) share its "before" evaluations
    twins = sorted(p for p in run_dir.parent.glob("*/transfer-*-before") if p.parent != run_dir)
    for i, t in enumerate(cell.transfer):
        before = evaluate_model(model, t, run_dir / f"transfer-{i}-before", seed=seed, reuse_from=twins)
        after = evaluate_model(model, t, run_dir / f"transfer-{i}-after", seed=seed, checkpoint=checkpoint)
        out.append({"env": t.env, "kwargs": t.kwargs, **_with_protocols(_measured(before, after, t.max_attempts),
                                                                          [p.name for p in t.protocols])})
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
    if cell.start is not None and model is None:
        cell = cell.model_copy(update={"config": {**cell.config, "model": warm_start(cell.start, runs_dir)}})
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
        **_with_protocols(figures, cell.protocols), "transfer": transfer, "summary": summary, "notes": cell.notes,
        "wall_s": round(time.perf_counter() - t0, 1), "peak_rss_mib": _peak_rss_mib(), "cpu_count": os.cpu_count(),
        "load_avg_start": load_start, "load_avg_end": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "run_dir": str(run_dir),
        "command": f"python benchmarks/efficacy.py --cell {name.split('@')[0]}" + (" --smoke" if smoke else "")
                   + (f" --seed {seed}" if seed is not None else ""),
        "config": cell.config,
    }
    path = results or (SMOKE_RESULTS if smoke else RESULTS)
    control = json.loads(path.read_text())["cells"].get(cell.control or "") if path.exists() else None
    set_vs_control(entry, versus(entry, control) if control else None)
    merge_result(path, entry)
    return entry


def refresh(entry: dict[str, Any], results: Path) -> dict[str, Any] | None:
    """``entry``'s figures computed again from its run directory's episodes (held-out, transfer, and the
    comparison with its control), everything else kept (wall time, peak memory, the command): for a report
    that gained a figure since the cell ran. None when the run directory is gone."""
    from agentloop.baselines.heldout import by_protocol
    from agentloop.runs import RunDir

    run_dir = Path(entry["run_dir"])
    if not run_dir.exists():
        return None
    k = int(entry["after"]["max_attempts"])
    iterations = int(entry["config"].get("iterations", 0)) if entry["kind"] == "improve" else 0
    sides = [_eval_episodes(entry["kind"], run_dir, iterations, side) for side in ("before", "after")]
    order = list(protocols_of(entry))
    out = {**entry, **_with_protocols(_measured(*sides, k), order)}
    transfer = []
    for i, t in enumerate(entry.get("transfer", [])):
        eps = [by_protocol(RunDir(run_dir / f"transfer-{i}-{side}").episodes()) for side in ("before", "after")]
        transfer.append({**t, **_with_protocols(_measured(*eps, int(t["after"]["max_attempts"])),
                                                list(protocols_of(t)))})
    out["transfer"] = transfer
    control = json.loads(results.read_text())["cells"].get(entry.get("control") or "") if results.exists() else None
    set_vs_control(out, versus(out, control) if control else None)
    return out


def warm_start(start: str, runs_dir: Path) -> str:
    """The final checkpoint of cell ``start``'s run in ``runs_dir`` (a model folder, or a LoRA adapter folder that
    names its base model): the model a warm-started cell begins from."""
    from agentloop.runs import RunDir

    load_cell(start)  # an unknown name fails here, listing the cells
    run_dir = runs_dir / start
    latest = RunDir(run_dir).latest_checkpoint() if run_dir.exists() else None
    if latest is None:
        raise SystemExit(f"this cell starts from {start!r}'s trained model, and {run_dir} holds no checkpoint of it: "
                         f"run python benchmarks/efficacy.py --cell {start} --runs-dir {runs_dir} first.")
    return str(latest)


def set_vs_control(entry: dict[str, Any], vs: dict[str, Any] | None) -> None:
    """Store the comparison with the control per protocol (``protocols[P].vs_control``) and retry's at the top."""
    for name, figures in entry.get("protocols", {}).items():
        figures["vs_control"] = (vs or {}).get(name)
    entry["vs_control"] = (vs or {}).get("retry")


def protocols_of(entry: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Protocol -> {before, after, gains, vs_control} of an entry; an entry written before protocols existed is
    its top-level fields under retry."""
    found = entry.get("protocols") or {"retry": {k: entry.get(k) for k in ("before", "after", "gains", "vs_control")}}
    return {p: found[p] for p in sorted(found, key=lambda p: p != "retry")}  # retry first (the file sorts keys)


def final_problems(entry: dict[str, Any], k: int | None = None) -> dict[str, list[Any]] | None:
    """The trained model's per-task held-out attempts of a finished cell per protocol, read back from its run
    directory (None when the directory is gone); keyed by task index, so any two cells of one task set pair.
    ``k``: the first k attempts only (default: all the cell played)."""
    run_dir = Path(entry["run_dir"])
    k = k or int(entry["after"]["max_attempts"])
    episodes = _eval_episodes(entry["kind"], run_dir, int(entry["config"].get("iterations", 0)), "after")
    return {name: _by_task(eps, k) for name, eps in episodes.items()} if episodes else None


def versus(entry: dict[str, Any], other: dict[str, Any], seed: int = 0) -> dict[str, Any] | None:
    """Per protocol both evaluated: paired gains of ``entry``'s trained model over ``other``'s on the same held-out
    tasks (paired bootstrap), the direct comparison of a method with its control. None when either run directory
    is gone or the held-out sets differ.

    Cells evaluated with different numbers of attempts (a 5-turn cell, a 2-attempt control) are compared on the
    attempts both played (``attempts`` in each result): a protocol's first k attempts do not depend on how many
    follow (the same text after each attempt; oracle-stopped episodes stop at the first success whatever K)."""
    from agentloop.evaluation.selfcorrection import paired_gains

    if entry["env"] != other["env"]:
        return None
    k = min(int(entry["after"]["max_attempts"]), int(other["after"]["max_attempts"]))
    ours, theirs = final_problems(entry, k), final_problems(other, k)
    if ours is None or theirs is None:
        return None
    out = {}
    for name, rows in ours.items():
        if name in theirs and {p.key for p in rows} == {p.key for p in theirs[name]}:
            gains = paired_gains(theirs[name], rows, k, seed=seed)
            out[name] = {"vs": other["cell"], "attempts": k, **gains.as_json()}
    return out or None


def merge_result(path: Path, entry: dict[str, Any]) -> None:
    """Replace this cell's entry in the results file, keeping the others (atomic write, under an exclusive lock
    on ``PATH.lock``, so that cells finishing at the same time in separate processes keep each other's entries)."""
    import fcntl

    from agentloop.runs import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = json.loads(path.read_text()) if path.exists() else {"cells": {}}
        data["cells"][entry["cell"]] = entry
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


def diagnosis(entry: dict[str, Any], gains: dict[str, Any] | None = None) -> str:
    """One line: what the cell shows (the YAML's notes, or a reading of the intervals of ``gains``, default retry's)."""
    if entry.get("notes") and gains is None:
        return entry["notes"]
    g = gains if gains is not None else entry["gains"]
    parts = []
    for key, label in (("gain_acc_t1", "Acc@t1"), ("gain_delta", "delta(t1,t2)")):
        if key in g:
            word = "gain" if _excludes_zero(g[key]) and g[key]["value"] > 0 else \
                   "loss" if _excludes_zero(g[key]) else "no significant change"
            parts.append(f"{label}: {word}")
    return "; ".join(parts)


def _row(name: str, protocol: str, e: dict[str, Any], f: dict[str, Any], env: str, note: str) -> str:
    b, a, g, control = f["before"], f["after"], f["gains"], f.get("vs_control")
    arrow = lambda key: f"{_pct(b.get(key))} → {_pct(a.get(key))}"  # noqa: E731
    vs = "n/a" if not control else f"{_ci(control.get('gain_acc_t1'))} / {_ci(control.get('gain_delta'))}"
    k = a.get("max_attempts", 2)
    stop = " (oracle-stopped)" if a.get("oracle_stopped") else ""
    rise = f"{_pct(a.get('p1_tk'))} / {_pct(a.get('m1_tk'))}" if k > 2 else "n/a"
    uptake = f"{arrow('uptake')}" if a.get("uptake") or b.get("uptake") else "n/a"
    return (f"| {name} | {protocol}{stop} | {e['method']} | {env} | {a.get('n_episodes', a.get('n'))} | "
            f"{arrow('acc_t1')} | {arrow('acc_t2')} | {_ci(b.get('delta_t1_t2'))} → {_ci(a.get('delta_t1_t2'))} | "
            f"{_pct(a.get('delta_i_to_c'))} / {_pct(a.get('delta_c_to_i'))} | {uptake} | {rise} | {_ci(g.get('gain_acc_t1'))} | "
            f"{_ci(g.get('gain_delta'))} | {vs} | {e['wall_s'] / 60:.1f} | {e['peak_rss_mib'] / 1024:.1f} | {note} |")


def table(path: Path = RESULTS) -> str:
    """The markdown table of every cell in the results file under every protocol it was evaluated with
    (transfer environments as extra rows)."""
    if not path.exists():
        return f"(no results yet: run `python benchmarks/efficacy.py --all`, which writes {path.relative_to(ROOT)})"
    cells = json.loads(path.read_text())["cells"]
    lines = ["| cell | protocol | method | held-out env | N | Acc@t1 before → after | Acc@t2 before → after | "
             "Δ(t1,t2) before → after [95% CI] | Δi→c / Δc→i after | feedback taken up at t2 before → after | "
             "p1@tK / m1@tK after (K > 2) | "
             "Acc@t1 gain [95% CI] | Δ(t1,t2) gain [95% CI] | after − control's after: Acc@t1 / Δ(t1,t2) [95% CI] | "
             "wall (min) | peak RSS (GiB) | diagnosis |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in sorted(cells):
        e = cells[name]
        label = name + (" (smoke)" if e.get("smoke") else "")
        for i, (protocol, f) in enumerate(protocols_of(e).items()):
            note = diagnosis(e) if i == 0 else diagnosis(e, f["gains"])
            lines.append(_row(label, protocol, e, f, e["env"], note))
        for t in e.get("transfer", []):
            for protocol, f in protocols_of(t).items():
                lines.append(_row(f"{name} → transfer", protocol, e, f, t["env"], diagnosis(e, f["gains"])))
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
    p.add_argument("--note", nargs=2, metavar=("CELL", "TEXT"), default=None,
                   help="Record a one-line diagnosis for a measured cell (the table's diagnosis column); words, no figures.")
    p.add_argument("--versus", nargs=2, metavar=("CELL", "OTHER"), default=None,
                   help="Paired gains of CELL's trained model over OTHER's (both finished, run directories kept); "
                   "stored as CELL's vs_control when OTHER is its control.")
    p.add_argument("--refresh", nargs="+", metavar="CELL", default=None,
                   help="Compute these finished cells' figures again from their run directories (all: every cell "
                   "whose directory is kept), e.g. after the report gained a figure; nothing is generated.")
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
    if args.note:
        cells = json.loads(results.read_text())["cells"] if results.exists() else {}
        if args.note[0] not in cells:
            p.error(f"{args.note[0]} is not in {results} (run it first)")
        merge_result(results, {**cells[args.note[0]], "notes": args.note[1]})
        return 0
    if args.versus:
        cells = json.loads(results.read_text())["cells"] if results.exists() else {}
        missing = [c for c in args.versus if c not in cells]
        if missing:
            p.error(f"not in {results}: {', '.join(missing)} (run them first)")
        entry, other = cells[args.versus[0]], cells[args.versus[1]]
        vs = versus(entry, other)
        if vs is None:
            p.error("run directory missing, or the held-out sets or attempt counts differ")
        for protocol, g in vs.items():
            print(f"{args.versus[0]} - {args.versus[1]} under {protocol} (after training, paired over {g['n']} tasks): "
                  f"Acc@t1 {_ci(g['gain_acc_t1'])}, Acc@t2 {_ci(g.get('gain_acc_t2'))}, "
                  f"delta(t1,t2) {_ci(g.get('gain_delta'))}")
        if entry.get("control") == args.versus[1]:
            set_vs_control(entry, vs)
            merge_result(results, entry)
        return 0
    if args.refresh:
        cells = json.loads(results.read_text())["cells"] if results.exists() else {}
        names = sorted(cells) if args.refresh == ["all"] else args.refresh
        missing = [c for c in names if c not in cells]
        if missing:
            p.error(f"not in {results}: {', '.join(missing)} (run them first)")
        for name in names:
            fresh = refresh(cells[name], results)
            if fresh is not None:
                merge_result(results, fresh)
            print(f"{name}: {'refreshed' if fresh is not None else 'run directory gone, kept as it was'}")
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
