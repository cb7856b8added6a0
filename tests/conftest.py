"""Shared test fixtures, and the skip policy of CI.

Skip policy: with ``CI=true`` or ``AGENTLOOP_STRICT_SKIPS=1`` (``make test`` and ``.ci/run`` set the
latter), a test skipped for a reason that does not name one of :data:`ALLOWED_SKIPS` (optional
extras a CPU machine may lack) fails the run, and every such skip is listed with its reason. A
broken install (a missing dependency, an unusable sandbox, a missing cached model) therefore cannot
pass CI by skipping the tests that would have caught it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers import EchoEnv, tiny_model

#: Skip reasons CI accepts: each optional extra and the pattern its skip reasons match.
ALLOWED_SKIPS: dict[str, re.Pattern[str]] = {
    "vllm (optional extra agentloop[vllm])": re.compile(r"vllm", re.I),
    "docker (optional sandbox backend)": re.compile(r"docker", re.I),
    "llama.cpp (optional extra agentloop[llamacpp], compiled from source)": re.compile(r"agentloop\[llamacpp\]"),
    "a CUDA GPU": re.compile(r"\b(gpu|cuda)\b", re.I),
}


def strict_skips() -> bool:
    return os.environ.get("CI", "").lower() == "true" or os.environ.get("AGENTLOOP_STRICT_SKIPS") == "1"


def skip_allowed(reason: str) -> bool:
    """Whether a skip with this reason names an allowed optional extra."""
    return any(p.search(reason) for p in ALLOWED_SKIPS.values())


class SkipPolicy:
    """Records every skip (collection and tests); under the strict policy, disallowed ones fail the run."""

    def __init__(self) -> None:
        self.skips: list[tuple[str, str]] = []

    def _record(self, report: pytest.CollectReport | pytest.TestReport) -> None:
        if report.skipped and not hasattr(report, "wasxfail"):
            longrepr = report.longrepr
            reason = str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
            self.skips.append((report.nodeid, reason.removeprefix("Skipped: ")))

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        self._record(report)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self._record(report)

    @property
    def disallowed(self) -> list[tuple[str, str]]:
        return [(node, reason) for node, reason in self.skips if not skip_allowed(reason)]

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if strict_skips() and self.disallowed and exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not strict_skips() or not self.skips:
            return
        bad = self.disallowed
        if bad:
            terminalreporter.section("skips not on the allow-list (they fail the run)", red=True)
            for node, reason in bad:
                terminalreporter.line(f"{node}: {reason}")
            terminalreporter.line("Allowed: skips naming " + "; ".join(ALLOWED_SKIPS) + ". Install what is missing, "
                                  "or add a truly optional extra to ALLOWED_SKIPS in tests/conftest.py.")
        if len(self.skips) > len(bad):
            terminalreporter.line(f"{len(self.skips) - len(bad)} skip(s) for allowed optional extras.")


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(SkipPolicy(), "agentloop-skip-policy")


# Tests never reach a model hub; any accidental hub call fails fast instead of hanging.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture
def echo_env_id() -> Iterator[str]:
    """Register EchoEnv as 'test/Echo-v0' for one test."""
    from agentloop.registry import envs

    with envs.registered("test/Echo-v0", EchoEnv, description="test echo env") as spec:
        yield spec.id


@pytest.fixture(scope="session")
def tokenizer():
    """The default model's tokenizer (with a pad token), for tests that train tiny models."""
    from agentloop.policies.default_model import default_model_path
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(default_model_path()))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    """A tiny random Llama (tests.helpers.tiny_model) with the default model's tokenizer, saved as a model folder.

    It answers nonsense, which is fine: the tests that use it check machinery (run directories,
    checkpoints, process groups), not learning.
    """
    from agentloop.policies.default_model import default_model_path
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(default_model_path()))
    path = tmp_path_factory.mktemp("tiny")
    model = tiny_model(0, vocab=len(tok))
    model.config.max_position_embeddings = 512  # room for improve's chat prompts (rotary: no new weights)
    model.config.pad_token_id, model.config.eos_token_id = tok.pad_token_id, tok.eos_token_id
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def hf32() -> Any:
    """The default model in float32 (exact comparisons against forward passes); skipped if not installed."""
    pytest.importorskip("torch")
    from agentloop.errors import PolicyError
    from agentloop.policies.hf import HFPolicy

    try:
        return HFPolicy(dtype="float32", max_batch_size=8)
    except PolicyError as e:
        pytest.skip(f"default model unavailable: {e}")
