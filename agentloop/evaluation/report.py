"""Reports of run directories: markdown plus one self-contained HTML page with embedded plots.

``build_report([run, ...], out)`` writes ``out/report.md`` (plots as ``out/plots/*.png``) and
``out/report.html`` (the same plots inlined as base64 PNG, no external assets, so the file can be
mailed or archived). Sections, each an ``<section id=...>`` in the HTML:

summary, accuracy-by-attempt, transitions, per-environment, sampling (RISE metrics, pass@k,
confidence vs critique), compute-matched, critic, env-metrics (whatever an environment reports per
episode, e.g. TravelPlanner's rates), run-metrics (scalars of a non-eval run's metrics.json), training-curves (improve runs: metrics.jsonl), comparison
(two or more runs: paired differences against the first on shared problems).

A section without data is left out. Metrics of eval runs are recomputed from episodes.jsonl, so a
report of a run that was killed midway shows what finished. Plots use matplotlib's Agg backend,
imported inside the functions.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentloop.errors import ConfigError
from agentloop.evaluation.compare import compare_runs
from agentloop.evaluation.metrics import Estimate
from agentloop.evaluation.summarize import summarize
from agentloop.runs import RunDir, RunDirError
from agentloop.types import Episode

__all__ = ["RunView", "build_report", "load_run"]


@dataclass
class RunView:
    """What a report needs from one run directory."""

    name: str
    path: Path
    kind: str
    config: dict[str, Any]
    metrics: dict[str, Any]
    history: list[dict[str, Any]]
    episodes: list[Episode] = field(default_factory=list)

    @property
    def max_attempts(self) -> int:
        return int(self.metrics.get("max_attempts") or self.config.get("max_attempts") or 1)


def load_run(path: str | Path, name: str | None = None) -> RunView:
    """Open a run directory; eval metrics are recomputed from its episodes."""
    try:
        run = RunDir.open(path)
    except RunDirError as e:
        raise ConfigError(f"cannot report on {path}: {e}") from e
    config = run.read_config()
    episodes = run.episodes()
    metrics = run.read_metrics()
    if run.kind == "eval" and episodes:
        metrics = summarize(episodes, int(config.get("max_attempts") or 0) or None)
    label = name or run.path.resolve().name
    return RunView(name=label, path=run.path, kind=run.kind, config=config, metrics=metrics,
                   history=run.history(), episodes=episodes)


# -- formatting -----------------------------------------------------------------------------------
def _est(d: dict[str, Any] | None, pct: bool = True) -> str:
    if not d:
        return "n/a"
    return Estimate.model_validate(d).fmt(pct=pct)


def _val(d: dict[str, Any] | None) -> float:
    return float(d["value"]) if d and d.get("value") is not None else float("nan")


def _err(d: dict[str, Any] | None) -> tuple[float, float]:
    """Error-bar half-widths (below, above) in the value's units."""
    if not d or d.get("value") is None or d.get("lo") is None:
        return (0.0, 0.0)
    return (max(0.0, d["value"] - d["lo"]), max(0.0, d["hi"] - d["value"]))


@dataclass
class Section:
    id: str
    title: str
    intro: str = ""
    tables: list[tuple[list[str], list[list[str]]]] = field(default_factory=list)
    plots: list[tuple[str, bytes]] = field(default_factory=list)  # (file stem, png bytes)


# -- plots ----------------------------------------------------------------------------------------
def _figure(width: float = 7.0, height: float = 3.6) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height), dpi=110)
    ax.grid(alpha=0.3)
    return fig, ax


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _plot_accuracy(series: list[tuple[str, list[dict[str, Any]]]]) -> bytes:
    fig, ax = _figure()
    for label, accs in series:
        xs = list(range(1, len(accs) + 1))
        ys = [100 * _val(a) for a in accs]
        errs = [[100 * _err(a)[0] for a in accs], [100 * _err(a)[1] for a in accs]]
        ax.errorbar(xs, ys, yerr=errs, marker="o", capsize=4, label=label)
    ax.set_xlabel("attempt")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Accuracy by attempt (95% Wilson intervals)")
    ax.set_xticks(range(1, max(len(a) for _, a in series) + 1))
    ax.set_ylim(-2, 102)
    ax.legend(fontsize=8, loc="best")
    return _png(fig)


