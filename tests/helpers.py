"""Small real environments for tests: no model, GPU or network needed."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from agentloop.env import Task, TaskEnv, Verdict
from agentloop.types import user


class EchoEnv(TaskEnv):
    """Task i asks the policy to reply with the word ``word{i}``; feedback names the wanted length only."""

    def __init__(self, n_tasks: int = 5, prefix: str = "word"):
        super().__init__()
        self.n_tasks, self.prefix = n_tasks, prefix

    def num_tasks(self) -> int:
        return self.n_tasks

    def get_task(self, index: int) -> Task:
        word = f"{self.prefix}{index}"
        return Task(id=str(index), messages=(user(f"Reply with exactly: {word}"),), answer=word)

    def verify(self, task: Task, action: str) -> Verdict:
        ok = action.strip() == task.answer
        return Verdict(reward=float(ok), success=ok,
                       feedback="" if ok else f"Wrong: the reply should have {len(str(task.answer))} characters.",
                       oracle_feedback=None if ok else f"The expected reply is {task.answer}.")


class SwappableEnv(EchoEnv):
    """EchoEnv whose step (or reset) can be replaced, to test failure handling."""

    def __init__(self, step_fn: Callable | None = None, reset_fn: Callable | None = None, **kw):
        super().__init__(**kw)
        self.step_fn, self.reset_fn = step_fn, reset_fn

    def reset(self, *, seed=None, options=None):
        if self.reset_fn is not None:
            self.reset_fn(self)
        return super().reset(seed=seed, options=options)

    def step(self, action):
        if self.step_fn is not None:
            return self.step_fn(self, action)
        return super().step(action)


def answer_of(conversation) -> str:
    """The word the EchoEnv prompt in ``conversation`` asks for."""
    prompt = next(m.content for m in conversation if m.role == "user")
    return prompt.rsplit(" ", 1)[-1]


def fixer_reply(conversation) -> str:
    """Task i: i % 3 == 0 right at once; == 1 wrong first then right; == 2 always wrong."""
    word = answer_of(conversation)
    i = int(word.removeprefix("word"))
    tries = sum(m.role == "assistant" for m in conversation)
    if i % 3 == 0 or (i % 3 == 1 and tries >= 1):
        return word
    return "nope"


TOOL_SCHEMA = {"type": "function", "function": {"name": "add", "description": "Add.", "parameters": {
    "type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}}}


class ToolsEnv(EchoEnv):
    """EchoEnv that asks the policy to render one tool natively (reset info ``render_tools``)."""

    def reset(self, *, seed=None, options=None):
        from agentloop.rollout import RENDER_TOOLS_KEY

        obs, info = super().reset(seed=seed, options=options)
        return obs, {**info, RENDER_TOOLS_KEY: [TOOL_SCHEMA]}


class RecordingPolicy:
    """A policy whose generate takes ``tools``: records the tools of every call, answers like ``reply``."""

    def __init__(self, reply: Callable | None = None):
        self.tools: list = []
        self.reply = reply or (lambda conversation: "x")

    def generate(self, conversations, sampling, tools=None):
        from agentloop.types import Completion

        self.tools.append(tools)
        return [Completion(text=self.reply(c)) for c in conversations]


def tiny_model(seed: int = 0, vocab: int = 64, hidden: int = 32, layers: int = 2) -> Any:
    """A small random-init Llama (the SmolLM2 architecture family), identical for a given seed."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         tie_word_embeddings=True)
    return LlamaForCausalLM(config)


def improve_config(model: str | None, **extra) -> dict:
    """A small improve config (arith, 2 iterations, a few tasks) for the tiny model; ``extra`` replaces sections."""
    cfg = {
        "model": model, "threads": 1, "iterations": 2, "seed": 0,
        "env": {"id": "math/arith-v0", "kwargs": {"difficulty": 1, "num_tasks": 1000}, "train_kwargs": {"seed": 0},
                "eval_kwargs": {"seed": 1}, "train_tasks": 6, "eval_tasks": 5},
        "method": {"name": "rs_sft", "samples_per_task": 2},
        "collect": {"temperature": 1.0, "max_new_tokens": 6, "batch_size": 1},
        "train": {"lr": 1e-3, "batch_size": 4, "dtype": "float32"},
        "eval": {"max_new_tokens": 6, "batch_size": 4},
    }
    cfg.update(extra)
    return cfg


