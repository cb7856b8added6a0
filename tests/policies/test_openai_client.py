"""The `openai` policy on the official client: what the client does for us, and the errors we add."""

from __future__ import annotations

import time

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse

from agentloop.errors import PolicyError
from agentloop.policies.openai_compat import OpenAIPolicy
from agentloop.types import SamplingParams, user
from tests.policies.conftest import ThreadServer

COMPLETION = {"id": "c", "object": "chat.completion", "created": 0, "model": "m", "choices": [
    {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "ok"}}]}


def rate_limited_app(limited: int, seen: list[dict], retry_after: str = "0.3"):
    """A server that answers 429 with Retry-After to the first ``limited`` requests, then a completion."""
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        seen.append({"t": time.monotonic(), "auth": request.headers.get("authorization"), **(await request.json())})
        if len(seen) <= limited:
            return JSONResponse({"error": {"message": "slow down", "type": "rate_limit"}}, status_code=429,
                                headers={"retry-after": retry_after})
        return JSONResponse(COMPLETION)

    @app.post("/html/chat/completions")
    @app.get("/html/models")
    async def html():
        return HTMLResponse("<html>not an API</html>")

    return app


def test_rate_limits_are_retried_after_the_servers_retry_after():
    seen: list[dict] = []
    with ThreadServer(rate_limited_app(2, seen)) as srv:
        policy = OpenAIPolicy(base_url=srv.base_url, model="m", api_key="sk-test", max_retries=2)
        [c] = policy.generate([[user("x")]], SamplingParams(max_new_tokens=5, seed=7))
    assert c.text == "ok" and len(seen) == 3
    gaps = [b["t"] - a["t"] for a, b in zip(seen, seen[1:])]
    assert all(g >= 0.25 for g in gaps), gaps  # the client waited as told
    assert seen[0]["auth"] == "Bearer sk-test"
    assert (seen[0]["model"], seen[0]["max_tokens"], seen[0]["seed"], seen[0]["n"]) == ("m", 5, 7, 1)


def test_rate_limits_beyond_the_retries_give_up_with_the_message():
    seen: list[dict] = []
    with ThreadServer(rate_limited_app(10, seen, retry_after="0.05")) as srv:
        policy = OpenAIPolicy(base_url=srv.base_url, model="m", max_retries=1)
        with pytest.raises(PolicyError, match="kept failing after 2 tries.*HTTP 429: slow down"):
            policy.generate([[user("x")]], SamplingParams())
    assert len(seen) == 2


def test_a_server_that_is_not_openai_compatible_is_named():
    with ThreadServer(rate_limited_app(0, [])) as srv:
        policy = OpenAIPolicy(base_url=srv.base_url.replace("/v1", "/html"), model="m", max_retries=0)
        with pytest.raises(PolicyError, match="chat/completions returned a response that is not OpenAI's shape"):
            policy.generate([[user("x")]], SamplingParams())
        unnamed = OpenAIPolicy(base_url=srv.base_url.replace("/v1", "/html"), max_retries=0)
        with pytest.raises(PolicyError, match="models.*OpenAI-compatible /v1 URL"):
            unnamed.model_id()
