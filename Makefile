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
test: setup
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(VENV)/bin/python -m pytest -q $(PYTEST_ARGS)

bench: setup
	$(VENV)/bin/python benchmarks/rollout_overhead.py
