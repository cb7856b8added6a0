"""`OpenAIPolicy`: a client for any OpenAI-compatible chat server (``agentloop serve``, vLLM, llama.cpp, hosted APIs).

(The module is not called ``openai.py`` so that it never shadows the ``openai`` package.)

Built on the official ``openai`` client (``openai.OpenAI``): its connection pool, per-request
timeouts, retries with exponential backoff and jitter on connection errors, timeouts, 408/409/429
and 5xx (honouring ``Retry-After``), and its typed responses. One ``/chat/completions`` request per
conversation, sent concurrently (at most ``max_concurrency`` in flight). What the client does not do
and we add: errors as :class:`~agentloop.errors.PolicyError` with the server's message and the fix
(the rollout engine records them on the episode); a **down-cooldown**: after a server was found
unreachable (every retry failed to connect or timed out), calls within ``down_cooldown_s`` fail at
once instead of retrying again, so a dead server costs one retry cycle per batch, not one per episode.

``n > 1`` is sent as the ``n`` field; servers that return fewer choices (llama.cpp) get the
missing samples as further requests. With ``return_logprobs`` the per-token logprobs come from the
standard ``logprobs`` field and token ids from the ``token_ids`` / ``prompt_token_ids`` extension
fields that ``agentloop serve`` adds (other servers leave ``token_ids`` None, and training then renders
those turns as text: :mod:`agentloop.training.data`). Not covered:
streaming, the legacy ``/completions`` endpoint; structured ``tool_calls`` in a reply are turned
into ``<tool_call>`` blocks in the text, as environments read them.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agentloop.errors import ConfigError, PolicyError
from agentloop.protocols import ToolSchemas
from agentloop.types import Completion, Message, SamplingParams

if TYPE_CHECKING:
    import openai
    from openai.types.chat.chat_completion import Choice

RETRY_STATUS = frozenset({408, 409, 429})  # and every 5xx: the statuses openai.OpenAI retries


class OpenAIPolicyConfig(BaseModel):
    """Settings of :class:`OpenAIPolicy`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = Field(default="http://127.0.0.1:8000/v1", description="Server URL up to and including /v1.")
    model: str | None = Field(default=None, description="Model id to request; None = the first id /models lists.")
    api_key: str | None = Field(default=None, description="Bearer token; None = $OPENAI_API_KEY if set.")
    max_concurrency: int = Field(default=8, ge=1, le=1024, description="Requests in flight at once.")
    timeout_s: float = Field(default=120.0, gt=0, description="Timeout of one request try (connect, read, write).")
    max_retries: int = Field(default=3, ge=0, le=20,
                             description="Retries after the first try of a request (the openai client's backoff).")
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
                 max_retries: int = 3, down_cooldown_s: float = 5.0, extra_body: dict[str, Any] | None = None):
        try:
            self.config = OpenAIPolicyConfig(
                base_url=base_url, model=model, api_key=api_key, max_concurrency=max_concurrency, timeout_s=timeout_s,
                max_retries=max_retries, down_cooldown_s=down_cooldown_s, extra_body=extra_body or {})
        except ValidationError as e:
            raise ConfigError(f"OpenAIPolicy: {e}") from e
        try:
            import openai
        except ImportError as e:
            raise PolicyError(f"the openai policy needs the openai package: pip install openai ({e}).") from e
        self._openai = openai
        # Local servers need no key, but the client insists on one; "EMPTY" is the usual placeholder.
        key = self.config.api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        # The client's own connection pool; at most max_concurrency threads use it at once (see generate).
        self._client: openai.OpenAI = openai.OpenAI(
            base_url=self.config.base_url, api_key=key, timeout=self.config.timeout_s,
            max_retries=self.config.max_retries)
        self._model = self.config.model
        self._down_until = 0.0
        self._lock = threading.Lock()

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> OpenAIPolicy:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- one request, errors as PolicyError ------------------------------------------------------
    def _call(self, path: str, send: Any) -> Any:
        """``send()`` (one client call, retried by the client), with the cooldown and our error messages."""
        url = f"{self.config.base_url}{path}"
        if time.monotonic() < self._down_until:
            raise _Unreachable(f"{url} was unreachable moments ago (retrying after {self.config.down_cooldown_s:g} s); "
                               "is the server running? Start one with `agentloop serve`.")
        openai, tries = self._openai, self.config.max_retries + 1
        try:
            return send()
        except openai.APIConnectionError as e:  # refused, reset, timeouts: after every retry
            self._down_until = time.monotonic() + self.config.down_cooldown_s
            cause = e.__cause__ or e
            raise _Unreachable(f"could not reach {url} after {tries} tries ({type(cause).__name__}: {cause}); is the "
                               "server running and is base_url right? Start one with `agentloop serve`.") from e
        except openai.APIStatusError as e:
            status, message = e.status_code, _error_message(e)
            if status in RETRY_STATUS or status >= 500:
                raise PolicyError(f"{url} kept failing after {tries} tries (HTTP {status}: {message}).") from e
            raise PolicyError(f"{url} answered {status}: {message}") from e
        except (openai.APIResponseValidationError, json.JSONDecodeError, ValidationError) as e:
            raise PolicyError(f"{url} returned a response that is not OpenAI's shape ({e}); is base_url an "
                              "OpenAI-compatible /v1 URL?") from e

    # -- API ---------------------------------------------------------------------------------------
    def model_id(self) -> str:
        """The model requested: the configured one, else the first the server lists."""
        with self._lock:
            if self._model is None:
                # A plain GET: servers list models in more shapes than the client's typed page accepts.
                body = self._call("/models", lambda: self._client.get("/models", cast_to=object))
                data = body.get("data") if isinstance(body, dict) else None
                if not isinstance(data, list):
                    raise PolicyError(f"{self.config.base_url}/models returned {str(body)[:200]!r}, not a model list; "
                                      "is base_url an OpenAI-compatible /v1 URL?")
                if not data or not isinstance(data[0], dict) or "id" not in data[0]:
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
            args = self._arguments(model, conversation, sampling, sampling.n - len(out), tools)
            response = self._call("/chat/completions", lambda: self._client.chat.completions.create(**args))
            if not hasattr(response, "choices"):  # the client hands back the body as is when it is not JSON
                raise PolicyError(f"{self.config.base_url}/chat/completions returned a response that is not OpenAI's "
                                  f"shape ({str(response)[:200]!r}); is base_url an OpenAI-compatible /v1 URL?")
            if not response.choices:
                raise PolicyError(f"{self.config.base_url}/chat/completions returned no choices: {str(response)[:200]}")
            out.extend(_completion(ch, sampling) for ch in response.choices[: sampling.n - len(out)])
        return out

    def _arguments(self, model: str, conversation: Sequence[Message], sampling: SamplingParams, n: int,
                   tools: ToolSchemas | None = None) -> dict[str, Any]:
        args: dict[str, Any] = {
            "model": model, "messages": [m.to_openai() for m in conversation], "temperature": sampling.temperature,
            "top_p": sampling.top_p, "max_tokens": sampling.max_new_tokens, "n": n, "stream": False,
        }
        if sampling.stop:
            args["stop"] = list(sampling.stop)
        if sampling.seed is not None:
            args["seed"] = sampling.seed
        if sampling.return_logprobs:
            args["logprobs"] = True
        if tools:
            args["tools"] = list(tools)
        if self.config.extra_body:
            args["extra_body"] = dict(self.config.extra_body)
        return args


