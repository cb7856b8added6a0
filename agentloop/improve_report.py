"""What an improve run reports: its summary (:class:`ImproveResult`), one log line per iteration, and the
lines printed at the end; an iteration's training figures (:func:`train_row`, kept in its checkpoint
so a resumed run reports them too: :func:`recorded_train_row`).

:func:`build_result` compares the first and the final held-out evaluation under every protocol
(paired bootstrap, seed 0, as every report) and takes the headline figures (before, after, gain)
from the headline protocol; :func:`row_text` is the log line of a metrics row; :func:`format_result`
the text ``agentloop improve`` prints.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agentloop.evaluation.heldout import HeldOutResult
from agentloop.improve_config import ImproveConfig, ImproveResult

__all__ = ["TRAIN_ROW", "build_result", "format_result", "recorded_train_row", "row_text", "train_row"]

TRAIN_ROW = "train_row.json"  # a multi-process phase's training figures, next to the checkpoint rank 0 wrote


def train_row(collected: dict[str, Any], examples: Sequence[Any], stats: Any,
              branches: Sequence[Any] = ()) -> dict[str, Any]:
    """An iteration's training figures: the method's ``stats`` of the collected episodes (``collected``),
    the branch episodes' success, the examples and the trainer's ``FitStats``."""
    done = [e for e in branches if e.turns]
    branch = ({"branch_episodes": len(done), "branch_success": sum(bool(e.success) for e in done) / len(done)}
              if done else {})
    # train_examples_rendered: examples trained on re-rendered text, not sampled ids (a backend without ids,
    # a teacher's turns); agentloop.training.data
    rendered = sum(getattr(ex, "meta", {}).get("tokens") == "rendered" for ex in examples)
    return {**collected, **branch, "train_examples": len(examples),
            "train_examples_rendered": rendered, "train_steps": stats.steps,
            "train_loss_first": stats.loss_first, "train_loss_last": stats.loss_last,
            "train_seconds": round(stats.seconds, 1), "train_truncated": stats.truncated,
            "train_skipped_nonfinite": stats.skipped_nonfinite, "train_tokens_per_s": stats.tokens_per_s,
            "train_tokens": stats.tokens, "train_padded_tokens": stats.padded_tokens}


def recorded_train_row(checkpoint: Path, iteration: int, history: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The training figures of an iteration finished before a resume: its metrics row, else its checkpoint's."""
    row = next((r for r in history if r.get("iteration") == iteration), None)
    if row is not None:
        return {k: v for k, v in row.items() if k not in ("held_out", "phase")}
    for name, key in (("trainer_state.json", "train_row"), (TRAIN_ROW, None)):
        if (checkpoint / name).exists():
            data = json.loads((checkpoint / name).read_text())
            found = data.get(key) if key else data
            if found:
                return dict(found)
    return {}


def build_result(cfg: ImproveConfig, evaluations: Sequence[HeldOutResult], rows: list[dict[str, Any]], *,
                 run_dir: str, wall_s: float, threads: int, generation_start_s: float | None,
                 load_avg_start: float | None, corrupt_episode_lines: int) -> ImproveResult:
    """The run's summary from its held-out evaluations (the first is the starting model's) and metrics rows."""
    from agentloop.evaluation.heldout import compare_protocols

    first, final = evaluations[0], evaluations[-1]
    sc = compare_protocols(first, final)  # bootstrap seed 0, as every report: same episodes, same intervals
    head = sc[first.protocol]  # before, after and the gain: the headline protocol's report and paired gains
    final_metric = cfg.eval.metric == "final"
    acc, gain = ("acc_tk", head.gains.gain_acc_tk) if final_metric else ("acc_t1", head.gains.gain_acc_t1)
    assert gain is not None  # metric final needs max_attempts >= 2 (checked by the config)
    attempt = cfg.eval.max_attempts if final_metric else 1
    return ImproveResult(
        run_dir=run_dir, method=cfg.method.name, env=cfg.env.id,
        metric=f"acc_by_attempt[{attempt}]", n=head.gains.n, before=float(getattr(head.before, acc).value or 0.0),
        after=float(getattr(head.after, acc).value or 0.0), gain=float(gain.value or 0.0),
        gain_lo=float(gain.lo or 0.0), gain_hi=float(gain.hi or 0.0),
        excludes_zero=bool(gain.lo is not None and (gain.lo > 0 or (gain.hi or 0) < 0)), held_out=list(evaluations),
        protocol=first.protocol, self_correction=sc, iterations=rows, wall_s=wall_s, threads=threads,
        generation_start_s=generation_start_s, load_avg_start=load_avg_start,
        corrupt_episode_lines=corrupt_episode_lines)