def _plot_bars(groups: list[str], bars: list[tuple[str, list[dict[str, Any] | None], str]], title: str,
               ylabel: str, pct: bool = True) -> bytes:
    import numpy as np

    fig, ax = _figure(max(5.0, 1.3 * len(groups) * len(bars) / 2 + 3))
    width = 0.8 / len(bars)
    x = np.arange(len(groups))
    scale = 100 if pct else 1
    for i, (name, ests, color) in enumerate(bars):
        ys = [scale * _val(e) for e in ests]
        errs = [[scale * _err(e)[0] for e in ests], [scale * _err(e)[1] for e in ests]]
        drawn = ax.bar(x + (i - (len(bars) - 1) / 2) * width, ys, width, yerr=errs, capsize=3, label=name,
                       color=color or None)
        ax.bar_label(drawn, fmt="%.1f", fontsize=7, padding=2)
    low, high = ax.get_ylim()
    ax.set_ylim(low, high + 0.1 * (high - low))  # room for the value labels above the error bars
    ax.set_xticks(x)
    ax.set_xticklabels(groups, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.legend(fontsize=8)
    return _png(fig)


def _plot_history(history: list[dict[str, Any]]) -> bytes | None:
    xkey = next((k for k in ("iteration", "step", "epoch") if all(k in r for r in history)), None)
    keys = sorted({k for r in history for k, v in r.items()
                   if k != xkey and isinstance(v, (int, float)) and not isinstance(v, bool)})
    if not keys:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    cols = min(3, len(keys))
    rows = (len(keys) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.6 * rows), dpi=110, squeeze=False)
    for ax, key in zip(axes.flat, keys):
        pts = [(r[xkey] if xkey else i, r[key]) for i, r in enumerate(history) if isinstance(r.get(key), (int, float))]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", markersize=3)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel(xkey or "row", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    return _png(fig)


# -- sections -------------------------------------------------------------------------------------
def _blocks(run: RunView) -> list[tuple[str, dict[str, Any]]]:
    """(label, metrics block) for each environment, then 'overall' when there are several; with several
    protocols, each protocol's blocks labelled 'ENV [PROTOCOL]' ('oracle-stopped' where it stops at a success)."""
    protocols = run.metrics.get("protocols") or {"": run.metrics}
    out = []
    for name, m in protocols.items():
        per_env = list(m.get("per_env", {}).items())
        if len(per_env) != 1 and m.get("overall"):
            per_env.append(("overall", m["overall"]))
        tag = "" if len(protocols) == 1 else f" [{name}{', oracle-stopped' if m.get('oracle_stopped') else ''}]"
        out += [(label + tag, b) for label, b in per_env]
    return out


def _summary(runs: list[RunView]) -> Section:
    rows = []
    for r in runs:
        c = r.config
        policy = c.get("policy", {})
        env = c.get("env")
        listed = [e.get("name") or e.get("env") if isinstance(e, dict) else str(e) for e in c.get("envs", [])]
        envs = c.get("suite") or ", ".join(listed) or (env.get("id") if isinstance(env, dict) else env) or "-"
        pol = policy.get("checkpoint") or policy.get("id", "-") if isinstance(policy, dict) else str(policy)
        overall = r.metrics.get("overall", {})
        rows.append([r.name, r.kind, str(pol), envs, str(c.get("max_attempts", "-")),
                     ", ".join(p["name"] for p in c["protocols"]) if c.get("protocols") else str(c.get("feedback", "-")),
                     str(overall.get("n_episodes", len(r.episodes))), str(overall.get("n_errors", "-"))])
    return Section("summary", "Summary", "Figures are percentages unless marked otherwise, each with its 95% interval [lo, hi] and N.",
                   [(["run", "kind", "policy", "environments", "K", "protocols", "episodes", "errors"], rows)])


