"""Benchmark of the default improve run: `agentloop improve` with no arguments (embedded SmolLM2-135M, CPU).

Runs it as a subprocess into a fresh run directory and records wall time, peak RSS of the run,
the machine load, and the held-out figures the run wrote (before, after, gain, paired-bootstrap
95% interval) into benchmarks/results/improve_default.json.

    .venv/bin/python benchmarks/improve_default.py [--out runs/bench-default] [extra dotted overrides...]

The bar (issue 6): within 20 minutes on the 2-core machine, the gain's interval excludes zero.
Numbers depend on what else runs on the machine: the load average at start and end is recorded.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str]) -> int:
    out = Path("runs/bench-default")
    if argv[:1] == ["--out"]:
        out, argv = Path(argv[1]), argv[2:]
    if out.exists():
        shutil.rmtree(out)
    load_start = os.getloadavg()
    cmd = [str(Path(sys.executable).parent / "agentloop"), "improve", *argv, "--out", str(out)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT)
    wall = time.perf_counter() - t0
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    result_path = (ROOT / out / "result.json") if not out.is_absolute() else out / "result.json"
    result = json.loads(result_path.read_text()) if result_path.exists() else None
    record = {
        "command": " ".join(["agentloop", "improve", *argv]),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "exit_code": proc.returncode,
        "wall_s": round(wall, 1),
        "peak_rss_mib": round(peak_kib / 1024, 1),
        "cpu_count": os.cpu_count(),
        "load_avg_start": load_start,
        "load_avg_end": os.getloadavg(),
        "within_20_min": wall <= 20 * 60,
        "within_15_min": wall <= 15 * 60,
        "result": None if result is None else {
            k: result[k] for k in ("method", "env", "metric", "n", "before", "after", "gain", "gain_lo", "gain_hi",
                                   "excludes_zero", "threads")},
        # per evaluation protocol (retry, binary, ...): before/after SelfCorrection and their paired Gains
        "self_correction": None if result is None else result.get("self_correction"),
        "iterations": None if result is None else result["iterations"],
    }
    dest = ROOT / "benchmarks" / "results" / "improve_default.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps({k: record[k] for k in ("wall_s", "peak_rss_mib", "load_avg_start", "result")}, indent=2))
    return proc.returncode


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
