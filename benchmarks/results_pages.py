"""Write ``docs/results.md`` and the README's measured figures from ``benchmarks/results/`` (never by hand).

Every figure on the page is read from a JSON file that a benchmark script wrote when it ran
(``efficacy.py``, ``improve_profile.py``, ``improve_default.py``, ``vllm_cpu_lora.py``), so a figure
lives in one place: rerun the benchmark, then this script. The README's figures sit between
``<!-- generated:NAME -->`` and ``<!-- /generated -->`` lines, rewritten the same way. A test checks the
committed page and README equal what this script renders from the committed JSON.

    .venv/bin/python benchmarks/results_pages.py           # rewrite docs/results.md and the README's blocks
    .venv/bin/python benchmarks/results_pages.py --check   # exit 1 if either is stale
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"
PAGE = ROOT / "docs" / "results.md"
README = ROOT / "README.md"
DEFAULT_CELL = "rise_greedy-arith"  # the efficacy cell with configs/default.yaml's settings
PROFILE_ORDER = ("improve_profile_quiet", "improve_profile_quiet_hf", "improve_profile_quiet_previous_default", "improve_profile_default",
                 "improve_profile", "improve_profile_hf_lora_cpu", "improve_profile_vllm_cpu")


def _efficacy() -> Any:
    """benchmarks/efficacy.py as a module (its table code is the one ``--table`` prints)."""
    name = "efficacy_bench"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / "efficacy.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # pydantic resolves the module's annotations through sys.modules
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    return sys.modules[name]


def _load(results: Path, stem: str) -> dict[str, Any] | None:
    path = results / f"{stem}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{100 * float(value):.1f}%"


def _load_avg(data: dict[str, Any]) -> str:
    """The 1-minute load average at start and end (stored as a float, or as os.getloadavg()'s triple)."""
    start, end = data.get("load_avg_start"), data.get("load_avg_end")
    if start is None or end is None:
        return "n/a"
    first = lambda v: v[0] if isinstance(v, list) else v  # noqa: E731
    return f"{first(start):.1f} -> {first(end):.1f}"


def default_run_section(results: Path) -> list[str]:
    """The default run (``make run``): its efficacy cell (both seeds) and the quiet-machine profile."""
    eff = _efficacy()
    cells = (_load(results, "efficacy") or {}).get("cells", {})
    runs = [(name, cells[name]) for name in (DEFAULT_CELL, f"{DEFAULT_CELL}@seed1") if name in cells]
    out = ["## The default run (`make run`)", ""]
    if not runs:
        return out + [f"(no results yet: `python benchmarks/efficacy.py --cell {DEFAULT_CELL}`)", ""]
    first = runs[0][1]
    out += [f"`configs/default.yaml` is the efficacy cell `{DEFAULT_CELL}`: {first['description']}. Held-out N = "
            f"{first['after']['n']}, greedy, two attempts with the same text after each (no oracle); 95% intervals "
            "(Wilson for rates, bootstrap for deltas, paired bootstrap for gains).", ""]
    head = "| held-out | before | " + " | ".join(f"after: `{name}`" for name, _ in runs) + " |"
    out += [head, "|---|---|" + "---|" * len(runs)]
    before = first["before"]
    for key, label in (("acc_t1", "Acc@t1"), ("acc_t2", "Acc@t2")):
        out.append(f"| {label} | {eff._ci(before.get(key), signed=False)} | "
                   + " | ".join(eff._ci(e["after"].get(key), signed=False) for _, e in runs) + " |")
    out.append(f"| delta(t1,t2) | {eff._ci(before.get('delta_t1_t2'))} | "
               + " | ".join(eff._ci(e["after"].get("delta_t1_t2")) for _, e in runs) + " |")
    out.append(f"| delta i->c / c->i | {eff._pct(before.get('delta_i_to_c'))} / {eff._pct(before.get('delta_c_to_i'))} | "
               + " | ".join(f"{eff._pct(e['after'].get('delta_i_to_c'))} / {eff._pct(e['after'].get('delta_c_to_i'))}"
                            for _, e in runs) + " |")
    for key, label in (("gain_acc_t1", "paired gain Acc@t1"), ("gain_delta", "paired gain delta(t1,t2)")):
        out.append(f"| {label} | | " + " | ".join(eff._ci(e["gains"].get(key)) for _, e in runs) + " |")
    out.append("| Acc@t1 vs the control (paired) | | "
               + " | ".join(f"{eff._ci((e.get('vs_control') or {}).get('gain_acc_t1'))} vs `{e.get('control')}`"
                            for _, e in runs) + " |")
    out.append("| wall / peak RSS | | " + " | ".join(f"{e['wall_s']:.0f} s / {e['peak_rss_mib']:.0f} MiB"
                                                    for _, e in runs) + " |")
    out.append("")
    if first.get("budget"):
        out += [f"Budget against the control: {first['budget']}.", ""]
    quiet = _load(results, "improve_profile_quiet")
    if quiet:
        r = quiet["result"]
        out += [f"The same config alone on a quiet {quiet['cpu_count']}-core machine (`{quiet['command']}`, "
                f"{quiet['date']}): **{quiet['wall_s']:.0f} s** wall, peak RSS {quiet['peak_rss_mib']:.0f} MiB, "
                f"Acc@t1 {_pct(r['before'])} -> {_pct(r['after'])} (N = {r['n']}); phases in "
                "[Run profiles](#run-profiles).", ""]
    return out


def efficacy_section(results: Path) -> list[str]:
    eff = _efficacy()
    data = _load(results, "efficacy")
    out = ["## Efficacy matrix", "",
           "One cell per file in `configs/efficacy/` (`python benchmarks/efficacy.py --cell NAME`; `NAME@seedN` is "
           "a rerun with `--seed N`). Every cell trains the embedded SmolLM2-135M-Instruct on CPU and evaluates "
           "the starting and the trained model on the same held-out tasks (two greedy attempts, `retry` feedback). "
           "\"after - control's after\" is the trained model minus its control's trained model, paired over the same "
           "tasks. \"Feedback taken up\" is the share of second attempts, after a wrong first one whose "
           "environment verdict asked something checkable (a NameError's name to define, the arithmetic checker's "
           "direction, a tool call's named argument, a travel plan's failed checks), that did it, counted under every protocol whether the protocol showed that verdict or not "
           "(n/a: the environment checks nothing). The diagnosis column is the cell's note recorded with its result, "
           "or a reading of the intervals.",
           ""]
    if data is None:
        return out + ["(no results yet: `python benchmarks/efficacy.py --all`)", ""]
    out += [eff.table(results / "efficacy.json"), ""]
    ops = eff.ops_table(results / "efficacy.json")
    if ops:
        out += ["Accuracy per operation (environments that tag it):", "", ops, ""]
    out += ["| cell | description | budget against the control | command | date | load (1 min, start -> end) |",
            "|---|---|---|---|---|---|"]
    for name, e in sorted(data["cells"].items()):
        out.append(f"| {name} | {e['description']} | {e.get('budget') or 'same'} | `{e['command']}` | {e['date']} | "
                   f"{_load_avg(e)} |")
    return out + [""]


def _cpu(data: dict[str, Any]) -> str:
    c = data.get("cpu")
    if not c:
        return ""
    return (f"; CPU user {c['user_s']:.0f} s, system {c['system_s']:.0f} s ({100 * c['system_share']:.0f}% of the CPU "
            f"time), {c['minor_faults'] / 1e6:.1f} M minor page faults")


def profiles_section(results: Path) -> list[str]:
    out = ["## Run profiles", "",
           "`python benchmarks/improve_profile.py` runs `agentloop improve` in-process and records each phase's "
           "wall time, tokens/s and peak RSS (a phase's peak includes what earlier phases left allocated).", ""]
    for stem in PROFILE_ORDER:
        data = _load(results, stem)
        if data is None:
            continue
        overrides = " ".join(data.get("overrides") or []) or "none"
        backend = data.get("generation_backend", "hf")
        out += [f"### `{stem}.json`", "",
                f"`{data['command']}` (overrides: {overrides}; generation backend {backend}; {data['date']}, "
                f"{data['cpu_count']} cores, load {_load_avg(data)}): wall {data['wall_s']:.1f} s, peak RSS "
                f"{data['peak_rss_mib']:.0f} MiB{_cpu(data)}.", "",
                "| phase | seconds | share | tokens/s | peak RSS (MiB) |", "|---|---|---|---|---|"]
        for phase, p in data["phases"].items():
            tps = f"{p['tokens_per_s']:.1f}" if p.get("tokens_per_s") is not None else "-"
            out.append(f"| {phase} | {p['seconds']:.1f} | {100 * p['share']:.0f}% | {tps} | {p['peak_rss_mib']:.0f} |")
        r = data.get("result") or {}
        if "before" in r:
            out += ["", f"Held-out Acc@t1 {_pct(r['before'])} -> {_pct(r['after'])} (N = {r['n']})."]
        out.append("")
    old = _load(results, "improve_default")
    if old:
        r = old["result"]
        out += ["### `improve_default.json`", "",
                f"`python benchmarks/improve_default.py` (`{old['command']}` as a subprocess, the default config of "
                f"{old['date']}, full fine-tuning): wall {old['wall_s']:.0f} s, peak RSS {old['peak_rss_mib']:.0f} MiB, "
                f"load {_load_avg(old)}; {r['metric']} {_pct(r['before'])} -> {_pct(r['after'])} (N = {r['n']}).", ""]
    lora = _load(results, "vllm_cpu_lora")
    if lora:
        out += ["### `vllm_cpu_lora.json`", "",
                f"`{lora['command']}` ({lora['date']}): batch {lora['batch']} x {lora['max_new_tokens']} greedy tokens, "
                f"{lora['base_tokens_per_s']} tokens/s without and {lora['adapter_tokens_per_s']} with a rank-"
                f"{lora['rank']} adapter ({lora['adapter_slowdown']}x slower); engine start {lora['engine_start_s']} s, "
                f"first request {lora['first_request_s']} s. {lora.get('note', '')}", ""]
    return out


def generation_section(results: Path) -> list[str]:
    """``generation.json`` (``benchmarks/generation.py --json``): each backend against ``hf`` and the matmul bound."""
    data = _load(results, "generation")
    if data is None:
        return []
    out = ["## Generation speed", "",
           f"`{data.get('command', 'python benchmarks/generation.py')}` ({data.get('date', '?')}, "
           f"{data['threads']} threads, load {_load_avg(data)}; greedy, {data['max_new_tokens']} new tokens, chat "
           "prompts of ~47 tokens). The bound is the model's linear layers alone at M = the batch "
           "(`torch.nn.functional.linear` on its own weights), measured in the same run; a backend's tokens/s "
           "include its prefill. `agree`: identical greedy texts; `agree_ties`: identical, or first different at a "
           "bf16 near-tie (the two tokens' logits within 2 ulps).", "",
           "| backend | batch | hf tok/s | tok/s | ratio to hf | bound tok/s | share of bound (hf's) | agree | "
           "agree_ties |", "|---|---|---|---|---|---|---|---|---|"]
    for name, rows in data["backends"].items():
        for batch, r in rows.items():
            bound = data["bound"][batch]["tok_s"]
            out.append(f"| {name} | {batch} | {r['hf_tok_s']:.0f} | {r['tok_s']:.0f} | {r['ratio_to_hf']:.2f} | "
                       f"{bound:.0f} | {r['share_of_bound']:.2f} ({r['hf_share_of_bound']:.2f}) | {r['agree']:.2f} | "
                       f"{r['agree_ties']:.2f} |")
    pre = data.get("prefill")
    if pre:
        out += ["", f"Prefill of one batch of prompts of {', '.join(map(str, pre['lengths']))} tokens "
                f"({pre['prompt_tokens']} in all; linear-layer bound {pre['bound_seconds']:.2f} s):", "",
                "| backend | seconds | tok/s | ratio to hf | share of bound |", "|---|---|---|---|---|"]
        for name, b in pre["backends"].items():
            out.append(f"| {name} | {b['seconds']:.2f} | {b['tok_s']:.0f} | {b['ratio_to_hf']:.2f} | "
                       f"{b['share_of_bound']:.2f} |")
    work = data.get("workload")
    if work:
        out += ["", f"A real workload: the first prompt of {work['prompts']} tasks of `{work['env']}` "
                f"[{work['env_kwargs']}], greedy, at most {work['max_new_tokens']} tokens, stop "
                f"{json.dumps(work['stop'])} (the default run's generation):", "",
                "| backend | seconds | tokens | tok/s | ratio to hf (wall) | identical texts |", "|---|---|---|---|---|---|"]
        for name, b in work["backends"].items():
            out.append(f"| {name} | {b['seconds']:.1f} | {b['tokens']} | {b['tok_s']:.0f} | {b['ratio_to_hf']:.2f} | "
                       f"{b['agree']:.2f} |")
    return out + [""]


def render(results: Path = RESULTS_DIR) -> str:
    """The whole page, from the JSON files under ``results``."""
    lines = ["# Results", "",
             "<!-- Generated by benchmarks/results_pages.py from benchmarks/results/*.json: do not edit by hand. -->",
             "",
             "Measured on a shared 2-core CPU machine unless a row says otherwise; each entry records its command, "
             "date and load. How the measurements were read, and measurements not kept as JSON, are in "
             "[findings.md](findings.md) and [performance.md](performance.md).", ""]
    lines += default_run_section(results) + efficacy_section(results) + generation_section(results) + \
        profiles_section(results)
    return "\n".join(lines).rstrip() + "\n"


def readme_blocks(results: Path = RESULTS_DIR) -> dict[str, str]:
    """The README's measured sentences: what `make run` costs and gives, and the one-paragraph results summary."""
    eff = _efficacy()
    cells = (_load(results, "efficacy") or {}).get("cells", {})
    quiet, cell = _load(results, "improve_profile_quiet"), cells.get(DEFAULT_CELL)
    blocks = {}
    if quiet and cell:
        r = quiet["result"]
        seeds = [c["wall_s"] for name, c in cells.items() if name.split("@")[0] == DEFAULT_CELL]
        blocks["make-run"] = (
            f"On a quiet {quiet['cpu_count']}-core machine it took **{quiet['wall_s']:.0f} s** at peak RSS "
            f"{quiet['peak_rss_mib']:.0f} MiB (generation backend {quiet.get('generation_backend', 'hf')}"
            f"{_cpu(quiet)}), with held-out Acc@t1 {_pct(r['before'])} -> {_pct(r['after'])} (N = {r['n']}); "
            f"the efficacy cell with its settings took {min(seeds):.0f}-{max(seeds):.0f} s at one thread beside "
            "another run.")
    if cell:
        g, vs = cell["gains"], cell.get("vs_control") or {}
        blocks["results"] = (
            f"On CPU with the embedded 135M model, the default run (`{DEFAULT_CELL}`, {cell['method']}) raises held-out "
            f"Acc@t1 from {eff._pct(cell['before']['acc_t1'])}% to {eff._pct(cell['after']['acc_t1'])}% (paired gain "
            f"{eff._ci(g.get('gain_acc_t1'))}; against the control `{cell.get('control')}` "
            f"{eff._ci(vs.get('gain_acc_t1'))}) and moves delta(t1,t2) from {eff._ci(cell['before'].get('delta_t1_t2'))} "
            f"to {eff._ci(cell['after'].get('delta_t1_t2'))} (N = {cell['after']['n']}).")
    return blocks


def update_readme(text: str, blocks: dict[str, str]) -> str:
    """``text`` with each ``<!-- generated:NAME -->`` ... ``<!-- /generated -->`` block replaced by ``blocks[NAME]``."""
    import re

    def fill(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in blocks:
            raise KeyError(f"README block {name!r} has no source in benchmarks/results (known: {sorted(blocks)})")
        return f"<!-- generated:{name} -->\n{blocks[name]}\n<!-- /generated -->"

    return re.sub(r"<!-- generated:([\w-]+) -->\n.*?<!-- /generated -->", fill, text, flags=re.S)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="Exit 1 if the page differs from what the JSON gives.")
    p.add_argument("--out", type=Path, default=PAGE, help="Page to write (default docs/results.md).")
    args = p.parse_args(argv)
    text = render()
    readme = README.read_text()
    new_readme = update_readme(readme, readme_blocks())
    if args.check:
        stale = [str(p) for p, old, new in ((args.out, args.out.read_text() if args.out.exists() else None, text),
                                            (README, readme, new_readme)) if old != new]
        if stale:
            print(f"stale: {', '.join(stale)}: run python benchmarks/results_pages.py", file=sys.stderr)
            return 1
        return 0
    args.out.write_text(text)
    README.write_text(new_readme)
    print(f"wrote {args.out} and the generated blocks of {README}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
