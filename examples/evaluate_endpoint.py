"""Evaluate a model behind an OpenAI-compatible endpoint on a held-out suite.

    python examples/evaluate_endpoint.py [MODEL]                          # serves MODEL locally (agentloop serve)
    python examples/evaluate_endpoint.py --base-url http://HOST:8000/v1    # any OpenAI-compatible server

Without ``--base-url`` the script starts ``agentloop serve`` on 127.0.0.1 (MODEL: a model folder or hub id;
default the embedded model) and stops it afterwards. The suite is written to a YAML file, as
``agentloop eval --suites-file FILE --suite NAME`` reads it.
"""

import argparse
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from agentloop import EvalConfig, evaluate

SUITE = """\
heldout-arith:
  description: Held-out arithmetic (the test split, never used for training).
  envs:
    - {env: math/arith-v0, kwargs: {difficulty: 1, split: test}, limit: 8, name: arith-test}
"""


def serve(model: str | None) -> tuple[subprocess.Popen, str]:
    """Start `agentloop serve` on a free local port; return the process and its /v1 URL once it answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "agentloop.cli", "serve", "--port", str(port), "--log-level", "warning"]
    proc = subprocess.Popen(cmd + (["--model", model] if model else []))
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return proc, f"{base}/v1"
        except httpx.TransportError:
            time.sleep(0.2)
        if proc.poll() is not None:
            break
    proc.kill()
    raise SystemExit("agentloop serve did not start")


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("model", nargs="?", default=None)
    p.add_argument("--base-url", default=None, help="An OpenAI-compatible server's /v1 URL (else serve locally).")
    p.add_argument("--api-key", default=None)
    args = p.parse_args()
    proc, base_url = (None, args.base_url) if args.base_url else serve(args.model)
    try:
        suites = Path("runs/example-suites.yaml")
        suites.parent.mkdir(parents=True, exist_ok=True)
        suites.write_text(SUITE)
        cfg = EvalConfig(suite="heldout-arith", suites_file=str(suites), max_attempts=2, feedback="retry",
                         policy={"id": "openai", "kwargs": {"base_url": base_url, "api_key": args.api_key}},
                         sampling={"max_new_tokens": 16})
        result = evaluate(cfg, out="runs/example-endpoint")
        overall = result.metrics["overall"]
        print(f"{base_url}: N = {overall['n_episodes']}, Acc@t1, Acc@t2 =",
              [round(a["value"], 2) for a in overall["acc_by_attempt"]], f"(run: {result.run.path})")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