def row_text(row: dict[str, Any]) -> str:
    """The log line of a metrics row: held-out accuracy by attempt per protocol, training figures."""
    parts = [f"iteration {row['iteration']}:"]
    held = row.get("held_out")
    if held is not None:
        per = row.get("protocols") or {held.get("protocol") or "held-out": held}
        texts = []
        for name, r in per.items():
            accs = [a["value"] for a in r["acc_by_attempt"]]
            stop = " oracle-stopped" if r.get("oracle_stopped") else ""
            texts.append(f"{name}{stop} {', '.join('n/a' if a is None else f'{100 * a:.1f}%' for a in accs)}")
        parts.append(f"held-out acc_by_attempt ({held['n_episodes']} tasks) " + "; ".join(texts))
    if "train_success" in row:
        parts.append(f"train success {100 * row['train_success']:.1f}%, {row.get('train_examples')} examples, "
                     f"loss {row.get('train_loss_first')}->{row.get('train_loss_last')}")
    return " ".join(parts[:2]) + ("; " + "; ".join(parts[2:]) if len(parts) > 2 else "")


def format_result(r: ImproveResult) -> str:
    """The lines printed at the end of a run: the headline gain, then every protocol's self-correction figures."""
    verdict = "excludes zero" if r.excludes_zero else "includes zero"
    lines = [f"held-out {r.metric} on {r.n} tasks ({r.env}, method {r.method}, protocol {r.protocol}):",
             f"  before {100 * r.before:.1f}%  after {100 * r.after:.1f}%  gain {100 * r.gain:+.1f} points",
             f"  paired-bootstrap 95% interval of the gain [{100 * r.gain_lo:+.1f}, {100 * r.gain_hi:+.1f}] ({verdict})"]
    comparisons = {n: c for n, c in (r.self_correction or {}).items() if c.before.max_attempts >= 2}
    if comparisons:
        k = next(iter(comparisons.values())).before.max_attempts
        lines.append(f"  self-correction over {k} attempts, before -> after (%; gains and 'after' with 95% intervals); "
                     "one shared first attempt:")
        width = 30
        head = "".join(f"{n + (' (oracle-stopped)' if c.before.oracle_stopped else ' (no oracle)'):<{width}}"
                       for n, c in comparisons.items())
        lines.append(f"    {'':<20}{head}".rstrip())
        rows = [("acc_t1", "Acc@t1", False), ("acc_t2", "Acc@t2", False), ("delta_t1_t2", "delta(t1,t2)", True),
                ("delta_i_to_c", "delta i->c", False), ("delta_c_to_i", "delta c->i", False)]
        if k > 2:
            rows += [("acc_tk", f"Acc@t{k}", False), ("delta_t1_tk", f"delta(t1,t{k})", True),
                     ("p1_tk", f"p1@t{k}", False), ("m1_tk", f"m1@t{k}", False)]
        for key, label, signed in rows:
            cells = "".join(f"{_arrow(getattr(c.before, key), getattr(c.after, key), signed):<{width}}"
                            for c in comparisons.values())
            lines.append(f"    {label:<20}{cells}".rstrip())
        gains = [("gain_acc_t1", "gain Acc@t1"), ("gain_delta", "gain delta(t1,t2)")] + \
            ([("gain_delta_tk", f"gain delta(t1,t{k})")] if k > 2 else [])
        for key, label in gains:
            cells = "".join(f"{_pct(getattr(c.gains, key), True):<{width}}" for c in comparisons.values())
            lines.append(f"    {label:<20}{cells}".rstrip())
        cells = "".join(f"{_pct(c.after.delta_t1_t2, True):<{width}}" for c in comparisons.values())
        lines.append(f"    {'delta(t1,t2) after':<20}{cells}".rstrip())
    head = (r.self_correction or {}).get(r.protocol or "")
    if head and head.before.by_op:
        b, a = head.before.by_op, head.after.by_op
        ops = ", ".join(f"{op} {100 * (b[op].acc_t1.value or 0):.0f} -> {100 * (a[op].acc_t1.value or 0):.0f} "
                        f"(n {b[op].n})" for op in b if op in a)
        lines.append(f"  Acc@t1 per operation, before -> after (%): {ops}")
    lines.append(f"  wall time {r.wall_s:.0f} s; run directory {r.run_dir}")
    return "\n".join(lines)


def _arrow(before: Any, after: Any, signed: bool) -> str:
    """'23.7 -> 36.3' (percent) or '+0.3 -> -2.3' (points); n/a where a figure is missing."""
    def one(e: Any) -> str:
        if e is None or e.value is None:
            return "n/a"
        return f"{100 * e.value:+.1f}" if signed else f"{100 * e.value:.1f}"
    return f"{one(before)} -> {one(after)}"


def _pct(e: Any, signed: bool = False) -> str:
    """An Estimate as '23.7% [19.2, 28.8]' (signed: '+1.3 [-0.3, +3.0]' points); 'n/a' when missing."""
    if e is None or e.value is None:
        return "n/a"
    v, lo, hi = (100 * float(x or 0.0) for x in (e.value, e.lo, e.hi))
    return f"{v:+.1f} [{lo:+.1f}, {hi:+.1f}]" if signed else f"{v:.1f}% [{lo:.1f}, {hi:.1f}]"
