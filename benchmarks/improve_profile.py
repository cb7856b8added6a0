"""Where the time and memory of an improve run go: generation (collection), training, evaluation, other.

Runs :func:`agentloop.improve.improve` in this process on a config (default ``configs/default.yaml``,
``--set key=value`` overrides) and splits the wall time by phase from its progress callback
``(label, done, total, info)``: labels ``collect iter N`` and ``branch  iter N`` (generation: rollouts and
RISE's best-of-N branches), ``train   iter N`` (training)
and ``eval    iter N`` (evaluation). Attribution: the time up to a progress report belongs to that
report's phase (the work it reports was done then), except the time up to a phase's opening report
(``done == 0``) and after the run's last report, which is "other" (model loading, checkpoints,
metrics). A background thread samples ``VmRSS`` from ``/proc/self/status`` every 20 ms; each sample
gets the phase of the interval it falls in; the run's total peak is ``VmHWM``. It also samples the
sum of ``VmRSS`` over this process and all its descendants (``tree_rss``: with
``generation.backend=vllm`` the engine runs in child processes; pages shared between processes are
counted in each, so the sum is an upper bound). Tokens/s: training
from the metrics rows (``train_tokens_per_s``, non-padding tokens), generation and evaluation from
the recorded episodes' replies (their token ids, else the reply text tokenized again) over the
phase's time.

    .venv/bin/python benchmarks/improve_profile.py [--config configs/default.yaml] [--set key=value ...]
        [--small] [--out runs/profile] [--json benchmarks/results/improve_profile.json]

    # vLLM's CPU build as the generation engine (LoRA adapter handed over after each training phase):
    .venv-vllm/bin/python benchmarks/improve_profile.py --small --set generation.backend=vllm \
        --set train.lora.r=16 --json benchmarks/results/improve_profile_vllm_cpu.json

``--small`` shrinks the run for a quick look (1 iteration, 8 training tasks, 16 held-out tasks,
16 new tokens); the figures then describe that small run, not the default one.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PHASES = ("generation", "training", "evaluation", "other")
_KIND = {"collect": "generation", "branch": "generation", "train": "training", "eval": "evaluation"}
SMALL = ["iterations=1", "env.train_tasks=8", "env.eval_tasks=16", "collect.max_new_tokens=16",
         "eval.max_new_tokens=16", "eval.every=1"]


def _status_kib(field: str, pid: int | str = "self") -> int:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:  # the process ended between listing and reading
        return 0
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _descendants(pid: int) -> list[int]:
    """The pids of ``pid``'s children, grandchildren, ... (from /proc/PID/task/TID/children)."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = list(Path(f"/proc/{parent}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                kids = [int(k) for k in (task / "children").read_text().split()]
            except OSError:
                continue
            found += kids
            todo += kids
    return found


def tree_rss_kib() -> int:
    """VmRSS of this process plus all its descendants (KiB)."""
    me = os.getpid()
    return sum(_status_kib("VmRSS", p) for p in [me, *_descendants(me)])


class PhaseClock:
    """The progress callback: records (time, phase) of each report and samples RSS in a thread."""

    def __init__(self, interval: float = 0.02) -> None:
        self.t0 = time.perf_counter()
        self.events: list[tuple[float, str]] = []  # (seconds since t0, phase the interval up to it belongs to)
        self.samples: list[tuple[float, int]] = []  # (seconds since t0, VmRSS KiB)
        self.tree_peak_kib = 0  # this process and its descendants (the vllm engine's processes)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, args=(interval,), daemon=True)
        self._thread.start()

    def __call__(self, label: str, done: int, total: int, info: Any) -> None:
        kind = _KIND.get(label.split()[0], "other")
        self.events.append((time.perf_counter() - self.t0, kind if done > 0 else "other"))

    def _sample(self, interval: float) -> None:
        while not self._stop.is_set():
            self.samples.append((time.perf_counter() - self.t0, _status_kib("VmRSS")))
            self.tree_peak_kib = max(self.tree_peak_kib, tree_rss_kib())
            self._stop.wait(interval)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        end = time.perf_counter() - self.t0
        self.events.append((end, "other"))
        return end

    def phase_at(self, t: float) -> str:
        for end, kind in self.events:
            if t <= end:
                return kind
        return "other"

    def split(self) -> dict[str, dict[str, float]]:
        """Seconds and peak RSS (MiB) of each phase."""
        out = {p: {"seconds": 0.0, "peak_rss_mib": 0.0} for p in PHASES}
        start = 0.0
        for end, kind in self.events:
            out[kind]["seconds"] += end - start
            start = end
        for t, kib in self.samples:
            row = out[self.phase_at(t)]
            row["peak_rss_mib"] = max(row["peak_rss_mib"], kib / 1024)
        return out


def _generated_tokens(run: Path, model: str | None) -> dict[str, int]:
    """Tokens generated in collection and held-out evaluation: the recorded replies, tokenized again."""
    from transformers import AutoTokenizer

    if model is None:
        from agentloop.policies.default_model import default_model_path

        model = str(default_model_path())
    tokenizer = AutoTokenizer.from_pretrained(model)
    counts = {"generation": 0, "evaluation": 0}
    path = run / "episodes.jsonl"
    for line in path.read_text().splitlines() if path.exists() else []:
        episode = json.loads(line)
        kind = _KIND.get(episode.get("metadata", {}).get("phase", ""), "")
        if kind in counts:
            counts[kind] += sum(len(turn["token_ids"]) if turn.get("token_ids") else
                                len(tokenizer(turn.get("action") or "", add_special_tokens=False)["input_ids"])
                                for turn in episode.get("turns", []))
    return counts