def _accuracy(runs: list[RunView]) -> Section | None:
    if not any(r.metrics.get("overall") for r in runs):
        return None
    k = max(r.max_attempts for r in runs)
    sec = Section("accuracy-by-attempt", "Accuracy by attempt",
                  "Acc@t: share of problems whose answer at attempt t is correct (an episode that stopped at a "
                  "correct answer keeps it).")
    rows = []
    for r in runs:
        for label, b in _blocks(r):
            accs = b.get("acc_by_attempt", [])
            rows.append([r.name, label] + [_est(a) for a in accs] + [""] * (k - len(accs)))
    sec.tables.append((["run", "environment"] + [f"Acc@t{t}" for t in range(1, k + 1)], rows))
    if len(runs) == 1:
        series = [(label, b["acc_by_attempt"]) for label, b in _blocks(runs[0])]
    else:
        series = [(r.name, r.metrics["overall"]["acc_by_attempt"]) for r in runs if r.metrics.get("overall")]
    sec.plots.append(("accuracy_by_attempt", _plot_accuracy(series)))
    return sec


def _transitions(runs: list[RunView]) -> Section | None:
    if all(r.max_attempts < 2 for r in runs) or not any(r.metrics.get("overall") for r in runs):
        return None
    sec = Section("transitions", "Self-correction transitions (t1 to tK)",
                  "delta(t1,t2) = Acc@t2 - Acc@t1 = delta i->c - delta c->i (t1 to t2); fix rate = i->c / "
                  "(1 - Acc@t1); break rate = c->i / Acc@t1; delta(t1,tK) = Acc@tK - Acc@t1.")
    rows, groups, ic, ci = [], [], [], []
    for r in runs:
        for label, b in _blocks(r):
            if "delta_t1_t2" not in b:
                continue
            rows.append([r.name, label, _est(b["delta_t1_t2"]), _est(b["delta_i_to_c"]), _est(b["delta_c_to_i"]),
                         _est(b["fix_rate"]), _est(b["break_rate"]), _est(b["delta_t1_tk"])])
            groups.append(label if len(runs) == 1 else f"{r.name}\n{label}")
            ic.append(b["delta_i_to_c"])
            ci.append(b["delta_c_to_i"])
    if not rows:
        return None
    sec.tables.append((["run", "environment", "delta(t1,t2)", "delta i->c", "delta c->i", "fix rate", "break rate",
                        "delta(t1,tK)"], rows))
    sec.plots.append(("transitions", _plot_bars(groups, [("i->c (fixed)", ic, "#2a9d5c"), ("c->i (broken)", ci, "#d1495b")],
                                                "Transitions between first and second attempt", "share of problems (%)")))
    return sec


def _per_env(runs: list[RunView]) -> Section | None:
    rows = []
    for r in runs:
        for label, b in _blocks(r):
            accs = b.get("acc_by_attempt", [])
            tok = b.get("tokens", {}).get("mean_per_episode")
            unit = "tokens" if b.get("tokens", {}).get("exact") else "words"
            rows.append([r.name, label, str(b.get("n_episodes", 0)), str(b.get("n_errors", 0)),
                         _est(accs[0]) if accs else "n/a", _est(accs[-1]) if accs else "n/a",
                         f"{_est(tok, pct=False)} {unit}" if tok else "n/a"])
    if not rows:
        return None
    return Section("per-environment", "Per environment", "", [(
        ["run", "environment", "episodes", "errors", "Acc@t1", "Acc@tK", "generated per episode"], rows)])


def _sampling(runs: list[RunView]) -> Section | None:
    rows: list[tuple[str, str, dict[str, Any]]] = []
    for r in runs:
        for label, b in _blocks(r):
            figures = {**b.get("rise", {}), **b.get("pass_at_k", {}), **b.get("confidence_critique", {})}
            if figures:
                rows.append((r.name, label, figures))
    if not rows:
        return None
    names = list(dict.fromkeys(n for _, _, f in rows for n in f))
    table = [[run, label] + [_est(f.get(n)) if n in f else "" for n in names] for run, label, f in rows]
    return Section("sampling", "RISE metrics, pass@k, confidence vs critique",
                   "m1@t1: first attempt; m1@tK: majority over the K sequential answers; p1@tK: any attempt right "
                   "(oracle; with feedback modes that stop at a correct answer, the final answer is carried forward, so "
                   "m1@tK favours it: RISE's protocol uses feedback 'none' or 'binary' with stop_on_success off); "
                   "pass@k: unbiased estimator over n samples per task (first attempts); CL: P(stays right "
                   "| right first), CS: P(becomes right | wrong first), weighted per question (Yang et al. 2025).",
                   [(["run", "environment"] + names, table)])


