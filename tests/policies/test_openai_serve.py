"""`agentloop serve` and the `openai` policy against each other, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from agentloop.errors import PolicyError
from agentloop.policies.openai_compat import OpenAIPolicy
from agentloop.policies.scripted import ScriptedPolicy
from agentloop.rollout import Job, rollout
from agentloop.serve import MicroBatcher
from agentloop.types import Message, SamplingParams, user
from tests.helpers import EchoEnv, answer_of
from tests.helpers import free_port, serve_process

REPLIES = {"ping": "pong STOP ignored", **{f"q{i}": f"a{i}" for i in range(20)}}


@pytest.fixture(scope="module")
def served() -> Iterator[str]:
    """A real `agentloop serve` process serving the scripted policy; yields its base URL."""
    kwargs = json.dumps({"replies": REPLIES, "default": "default reply"})
    with serve_process("--policy", "scripted", "--kwargs", kwargs, "--name", "scripted-test", timeout_s=60) as url:
        yield f"{url}/v1"


def test_models_and_plain_openai_requests(served: str) -> None:
    assert httpx.get(f"{served}/models").json()["data"][0]["id"] == "scripted-test"
    r = httpx.post(f"{served}/chat/completions", json={"model": "scripted-test", "messages": [{"role": "user", "content": "ping"}]})
    body = r.json()
    assert r.status_code == 200 and body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "pong STOP ignored"}
    bad = httpx.post(f"{served}/chat/completions", json={"messages": [], "n": 0})
    assert bad.status_code == 400 and "messages" in bad.json()["error"]["message"]
    stream = httpx.post(f"{served}/chat/completions", json={"messages": [{"role": "user", "content": "ping"}], "stream": True})
    assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/event-stream")
    events = [line[len("data: "):] for line in stream.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    assert "".join(json.loads(e)["choices"][0]["delta"].get("content") or "" for e in events[:-1]) == "pong STOP ignored"


def test_openai_policy_against_live_serve(served: str) -> None:
    with OpenAIPolicy(base_url=served, max_concurrency=4) as policy:
        assert policy.model_id() == "scripted-test"
        convs = [[user(f"q{i}")] for i in range(20)] + [[user("ping")]]
        out = policy.generate(convs, SamplingParams(n=2, stop=("STOP",)))
        assert [c.text for c in out] == [t for i in range(20) for t in (f"a{i}",) * 2] + ["pong "] * 2


def test_rollout_through_the_server(served: str) -> None:
    with OpenAIPolicy(base_url=served) as policy:
        episodes = rollout([Job(env=EchoEnv(), seed=s) for s in range(3)], policy)
    assert all(ep.error is None and ep.turns[0].action == "default reply" for ep in episodes)


def test_client_errors_fail_at_once_with_the_server_message(served: str) -> None:
    policy = OpenAIPolicy(base_url=served, extra_body={"stop": [""]}, max_retries=5)
    start = time.monotonic()
    with pytest.raises(PolicyError, match="400.*stop strings must not be empty"):
        policy.generate([[user("x")]], SamplingParams())
    assert time.monotonic() - start < 5  # a 400 is not retried


def test_unreachable_server_is_retried_then_recorded_on_each_episode() -> None:
    policy = OpenAIPolicy(base_url=f"http://127.0.0.1:{free_port()}/v1", model="m", max_retries=2,
                          down_cooldown_s=30)
    start = time.monotonic()
    with pytest.raises(PolicyError, match="after 3 tries.*agentloop serve"):
        policy.generate([[user("x")]], SamplingParams())
    episodes = rollout([Job(env=EchoEnv(), seed=s) for s in range(5)], policy)
    assert all(ep.error is not None and ep.error.stage == "policy" and "agentloop serve" in ep.error.message
               for ep in episodes)
    assert time.monotonic() - start < 10  # the cooldown makes later calls fail fast


def test_server_errors_are_retried_with_backoff(serve_in_thread) -> None:
    calls = []

    def flaky(conv):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("transient failure")
        return "ok"

    with serve_in_thread(ScriptedPolicy(flaky), model_name="m") as srv:
        policy = OpenAIPolicy(base_url=srv.base_url, model="m", max_retries=2)
        assert policy.generate([[user("x")]], SamplingParams())[0].text == "ok"
        assert len(calls) == 2


def test_persistent_server_errors_give_up_with_the_message(serve_in_thread) -> None:
    def broken(conv):
        raise RuntimeError("model exploded")

    with serve_in_thread(ScriptedPolicy(broken), model_name="m") as srv:
        policy = OpenAIPolicy(base_url=srv.base_url, model="m", max_retries=1)
        with pytest.raises(PolicyError, match="kept failing after 2 tries.*HTTP 500.*model exploded"):
            policy.generate([[user("x")]], SamplingParams())


def test_request_timeout_is_reported(serve_in_thread) -> None:
    release = threading.Event()

    def slow(conv):
        release.wait(5)
        return "late"

    with serve_in_thread(ScriptedPolicy(slow), model_name="m") as srv:
        policy = OpenAIPolicy(base_url=srv.base_url, model="m", timeout_s=0.3, max_retries=0)
        try:
            with pytest.raises(PolicyError, match="ReadTimeout"):
                policy.generate([[user("x")]], SamplingParams())
        finally:
            release.set()


def test_micro_batcher_merges_concurrent_requests() -> None:
    policy = ScriptedPolicy(lambda conv: answer_of(conv) if "exactly" in conv[-1].content else conv[-1].content)
    batcher = MicroBatcher(policy, max_batch_size=16, wait_s=0.2)
    try:
        futures = [batcher.submit([user(f"m{i}")], SamplingParams()) for i in range(10)]
        seeded = batcher.submit([user("seeded")], SamplingParams(seed=1))
        assert [f.result(5)[0].text for f in futures] == [f"m{i}" for i in range(10)]
        assert seeded.result(5)[0].text == "seeded"
        assert policy.calls == 2  # ten unseeded requests in one call, the seeded one alone
    finally:
        batcher.close()


@pytest.mark.slow
def test_logprobs_and_token_ids_pass_through_the_server(hf32, serve_in_thread) -> None:
    conv = [user("What is 2+3?")]
    sampling = SamplingParams(max_new_tokens=5, return_logprobs=True)
    [local] = hf32.generate([conv], sampling)
    with serve_in_thread(hf32, model_name="smol") as srv:
        [remote] = OpenAIPolicy(base_url=srv.base_url).generate([conv], sampling.model_copy(update={"temperature": 0.0}))
    assert remote.text == local.text and remote.token_ids == local.token_ids
    assert remote.prompt_token_ids == local.prompt_token_ids
    assert remote.logprobs == pytest.approx(local.logprobs, abs=1e-5)


TOOL_SCHEMA = {"type": "function", "function": {"name": "add", "description": "Add.", "parameters": {
    "type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}}}


def test_tools_travel_through_the_server_to_a_messages_only_policy(serve_in_thread) -> None:
    from agentloop.policies.scripted import ScriptedPolicy

    def reply(conv):
        return "saw tools" if conv[0].role == "system" and '"add"' in conv[0].content else "no tools"

    with serve_in_thread(ScriptedPolicy(reply), model_name="m") as srv:
        policy = OpenAIPolicy(base_url=srv.base_url, model="m")
        conv = [Message(role="user", content="1+1?")]
        with_tools, without = policy.generate([conv, conv], SamplingParams(), tools=[[TOOL_SCHEMA], None])
    assert with_tools.text == "saw tools" and without.text == "no tools"


def test_structured_tool_calls_from_a_server_become_tool_call_blocks() -> None:
    from agentloop.environments.tools.core import parse_tool_calls
    from agentloop.policies.openai_compat import _completion

    from openai.types.chat.chat_completion import Choice

    choice = Choice.model_validate({"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "add", "arguments": "{\"a\": 2}"}}]}})
    parsed = parse_tool_calls(_completion(choice, SamplingParams()).text)
    assert [(c.name, c.arguments) for c in parsed.calls] == [("add", {"a": 2})]