def _completion(choice: Choice, sampling: SamplingParams) -> Completion:
    message = choice.message
    text = message.content or ""
    # Servers that parse tool calls return them structured; environments read <tool_call> blocks.
    for call in message.tool_calls or []:
        fn = getattr(call, "function", None)
        if fn is None:  # a custom (non-function) tool call carries no JSON arguments
            continue
        args: Any = fn.arguments
        try:
            args = json.loads(args)
        except ValueError:
            pass
        text += "\n<tool_call>\n" + json.dumps({"name": fn.name, "arguments": args}) + "\n</tool_call>"
    for s in sampling.stop:  # some servers include the stop string; cut like every other backend does
        if s and s in text:
            text = text[: text.find(s)]
    reason = choice.finish_reason or "stop"
    if not sampling.return_logprobs:
        return Completion(text=text, finish_reason=reason)
    content = (choice.logprobs.content if choice.logprobs is not None else None) or []
    extra = choice.model_extra or {}  # agentloop serve's extension fields
    token_ids, prompt_ids = extra.get("token_ids"), extra.get("prompt_token_ids")
    return Completion(text=text, finish_reason=reason, logprobs=tuple(float(t.logprob) for t in content),
                      token_ids=tuple(token_ids) if token_ids is not None else None,
                      prompt_token_ids=tuple(prompt_ids) if prompt_ids else None)


def _error_message(error: openai.APIStatusError) -> str:
    """The server's own message: OpenAI's ``{"error": {"message"}}`` (the client unwraps ``error``) or ``detail``."""
    body = error.body
    if isinstance(body, dict):
        for key in ("message", "detail"):
            if body.get(key):
                return str(body[key])
    text = error.response.text
    return text[:300] or error.response.reason_phrase


__all__ = ["OpenAIPolicy", "OpenAIPolicyConfig"]
