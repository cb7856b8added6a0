"""`OpenAIPolicy`: a client for any OpenAI-compatible chat server (``agentloop serve``, vLLM, llama.cpp, hosted APIs).

(The module is not called ``openai.py`` so that it never shadows the ``openai`` package.)

Covered: one ``/chat/completions`` request per conversation, sent concurrently (at most
``max_concurrency`` in flight) over one pooled httpx client; per-request timeouts; retries with
exponential backoff and jitter on connection errors, timeouts, 408/409/429 and 5xx (a
``Retry-After`` header is honoured up to ``max_backoff_s``); other 4xx fail at once with the
server's message. When every retry fails the call raises :class:`~agentloop.errors.PolicyError`;
the rollout engine records that on the episode. After a server was found unreachable, calls within
``down_cooldown_s`` fail at once instead of retrying again, so a dead server costs one retry cycle
per batch, not one per episode.

``n > 1`` is sent as the ``n`` field; servers that return fewer choices (llama.cpp) get the
missing samples as further requests. With ``return_logprobs`` the per-token logprobs come from the
standard ``logprobs`` field and token ids from the ``token_ids`` / ``prompt_token_ids`` extension
fields that ``agentloop serve`` adds (other servers leave ``token_ids`` None). Not covered:
streaming, tool calls, the legacy ``/completions`` endpoint.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agentloop.errors import ConfigError, PolicyError
from agentloop.protocols import ToolSchemas
from agentloop.types import Completion, Message, SamplingParams

RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


class OpenAIPolicyConfig(BaseModel):
    """Settings of :class:`OpenAIPolicy`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = Field(default="http://127.0.0.1:8000/v1", description="Server URL up to and including /v1.")
    model: str | None = Field(default=None, description="Model id to request; None = the first id /models lists.")
    api_key: str | None = Field(default=None, description="Bearer token; None = $OPENAI_API_KEY if set.")
    max_concurrency: int = Field(default=8, ge=1, le=1024, description="Requests in flight at once.")
    timeout_s: float = Field(default=120.0, gt=0, description="Timeout of one request (connect, read, write).")
    max_retries: int = Field(default=3, ge=0, le=20, description="Retries after the first try of a request.")
    backoff_s: float = Field(default=0.5, ge=0, description="First retry delay; doubles each retry (plus jitter).")
    max_backoff_s: float = Field(default=20.0, ge=0, description="Cap of one retry delay.")
    down_cooldown_s: float = Field(default=5.0, ge=0, description="Fail fast for this long after the server was unreachable.")
    extra_body: dict[str, Any] = Field(default_factory=dict, description="Extra JSON fields sent with every request.")

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https:// (got {v!r}), e.g. http://127.0.0.1:8000/v1")
        return v.rstrip("/")


class _Unreachable(PolicyError):
    """Every retry failed to connect or timed out."""


