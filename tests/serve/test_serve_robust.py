"""`agentloop serve` under load and bad input, over real HTTP on 127.0.0.1 (the scripted policy: no model).

Load: N concurrent clients for a fixed time, no failed request, bounded latency. Bad input: every
malformed request gets a 4xx in the OpenAI error shape with a message, and the server keeps serving.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from agentloop.policies.scripted import ScriptedPolicy
from agentloop.serve import ServeConfig, create_app
from tests.helpers import serve_process
from tests.policies.conftest import ThreadServer

M = [{"role": "user", "content": "ping"}]
pytestmark = pytest.mark.timeout(300)


def _server(**config: Any) -> ThreadServer:
    policy = ScriptedPolicy(lambda conv: f"echo {conv[-1].content[:20]}")
    return ThreadServer(create_app(policy, ServeConfig(model_name="scripted", **config)))


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with _server(max_body_bytes=64 * 1024) as srv:
        yield srv.base_url


def _assert_error(r: httpx.Response, status: int, text: str) -> None:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "code"} and err["code"] == status
    assert text in err["message"], err["message"]


def test_concurrent_clients_for_a_fixed_time_all_succeed_with_bounded_latency(url):
    clients, seconds = 16, 4.0
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client(i: int) -> None:
        with httpx.Client(timeout=30) as http:
            n = 0
            while time.monotonic() < stop_at:
                body = {"model": "scripted", "messages": [{"role": "user", "content": f"c{i} r{n}"}],
                        "max_tokens": 8, "temperature": 0.5 * (n % 3)}
                t = time.monotonic()
                try:
                    r = http.post(f"{url}/chat/completions", json=body)
                    ok = r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == f"echo c{i} r{n}"
                    problem = None if ok else f"{r.status_code} {r.text[:200]}"
                except httpx.HTTPError as e:
                    problem = f"{type(e).__name__}: {e}"
                with lock:
                    latencies.append(time.monotonic() - t)
                    if problem:
                        failures.append(problem)
                n += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 60)
    assert not any(t.is_alive() for t in threads), "a client hung"
    assert failures == []
    assert len(latencies) >= clients  # every client got through at least once
    p99 = sorted(latencies)[int(0.99 * (len(latencies) - 1))]
    print(f"{len(latencies)} requests in {seconds} s from {clients} clients: p50 {statistics.median(latencies) * 1000:.0f} ms,"
          f" p99 {p99 * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms")
    assert max(latencies) < 10.0  # generous: 2 shared cores under other load


def test_bad_requests_during_load_do_not_disturb_good_ones(url):
    good: list[int] = []
    bad: list[int] = []

    def good_client() -> None:
        with httpx.Client(timeout=30) as http:
            for n in range(15):
                good.append(http.post(f"{url}/chat/completions", json={"messages": M}).status_code)

    def bad_client() -> None:
        with httpx.Client(timeout=30) as http:
            for _ in range(5):
                bad.append(http.post(f"{url}/chat/completions", content=b'{"messages": [', headers=JSON).status_code)
                bad.append(http.post(f"{url}/chat/completions", json={"messages": M, "n": -1}).status_code)
                bad.append(http.post(f"{url}/chat/completions", content=b"x" * 100_000, headers=JSON).status_code)

    threads = [threading.Thread(target=good_client) for _ in range(4)] + [threading.Thread(target=bad_client)
                                                                          for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert good == [200] * 60
    assert sorted(set(bad)) == [400, 413] and len(bad) == 30


JSON = {"content-type": "application/json"}
BAD = {
    # name: (request kwargs, status, text in the message)
    "malformed-json": ({"content": b'{"messages": [', "headers": JSON}, 400, "not valid JSON"),
    "not-an-object": ({"json": [1, 2, 3]}, 400, "invalid request"),
    "deep-nesting": ({"content": b'{"messages": ' + b"[" * 50_000, "headers": JSON}, 400, "error parsing the body"),
    "bad-utf8": ({"content": b'{"messages": "\xff\xfe"}', "headers": JSON}, 400, "error parsing the body"),
    "no-messages": ({"json": {"model": "scripted"}}, 400, "messages"),
    "empty-messages": ({"json": {"messages": []}}, 400, "messages"),
    "message-not-object": ({"json": {"messages": ["hi"]}}, 400, "messages"),
    "bad-role": ({"json": {"messages": [{"role": "wizard", "content": "x"}]}}, 400, "invalid message"),
    "part-not-object": ({"json": {"messages": [{"role": "user", "content": ["x"]}]}}, 400, "content parts"),
    "image-part": ({"json": {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}}, 400, "only text"),
    "negative-max-tokens": ({"json": {"messages": M, "max_tokens": -5}}, 400, "max_tokens"),
    "zero-max-tokens": ({"json": {"messages": M, "max_completion_tokens": 0}}, 400, "max_completion_tokens"),
    "max-tokens-over-limit": ({"json": {"messages": M, "max_tokens": 10**9}}, 400, "limit of 8192"),
    "negative-temperature": ({"json": {"messages": M, "temperature": -0.1}}, 400, "temperature"),
    "nan-temperature": ({"content": b'{"messages": [{"role": "user", "content": "x"}], "temperature": NaN}',
                         "headers": JSON}, 400, "finite number"),
    "top-p-over-1": ({"json": {"messages": M, "top_p": 1.5}}, 400, "top_p"),
    "top-p-zero": ({"json": {"messages": M, "top_p": 0}}, 400, "top_p"),
    "n-zero": ({"json": {"messages": M, "n": 0}}, 400, "n"),
    "n-over-limit": ({"json": {"messages": M, "n": 64}}, 400, "limit of 16"),
    "string-n": ({"json": {"messages": M, "n": "many"}}, 400, "n"),
    "empty-stop": ({"json": {"messages": M, "stop": [""]}}, 400, "stop"),
    "too-many-stops": ({"json": {"messages": M, "stop": ["a"] * 100}}, 400, "stop"),
    "seed-out-of-range": ({"json": {"messages": M, "seed": 2**80}}, 400, "seed"),
    "bad-tool": ({"json": {"messages": M, "tools": [{"type": "function"}]}}, 400, "tools[0]"),
    "stream-with-bad-field": ({"json": {"messages": M, "stream": True, "top_p": 2}}, 400, "top_p"),
    "unknown-model": ({"json": {"messages": M, "model": "gpt-9"}}, 404, "'gpt-9' does not exist"),
    "huge-body": ({"content": b'{"messages": [{"role": "user", "content": "' + b"x" * 100_000 + b'"}]}',
                   "headers": JSON}, 413, "limit of 65536 bytes"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_request_gets_a_4xx_in_the_openai_shape(url, name):
    kwargs, status, text = BAD[name]
    _assert_error(httpx.post(f"{url}/chat/completions", timeout=30, **kwargs), status, text)
    assert httpx.post(f"{url}/chat/completions", json={"messages": M}, timeout=30).status_code == 200  # still serving


def test_chunked_body_over_the_cap_is_refused(url):
    def chunks() -> Iterator[bytes]:
        yield b'{"messages": [{"role": "user", "content": "'
        for _ in range(40):
            yield b"y" * 4096
        yield b'"}]}'

    r = httpx.post(f"{url}/chat/completions", content=chunks(), headers=JSON, timeout=30)  # no Content-Length
    _assert_error(r, 413, "over this server's limit")


def test_unknown_routes_and_methods_answer_in_the_openai_shape(url):
    _assert_error(httpx.get(f"{url}/chat/completions", timeout=30), 405, "Method Not Allowed")
    _assert_error(httpx.post(f"{url}/completions", json={"prompt": "x"}, timeout=30), 404, "Not Found")


def test_model_aliases_and_accept_any_model():
    with _server(model_aliases=("gpt-4o-mini",)) as srv:
        for model in ("scripted", "gpt-4o-mini", None):
            body = {"messages": M} if model is None else {"messages": M, "model": model}
            assert httpx.post(f"{srv.base_url}/chat/completions", json=body, timeout=30).status_code == 200
        assert httpx.post(f"{srv.base_url}/chat/completions", json={"messages": M, "model": "x"},
                          timeout=30).status_code == 404
    with _server(accept_any_model=True) as srv:
        assert httpx.post(f"{srv.base_url}/chat/completions", json={"messages": M, "model": "x"},
                          timeout=30).status_code == 200


def test_api_key_is_required_when_set():
    with _server(api_key="s3cret") as srv:
        url = srv.base_url
        _assert_error(httpx.post(f"{url}/chat/completions", json={"messages": M}, timeout=30), 401, "no API key given")
        _assert_error(httpx.get(f"{url}/models", timeout=30), 401, "Authorization: Bearer")
        wrong = {"Authorization": "Bearer nope"}
        _assert_error(httpx.post(f"{url}/chat/completions", json={"messages": M}, headers=wrong, timeout=30), 401,
                      "not valid")
        right = {"Authorization": "Bearer s3cret"}
        assert httpx.post(f"{url}/chat/completions", json={"messages": M}, headers=right, timeout=30).status_code == 200
        assert httpx.get(f"{url}/models", headers=right, timeout=30).status_code == 200
        assert httpx.get(url.removesuffix("/v1") + "/health", timeout=30).status_code == 200  # liveness stays open


def test_cli_takes_the_api_key_from_the_environment():
    from agentloop.policies.openai_compat import OpenAIPolicy
    from agentloop.types import SamplingParams, user

    with serve_process("--policy", "scripted", "--kwargs", json.dumps({"replies": ["pong"]}), "--name", "s",
                       env={"AGENTLOOP_API_KEY": "k-123"}) as base:
        assert httpx.post(f"{base}/v1/chat/completions", json={"messages": M}, timeout=30).status_code == 401
        with OpenAIPolicy(base_url=f"{base}/v1", api_key="k-123") as policy:
            assert policy.generate([[user("x")]], SamplingParams())[0].text == "pong"


def test_config_refuses_a_default_over_the_limit():
    with pytest.raises(ValueError, match="default_max_tokens .* above max_tokens_limit"):
        ServeConfig(default_max_tokens=10_000, max_tokens_limit=4096)