def profile(cfg: Any, out: Path) -> dict[str, Any]:
    """Run ``cfg`` into ``out`` and return the profile record (see the module docstring)."""
    from agentloop.improve import improve

    if out.exists():
        shutil.rmtree(out)
    load_start = os.getloadavg()
    clock = PhaseClock()
    result = improve(cfg, out=out, progress=clock)
    wall = clock.stop()
    phases = clock.split()
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train_tps = [r["train_tokens_per_s"] for r in rows if r.get("train_tokens_per_s")]
    tokens = _generated_tokens(out, cfg.model)
    for kind, n in tokens.items():
        secs = phases[kind]["seconds"]
        phases[kind]["tokens"] = n
        phases[kind]["tokens_per_s"] = round(n / secs, 1) if n and secs > 0 else None
    phases["training"]["tokens_per_s"] = round(sum(train_tps) / len(train_tps), 1) if train_tps else None
    phases["training"]["tokens"] = sum(r.get("train_tokens") or 0 for r in rows)
    phases["training"]["padded_tokens"] = sum(r.get("train_padded_tokens") or 0 for r in rows)  # positions computed
    for row in phases.values():
        row["seconds"] = round(row["seconds"], 3)  # a tiny run's phase can take < 0.05 s
        row["share"] = round(row["seconds"] / wall, 3) if wall > 0 else 0.0
        row["peak_rss_mib"] = round(row["peak_rss_mib"], 1)
    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "wall_s": round(wall, 1),
        "peak_rss_mib": round(_status_kib("VmHWM") / 1024, 1),
        "peak_tree_rss_mib": round(clock.tree_peak_kib / 1024, 1),
        "generation_backend": cfg.generation.backend,
        "generation_start_s": result.generation_start_s,
        "adapter_push_s": [r["adapter_push_s"] for r in rows if r.get("adapter_push_s") is not None],
        "phases": phases,
        "train_tokens_per_s_by_iteration": train_tps,
        "load_avg_start": load_start,
        "load_avg_end": os.getloadavg(),
        "cpu_count": os.cpu_count(),
        "result": {"before": result.before, "after": result.after, "gain": result.gain, "n": result.n},
    }


def table(record: dict[str, Any]) -> str:
    lines = ["| phase | seconds | share | tokens/s | peak RSS (MiB) |", "|---|---|---|---|---|"]
    for name, row in record["phases"].items():
        tps = row.get("tokens_per_s")
        lines.append(f"| {name} | {row['seconds']} | {row['share']:.0%} | {tps if tps is not None else '-'} | "
                     f"{row['peak_rss_mib']} |")
    lines.append(f"| total | {record['wall_s']} | 100% | - | {record['peak_rss_mib']} (VmHWM) |")
    lines.append(f"| with child processes | | | | {record['peak_tree_rss_mib']} (sum of VmRSS) |")
    return "\n".join(lines)


def cpu_usage(before: Any, after: Any, children: Any) -> dict[str, Any]:
    """User and system CPU seconds and minor page faults of the run (this process since ``before``, plus its
    finished children), as ``/usr/bin/time -v`` would count them."""
    user = after.ru_utime - before.ru_utime + children.ru_utime
    system = after.ru_stime - before.ru_stime + children.ru_stime
    return {"user_s": round(user, 1), "system_s": round(system, 1),
            "system_share": round(system / max(user + system, 1e-9), 3),
            "minor_faults": after.ru_minflt - before.ru_minflt + children.ru_minflt}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "default.yaml"))
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--small", action="store_true", help="shrink the run for a quick check")
    parser.add_argument("--out", default="runs/profile", help="run directory (replaced)")
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "improve_profile.json"))
    args = parser.parse_args(argv)

    from agentloop.config import load_config
    from agentloop.improve import ImproveConfig

    overrides = (SMALL if args.small else []) + args.sets  # --set wins over --small
    cfg = load_config(ImproveConfig, args.config, overrides)
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF)
    record = {"command": " ".join(["benchmarks/improve_profile.py", *argv]), "overrides": overrides,
              **profile(cfg, Path(args.out))}
    record["cpu"] = cpu_usage(before, resource.getrusage(resource.RUSAGE_SELF),
                              resource.getrusage(resource.RUSAGE_CHILDREN))
    dest = Path(args.json)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(record, indent=2) + "\n")
    print(table(record))
    c = record["cpu"]
    print(f"CPU: user {c['user_s']} s, system {c['system_s']} s ({c['system_share']:.0%} of the CPU time), "
          f"{c['minor_faults']} minor page faults (this process and its children)")
    print(f"wall {record['wall_s']} s, load {record['load_avg_start'][0]:.1f} -> {record['load_avg_end'][0]:.1f}; "
          f"generation ({record['generation_backend']}) ready in {record['generation_start_s']} s; "
          f"adapter pushes {record['adapter_push_s']} s; written to {dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