CM_ROWS = [("seq_final", "sequential: answer after K attempts", "seq: final"),
           ("seq_oracle", "sequential: any attempt right (oracle)", "seq: any right"),
           ("par_first", "parallel: first sample", "par: first"),
           ("par_majority", "parallel: majority of K samples", "par: majority"),
           ("par_oracle", "parallel: best of K (oracle)", "par: best-of-K"),
           ("tm_majority", "token-matched parallel: majority", "tok-matched:\nmajority"),
           ("tm_oracle", "token-matched parallel: best of (oracle)", "tok-matched:\nbest-of")]


def _compute_matched(runs: list[RunView]) -> Section | None:
    found = [(r, label, b["compute_matched"]) for r in runs for label, b in _blocks(r)
             if b.get("compute_matched", {}).get("n_problems")]
    if not found:
        return None
    sec = Section("compute-matched", "Self-correction vs parallel sampling (compute-matched)",
                  "K sequential attempts against K independent samples with majority vote and oracle best-of-K; "
                  "token-matched rows use as many parallel samples as fit in the tokens the sequential episode used. "
                  "Paired differences are over the same problems.")
    unit = "tokens" if all(cm.get("tokens_exact") for _, _, cm in found) else "words (approx.)"
    rows = [[name] + [_est(cm.get(key)) for _, _, cm in found] for key, name, _ in CM_ROWS]
    rows.append([f"generated {unit} per problem: sequential"] + [_est(cm["seq_tokens"], False) for _, _, cm in found])
    rows.append([f"generated {unit} per problem: parallel (K samples)"] +
                [_est(cm["par_tokens"], False) for _, _, cm in found])
    rows.append(["parallel samples that fit the sequential budget"] + [_est(cm["tm_samples"], False) for _, _, cm in found])
    rows.append(["paired diff: sequential - parallel majority"] + [_est(cm["diff_seq_vs_par_majority"]) for _, _, cm in found])
    rows.append(["paired diff: sequential - token-matched majority"] +
                [_est(cm["diff_seq_vs_tm_majority"]) for _, _, cm in found])
    header = ["figure"] + [label if len(runs) == 1 else f"{r.name} / {label}" for r, label, _ in found]
    sec.tables.append((header, rows))
    # one series per run: its overall block (or its only environment)
    last = {r.name: (r, label, cm) for r, label, cm in found}
    colors = ["#457b9d", "#e76f51", "#2a9d8f", "#e9c46a", "#6d597a"]
    bars = [(f"{r.name} / {label}" if len(runs) > 1 else label, [cm.get(key) for key, _, _ in CM_ROWS],
             colors[i % len(colors)]) for i, (r, label, cm) in enumerate(last.values())]
    sec.plots.append(("compute_matched", _plot_bars([short for _, _, short in CM_ROWS], bars,
                                                    "Sequential vs parallel at matched compute", "accuracy (%)")))
    return sec


def _critic(runs: list[RunView]) -> Section | None:
    rows = [[r.name, label, name, _est(v)] for r in runs for label, b in _blocks(r)
            for name, v in b.get("critic", {}).items()]
    if not rows:
        return None
    return Section("critic", "Critic quality", "Against the verifier's labels; the positive class is a 'wrong' verdict.",
                   [(["run", "environment", "metric", "value"], rows)])


def _env_metrics(runs: list[RunView]) -> Section | None:
    rows = [[r.name, label, name, _est(v, pct=v.get("method") == "wilson")] for r in runs for label, b in _blocks(r)
            for name, v in b.get("env_metrics", {}).items()]
    if not rows:
        return None
    return Section("env-metrics", "Environment metrics",
                   "Per-episode figures reported by the environments (mean over episodes; proportions in %).",
                   [(["run", "environment", "metric", "value"], rows)])