class OpenAIPolicy:
    """A :class:`~agentloop.protocols.Policy` backed by an OpenAI-compatible server.

    Example::

        policy = OpenAIPolicy(base_url="http://127.0.0.1:8000/v1")   # e.g. `agentloop serve`
        [c] = policy.generate([[user("hi")]], SamplingParams(max_new_tokens=16))
    """

    def __init__(self, base_url: str = "http://127.0.0.1:8000/v1", model: str | None = None,
                 api_key: str | None = None, max_concurrency: int = 8, timeout_s: float = 120.0,
                 max_retries: int = 3, backoff_s: float = 0.5, max_backoff_s: float = 20.0,
                 down_cooldown_s: float = 5.0, extra_body: dict[str, Any] | None = None):
        try:
            self.config = OpenAIPolicyConfig(
                base_url=base_url, model=model, api_key=api_key, max_concurrency=max_concurrency, timeout_s=timeout_s,
                max_retries=max_retries, backoff_s=backoff_s, max_backoff_s=max_backoff_s,
                down_cooldown_s=down_cooldown_s, extra_body=extra_body or {})
        except ValidationError as e:
            raise ConfigError(f"OpenAIPolicy: {e}") from e
        key = self.config.api_key or os.environ.get("OPENAI_API_KEY")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        limits = httpx.Limits(max_connections=self.config.max_concurrency,
                              max_keepalive_connections=self.config.max_concurrency)
        self._client = httpx.Client(base_url=self.config.base_url, headers=headers, limits=limits,
                                    timeout=httpx.Timeout(self.config.timeout_s))
        self._model = self.config.model
        self._down_until = 0.0
        self._lock = threading.Lock()

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> OpenAIPolicy:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- HTTP with retries -----------------------------------------------------------------------
    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        url = f"{self.config.base_url}{path}"
        if time.monotonic() < self._down_until:
            raise _Unreachable(f"{url} was unreachable moments ago (retrying after {self.config.down_cooldown_s:g} s); "
                               "is the server running? Start one with `agentloop serve`.")
        last, retry_after = "", None
        for attempt in range(self.config.max_retries + 1):
            if attempt:
                time.sleep(self._delay(attempt, retry_after))
            retry_after = None
            try:
                resp = self._client.request(method, path, json=body)
            except httpx.TransportError as e:  # connection refused, reset, timeouts
                last = f"{type(e).__name__}: {e}"
                continue
            if resp.status_code < 400:
                return self._json(resp, url)
            message = _error_message(resp)
            if resp.status_code not in RETRY_STATUS:
                raise PolicyError(f"{url} answered {resp.status_code}: {message}")
            last = f"HTTP {resp.status_code}: {message}"
            retry_after = _retry_after(resp)
        tries = self.config.max_retries + 1
        if not last.startswith("HTTP"):
            self._down_until = time.monotonic() + self.config.down_cooldown_s
            raise _Unreachable(f"could not reach {url} after {tries} tries ({last}); is the server running and is "
                               "base_url right? Start one with `agentloop serve`.")
        raise PolicyError(f"{url} kept failing after {tries} tries ({last}).")

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        base = self.config.backoff_s * 2 ** (attempt - 1)
        delay = retry_after if retry_after is not None else base * (1 + random.random() * 0.25)
        return min(delay, self.config.max_backoff_s)

    @staticmethod
    def _json(resp: httpx.Response, url: str) -> dict[str, Any]:
        try:
            data = resp.json()
        except ValueError as e:
            raise PolicyError(f"{url} returned non-JSON ({resp.text[:200]!r}); is base_url an OpenAI-compatible /v1 URL?") from e
        if not isinstance(data, dict):
            raise PolicyError(f"{url} returned {type(data).__name__}, expected a JSON object.")
        return data

    # -- API ---------------------------------------------------------------------------------------
    def model_id(self) -> str:
        """The model requested: the configured one, else the first the server lists."""
        with self._lock:
            if self._model is None:
                data = self._request("GET", "/models").get("data") or []
                if not data:
                    raise PolicyError(f"{self.config.base_url}/models lists no model; pass model= explicitly.")
                self._model = str(data[0]["id"])
            return self._model

    def generate(self, conversations: Sequence[Sequence[Message]], sampling: SamplingParams,
                 tools: Sequence[ToolSchemas | None] | None = None) -> list[Completion]:
        """``len(conversations) * sampling.n`` completions, in order; PolicyError if any request fails for good."""
        if not conversations:
            return []
        model = self.model_id()
        workers = min(self.config.max_concurrency, len(conversations))
        with ThreadPoolExecutor(workers, thread_name_prefix="agentloop-openai") as pool:
            per_tools = list(tools) if tools is not None else [None] * len(conversations)
            per_conv = list(pool.map(lambda ct: self._complete(model, ct[0], sampling, ct[1]),
                                     zip(conversations, per_tools)))
        return [c for group in per_conv for c in group]

    def _complete(self, model: str, conversation: Sequence[Message], sampling: SamplingParams,
                  tools: ToolSchemas | None = None) -> list[Completion]:
        out: list[Completion] = []
        while len(out) < sampling.n:  # servers without n support return one choice: ask again for the rest
            data = self._request("POST", "/chat/completions", self._body(model, conversation, sampling, sampling.n - len(out), tools))
            choices = data.get("choices")
            if not choices:
                raise PolicyError(f"{self.config.base_url}/chat/completions returned no choices: {str(data)[:200]}")
            out.extend(_completion(ch, sampling) for ch in choices[: sampling.n - len(out)])
        return out

    def _body(self, model: str, conversation: Sequence[Message], sampling: SamplingParams, n: int,
              tools: ToolSchemas | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": model, "messages": [m.to_openai() for m in conversation], "temperature": sampling.temperature,
            "top_p": sampling.top_p, "max_tokens": sampling.max_new_tokens, "n": n, "stream": False,
        }
        if sampling.stop:
            body["stop"] = list(sampling.stop)
        if sampling.seed is not None:
            body["seed"] = sampling.seed
        if sampling.return_logprobs:
            body["logprobs"] = True
        if tools:
            body["tools"] = list(tools)
        return {**body, **self.config.extra_body}


def _completion(choice: dict[str, Any], sampling: SamplingParams) -> Completion:
    message = choice.get("message") or {}
    text = message.get("content") or ""
    # Servers that parse tool calls return them structured; environments read <tool_call> blocks.
    for call in message.get("tool_calls") or []:
        fn = call.get("function") or {}
        args = fn.get("arguments", {})
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except ValueError:
                pass
        text += "\n<tool_call>\n" + json.dumps({"name": fn.get("name"), "arguments": args}) + "\n</tool_call>"
    for s in sampling.stop:  # some servers include the stop string; cut like every other backend does
        if s and s in text:
            text = text[: text.find(s)]
    reason = choice.get("finish_reason") or "stop"
    if not sampling.return_logprobs:
        return Completion(text=text, finish_reason=reason)
    content = (choice.get("logprobs") or {}).get("content") or []
    token_ids = choice.get("token_ids")
    prompt_ids = choice.get("prompt_token_ids")
    return Completion(text=text, finish_reason=reason, logprobs=tuple(float(t["logprob"]) for t in content),
                      token_ids=tuple(token_ids) if token_ids is not None else None,
                      prompt_token_ids=tuple(prompt_ids) if prompt_ids else None)


def _error_message(resp: httpx.Response) -> str:
    try:
        data = resp.json()
        err = data.get("error") if isinstance(data, dict) else None
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if isinstance(data, dict) and data.get("detail"):
            return str(data["detail"])
    except ValueError:
        pass
    return resp.text[:300] or resp.reason_phrase


def _retry_after(resp: httpx.Response) -> float | None:
    try:
        return float(resp.headers["retry-after"])
    except (KeyError, ValueError):
        return None


__all__ = ["OpenAIPolicy", "OpenAIPolicyConfig"]
