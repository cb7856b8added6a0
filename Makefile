# The two commands of the README. Both set up a fresh machine first (scripts/setup.sh, idempotent).
VENV ?= .venv
PYTEST_ARGS ?=

.PHONY: setup run test bench

setup:
	@scripts/setup.sh

# The main job on the embedded default model (SmolLM2-135M-Instruct, CPU).
run: setup
	$(VENV)/bin/agentloop improve

# The test suite (CPU only, no network). One OpenMP thread per process: the suite starts several
# processes at once (Ray workers, two-process training), which oversubscribe 2 cores otherwise.
# Strict skips: a test skipped for anything but an allowed optional extra (vllm, docker, a CUDA GPU:
# ALLOWED_SKIPS in tests/conftest.py) fails the run; -rs prints every skip reason.
test: setup
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} AGENTLOOP_STRICT_SKIPS=$${AGENTLOOP_STRICT_SKIPS:-1} $(VENV)/bin/python -m pytest -q -rs $(PYTEST_ARGS)

bench: setup
	$(VENV)/bin/python benchmarks/rollout_overhead.py