def _run_metrics(runs: list[RunView]) -> Section | None:
    """The scalar figures of metrics.json for runs that are not evaluations (e.g. an improve run's summary)."""
    rows = [[r.name, key, f"{value:.4g}" if isinstance(value, float) else str(value)]
            for r in runs if r.kind != "eval" for key, value in r.metrics.items()
            if isinstance(value, (int, float, str, bool))]
    if not rows:
        return None
    return Section("run-metrics", "Run metrics", "Scalar figures from metrics.json.", [(["run", "figure", "value"], rows)])


def _held_out(runs: list[RunView]) -> Section | None:
    """Training runs (improve): the held-out SelfCorrection of each protocol at each evaluated iteration."""
    from agentloop.evaluation.selfcorrection import SelfCorrection

    found = [(r, row["iteration"], name, SelfCorrection.model_validate(m))
             for r in runs if r.kind != "eval" for row in r.history if row.get("held_out")
             for name, m in (row.get("protocols") or {"": row["held_out"]}).items()]
    if not found:
        return None
    k = max(m.max_attempts for *_, m in found)
    rows = [[r.name, str(it), name + (" (oracle-stopped)" if m.oracle_stopped else ""), str(m.n_episodes),
             str(m.n_errors)] + [e.fmt() for e in m.acc_by_attempt] + [""] * (k - len(m.acc_by_attempt))
            + ([m.delta_i_to_c.fmt() if m.delta_i_to_c else "n/a"] if k > 1 else [])
            for r, it, name, m in found]
    header = ["run", "iteration", "protocol", "episodes", "errors"] + [f"Acc@t{t}" for t in range(1, k + 1)]
    return Section("held-out", "Held-out evaluation by iteration", "The held-out split of each training run, "
                   "evaluated greedily at the logged iterations under each protocol (acc_by_attempt, delta_i_to_c "
                   "from t1 to t2).", [(header + (["delta i->c"] if k > 1 else []), rows)])


def _training(runs: list[RunView]) -> Section | None:
    sec = Section("training-curves", "Training curves", "Per-iteration metrics from metrics.jsonl.")
    for r in runs:
        if r.history:
            png = _plot_history(r.history)
            if png:
                sec.plots.append((f"training_{len(sec.plots)}", png))
    return sec if sec.plots else None


def _comparison(runs: list[RunView]) -> Section | None:
    if len(runs) < 2:
        return None
    cmp = compare_runs([(r.name, r.episodes, r.max_attempts) for r in runs])
    sec = Section("comparison", "Comparison", f"On the {cmp['n_shared']} problems all runs share; differences are "
                  f"paired (same problems) against {cmp['baseline']}, with bootstrap intervals.")
    rows = [[x["name"], _est(x["acc_t1"]), _est(x["acc_final"]), _est(x["diff_t1"]), _est(x["diff_final"])]
            for x in cmp["runs"]]
    sec.tables.append((["run", "Acc@t1", "Acc@tK", "diff Acc@t1", "diff Acc@tK"], rows))
    env_rows = [[env, x["name"], _est(x["acc_final"]), _est(x["diff_final"])]
                for env, xs in cmp["per_env"].items() for x in xs]
    sec.tables.append((["environment", "run", "Acc@tK", "diff vs baseline"], env_rows))
    others = cmp["runs"][1:]
    sec.plots.append(("comparison", _plot_bars([x["name"] for x in others],
                                               [("diff Acc@t1", [x["diff_t1"] for x in others], "#577590"),
                                                ("diff Acc@tK", [x["diff_final"] for x in others], "#f3722c")],
                                               f"Paired difference vs {cmp['baseline']}", "percentage points")))
    return sec


