"""Sandbox throughput: all 974 MBPP gold solutions against their tests, isolated vs a naive baseline.

Both sides run the very same programs (the code environment's test harness around each gold
solution) with the same parallelism (one lane per CPU):

* isolated: ``get_sandbox(kind)`` (default ``local``: bubblewrap, uid drop, limits, pooled workers);
* naive: a fresh ``python -c PROGRAM`` subprocess per program, no isolation and no limits.

It prints executions per second for both, the speed-up, and every task whose gold solution fails,
split into known-broken tasks (listed in ``KNOWN_BROKEN`` with the reason) and unexpected failures.
Numbers depend on the machine and its load; run it on an idle machine for reference figures.

    python benchmarks/sandbox.py                 # local backend, all 974 tasks
    python benchmarks/sandbox.py --limit 200 --kind process
    python benchmarks/sandbox.py --original --skip-naive   # the original release: 3 known-broken tasks
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from agentloop.environments.code.envs import load_mbpp
from agentloop.environments.code.execution import build_program, parse_report
from agentloop.sandbox import ExecResult, get_sandbox
from agentloop.sandbox.pool import interpreter
from agentloop.sandbox.base import SandboxConfig

# Gold solutions that cannot pass their own tests, with the reason (checked by hand). The shipped revision
# (30adf0ec) fixed all three; they fail in the original release 2251e8c (``--original`` reproduces it).
KNOWN_BROKEN: dict[int, str] = {
    341: "2251e8c only: the expected tuple depends on set iteration order (fixed upstream by sorting)",
    596: "2251e8c only: hard-coded sys.getsizeof values (104/104/88) that are wrong on CPython >= 3.8",
    642: "2251e8c only: expected sets of tuples built from unordered sets (fixed upstream by sorting)",
}
ROW_DIFFS = Path(__file__).resolve().parents[1] / "environments" / "code" / "data" / "mbpp" / "mbpp_2251e8c_row_diffs.json"


def original_rows(rows: list[dict]) -> list[dict]:
    """The rows of the original release 2251e8c: the shipped rows with the 3 changed fields put back."""
    diffs = json.loads(ROW_DIFFS.read_text())["rows"]
    return [{**r, **diffs.get(str(r["task_id"]), {})} for r in rows]


def naive_run(python: str, code: str, timeout_s: float) -> ExecResult:
    t0 = time.monotonic()
    try:
        p = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return ExecResult(status="timeout", duration_s=time.monotonic() - t0)
    return ExecResult(status="ok" if p.returncode == 0 else "error", exit_code=p.returncode, stdout=p.stdout,
                      stderr=p.stderr, duration_s=time.monotonic() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kind", default="local", choices=["local", "process", "docker", "auto"])
    ap.add_argument("--limit", type=int, default=None, help="Only the first N tasks.")
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--skip-naive", action="store_true")
    ap.add_argument("--original", action="store_true", help="Use the original MBPP release 2251e8c (3 broken tasks).")
    args = ap.parse_args()

    rows = list(load_mbpp())
    rows = (original_rows(rows) if args.original else rows)[: args.limit]
    built = [build_program(r["code"].replace("\r\n", "\n"), r["test_list"], r["test_setup_code"]) for r in rows]
    programs = [p for p, _ in built]
    lanes = os.cpu_count() or 1
    print(f"{len(programs)} MBPP gold solutions, {lanes} lanes (CPUs), timeout {args.timeout:g} s")

    t0 = time.monotonic()
    sb = get_sandbox(args.kind)
    startup = time.monotonic() - t0
    sb.run_many(programs[:lanes * 4], timeout_s=args.timeout)  # warm-up: page in the interpreter
    t0 = time.monotonic()
    results = sb.run_many(programs, timeout_s=args.timeout)
    iso_s = time.monotonic() - t0
    sb.close()
    iso_rate = len(programs) / iso_s
    print(f"isolated ({args.kind}): {iso_rate:7.1f} exec/s ({iso_s:.2f} s; pool start-up {startup:.2f} s)")

    reports = [parse_report(res, marker, len(r["test_list"])) for res, (_, marker), r in zip(results, built, rows)]
    failed = [(r["task_id"], rep) for r, rep in zip(rows, reports) if not rep.passed]

    if not args.skip_naive:
        python = interpreter(SandboxConfig())
        t0 = time.monotonic()
        with ThreadPoolExecutor(lanes) as ex:
            naive = list(ex.map(lambda c: naive_run(python, c, args.timeout), programs))
        naive_s = time.monotonic() - t0
        naive_rate = len(programs) / naive_s
        naive_failed = [r["task_id"] for res, (_, m), r in zip(naive, built, rows)
                        if not parse_report(res, m, len(r["test_list"])).passed]
        print(f"naive (python -c): {naive_rate:7.1f} exec/s ({naive_s:.2f} s); gold failures there: {naive_failed}")
        print(f"speed-up: {iso_rate / naive_rate:.2f}x")

    passed = len(programs) - len(failed)
    print(f"gold solutions passing in the sandbox: {passed}/{len(programs)}")
    for task_id, rep in failed:
        tag = f"known-broken: {KNOWN_BROKEN[task_id]}" if task_id in KNOWN_BROKEN else "UNEXPECTED"
        print(f"  task {task_id} [{tag}] stage={rep.stage}: {rep.feedback.splitlines()[-1][:160]}")
    sys.exit(0 if all(t in KNOWN_BROKEN for t, _ in failed) else 1)


if __name__ == "__main__":
    main()