def run_keys(run: Path) -> list[str]:
    """The run keys of the episodes recorded in run directory ``run``, in file order."""
    return [json.loads(line)["metadata"]["run_key"] for line in (run / "episodes.jsonl").read_text().splitlines()]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve_process(*args: str, env: dict[str, str] | None = None, timeout_s: float = 120) -> Iterator[str]:
    """A real ``agentloop serve ARGS --port P --log-level warning`` process; yields ``http://127.0.0.1:P``
    once ``/health`` answers, and stops the process afterwards."""
    import httpx
    import pytest

    port = free_port()
    cmd = [sys.executable, "-m", "agentloop.cli", "serve", *args, "--port", str(port), "--log-level", "warning"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"agentloop serve {' '.join(args)} did not start: {proc.stdout.read().decode()[-3000:]}")
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@contextlib.contextmanager
def mounted_tmpfs(parent: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (e.g. ``"16m"``) mounted under ``parent`` for a disk-full test; skips without root."""
    import pytest

    if os.geteuid() != 0:
        pytest.skip("disk-full chaos tests mount a tmpfs and need root")
    mnt = parent / f"disk-{uuid.uuid4().hex[:6]}"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], capture_output=True,
                         text=True, check=False)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs for the disk-full tests: {res.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def adapter_engine_improve_config(backend: str, lora: dict) -> dict:
    """One tiny improve iteration on the embedded model whose generation engine is fed LoRA adapters (vllm, llamacpp).

    FAFT trains on every collected episode (feedback-conditioned), so there are examples whatever the model
    answers; the large learning rate moves the adapter far from B = 0 in one phase, so adapter and base
    model are easy to tell apart afterwards.
    """
    return {
        "model": None, "threads": 1, "iterations": 1, "seed": 0, "device": "cpu",
        "env": {"id": "math/arith-v0", "kwargs": {"difficulty": 1, "num_tasks": 1000}, "train_kwargs": {"seed": 0},
                "eval_kwargs": {"seed": 1}, "train_tasks": 4, "eval_tasks": 4},
        "method": {"name": "faft", "samples_per_task": 2, "success_feedback": "Your final answer is correct."},
        "collect": {"temperature": 1.0, "max_new_tokens": 12, "stop": ["\n\n"], "batch_size": 8},
        "train": {"lr": 1e-2, "batch_size": 4, "dtype": "float32", "lora": lora},
        "eval": {"max_new_tokens": 12, "stop": ["\n\n"], "batch_size": 4},
        "generation": {"backend": backend},
    }


def teacher_forced_logprobs(model: Any, completion: Any) -> list[float]:
    """Log-probabilities ``model`` gives a completion's tokens after its prompt (one forward pass, no sampling)."""
    import torch

    prompt, reply = list(completion.prompt_token_ids), list(completion.token_ids)
    ids = torch.tensor([prompt + reply])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, len(prompt) - 1: -1].float()
    return logits.log_softmax(-1).gather(-1, torch.tensor(reply)[:, None])[:, 0].tolist()


def mean_gap(a: list[float], b: list[float]) -> float:
    """Mean absolute difference of two per-token logprob lists of one reply."""
    return sum(abs(x - y) for x, y in zip(a, b, strict=True)) / len(a)


def check_seeded_sampling(policy: Any, conversations: list) -> None:
    """A policy's sampling contract: the same seed gives the same n samples (ordered per conversation), another
    seed others, and greedy n samples are one reply repeated."""
    from agentloop.types import SamplingParams

    sampling = SamplingParams(max_new_tokens=6, temperature=1.0, n=3, seed=11)
    a = policy.generate(conversations, sampling)
    b = policy.generate(conversations, sampling)
    assert len(a) == 3 * len(conversations) and [c.text for c in a] == [c.text for c in b]
    c = policy.generate(conversations, sampling.model_copy(update={"seed": 12}))
    assert [x.text for x in a] != [x.text for x in c]
    greedy = policy.generate(conversations[:1], SamplingParams(max_new_tokens=6, n=2))
    assert len(greedy) == 2 and greedy[0] == greedy[1]


def chat_prompts() -> list:
    """Three short chats of different lengths (one with a system message) for the policy tests."""
    from agentloop.types import system, user

    return [
        [user("What is 2+3?")],
        [system("Answer in one word."), user("Name a colour of the sky on a clear day, and explain why it has that colour.")],
        [user("Hi")],
    ]