# -- rendering ------------------------------------------------------------------------------------
def _md_table(header: list[str], rows: list[list[str]]) -> str:
    def cell(s: str) -> str:
        return str(s).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def render_markdown(title: str, sections: list[Section], plot_dir: str = "plots") -> str:
    parts = [f"# {title}", ""]
    for s in sections:
        parts += [f"## {s.title}", ""]
        if s.intro:
            parts += [s.intro, ""]
        for stem, _ in s.plots:
            parts += [f"![{stem}]({plot_dir}/{stem}.png)", ""]
        for header, rows in s.tables:
            parts += [_md_table(header, rows), ""]
    return "\n".join(parts)


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#1d3557;color:#fff;padding:18px 32px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;opacity:.8;font-size:13px}nav{padding:8px 32px;background:#e9edf3;font-size:13px}
nav a{margin-right:14px;color:#1d3557;text-decoration:none}main{padding:8px 32px 40px;max-width:1150px}
section{background:#fff;border:1px solid #dde2ea;border-radius:8px;padding:14px 20px;margin:16px 0}
h2{font-size:18px;margin:4px 0 8px}p.intro{color:#4a5466;font-size:13px;margin:0 0 10px}
table{border-collapse:collapse;font-size:13px;margin:8px 0 12px;width:100%}
th,td{border-bottom:1px solid #e6e9ef;padding:5px 8px;text-align:left;vertical-align:top}
th{background:#f1f3f7;font-weight:600}td{font-variant-numeric:tabular-nums}img{max-width:100%;display:block;margin:6px 0}
"""


def render_html(title: str, subtitle: str, sections: list[Section]) -> str:
    esc = html.escape
    nav = "".join(f'<a href="#{s.id}">{esc(s.title)}</a>' for s in sections)
    body = []
    for s in sections:
        parts = [f'<section id="{s.id}"><h2>{esc(s.title)}</h2>']
        if s.intro:
            parts.append(f'<p class="intro">{esc(s.intro)}</p>')
        for stem, png in s.plots:
            data = base64.b64encode(png).decode("ascii")
            parts.append(f'<img alt="{esc(stem)}" src="data:image/png;base64,{data}">')
        for header, rows in s.tables:
            head = "".join(f"<th>{esc(h)}</th>" for h in header)
            trs = "".join("<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in row) + "</tr>" for row in rows)
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{trs}</tbody></table>")
        parts.append("</section>")
        body.append("".join(parts))
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f"<style>{CSS}</style></head><body><header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p></header>"
            f"<nav>{nav}</nav><main>{''.join(body)}</main></body></html>\n")


def build_sections(runs: list[RunView]) -> list[Section]:
    """Every section that has data, in reading order (the comparison is checked first: it may refuse)."""
    comparison = _comparison(runs)  # mismatched runs raise here, before any plotting
    builders = [_accuracy, _transitions, _per_env, _sampling, _compute_matched, _critic, _env_metrics, _held_out,
                _run_metrics, _training]
    sections = [_summary(runs)] + [s for b in builders if (s := b(runs)) is not None]
    return sections + ([comparison] if comparison else [])


def build_report(paths: list[str | Path], out: str | Path | None = None) -> tuple[Path, Path]:
    """Write report.md, plots/*.png and report.html for one or more runs; returns (markdown, html) paths."""
    if not paths:
        raise ConfigError("give at least one run directory to report on.")
    names: list[str] = []
    runs = []
    for p in paths:
        name = Path(p).resolve().name
        name = name if name not in names else f"{name}#{len(names)}"
        names.append(name)
        runs.append(load_run(p, name))
    if len(runs) > 1:
        bad = [r.name for r in runs if not any(ep.metadata.get("mode", "sequential") != "parallel" for ep in r.episodes)]
        if bad:
            raise ConfigError(f"cannot compare {', '.join(bad)}: no evaluation episodes in episodes.jsonl.")
    sections = build_sections(runs)
    out_dir = Path(out) if out is not None else (runs[0].path / "report" if len(runs) == 1 else Path("report"))
    (out_dir / "plots").mkdir(parents=True, exist_ok=True)
    for s in sections:
        for stem, png in s.plots:
            (out_dir / "plots" / f"{stem}.png").write_bytes(png)
    title = f"agentloop report: {runs[0].name}" if len(runs) == 1 else f"agentloop comparison: {' vs '.join(names)}"
    subtitle = " | ".join(f"{r.name}: {r.path}" for r in runs)
    md, page = out_dir / "report.md", out_dir / "report.html"
    md.write_text(render_markdown(title, sections), encoding="utf-8")
    page.write_text(render_html(title, subtitle, sections), encoding="utf-8")
    return md, page
