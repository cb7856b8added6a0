"""An OpenAI-compatible HTTP server over any :class:`~agentloop.protocols.Policy` (``agentloop serve``).

Endpoints: ``POST /v1/chat/completions``, ``GET /v1/models``, ``GET /health``. Errors use the OpenAI
shape ``{"error": {"message", "type", "code"}}``: 400 for a request we cannot honour (malformed JSON,
bad fields, sampling values out of range or over the server's limits ``max_n``/``max_tokens_limit``,
a non-text message part, a malformed tool), 401 without the API key (when one is
set), 404 for a model name the server does not serve, 413 for a body over ``max_body_bytes``, 500
when the policy fails.

API key (optional): with ``api_key`` set (``--api-key`` or the ``AGENTLOOP_API_KEY`` environment
variable), every endpoint but ``/health`` needs ``Authorization: Bearer KEY`` (compared in
constant time). The key only keeps casual clients out: there is no TLS, so bind to 127.0.0.1 (the
default) or put a TLS proxy in front.

Concurrent requests are **micro-batched**: a worker thread takes every request waiting (up to
``max_batch_size`` conversations, after at most ``batch_wait_s``) and runs one ``policy.generate``
per group of identical sampling settings, so many clients share one batched forward pass. Requests
with a ``seed`` run alone, so a seeded request gives the same text whatever else is in flight.

Covered request fields: ``messages`` (text content, or lists of ``{"type": "text"}`` parts),
``temperature`` (default 1.0, as in the OpenAI API), ``top_p``, ``max_tokens`` /
``max_completion_tokens``, ``n``, ``stop``, ``seed``, ``logprobs``, ``tools`` (rendered by the policy's
chat template when its ``generate`` takes ``tools``, else written into the system message in the text
form of :mod:`agentloop.toolprompt`; calls come back as ``<tool_call>`` blocks in the message
content, not as structured ``tool_calls``). Other fields are ignored. The ``model`` field must be the
served name (``model_name``), one of ``model_aliases``, or absent; ``accept_any_model`` turns the check
off for clients that send a fixed name. When ``logprobs`` is set each
choice also carries the extension fields ``token_ids`` and ``prompt_token_ids`` (used by the
``openai`` policy to fill :class:`~agentloop.types.Completion`).

Usage: ``usage`` counts the tokens the policy really read and wrote (the prompt once, every choice's
generated tokens, end-of-turn token included): the server always asks the policy for token ids
(``return_logprobs``; the log-probabilities are returned only when the request sets ``logprobs``).
A policy that reports no token ids (the scripted one, a remote endpoint that does not return them)
gets ``"usage": null`` rather than made-up numbers.

Streaming: ``stream=true`` answers with server-sent events as the OpenAI API does: per choice a
``chat.completion.chunk`` with the role, one with the content (and its logprobs when asked), one
with the ``finish_reason``; with ``stream_options: {"include_usage": true}`` every chunk carries
``"usage": null`` and a last chunk with no choices carries the usage; then ``data: [DONE]``. The
reply is generated whole first (in the shared micro-batch; policies generate batches, not tokens),
so the first chunk arrives when the reply is complete: clients that stream by default work, but see
no earlier first token. A policy failure is still a 500 JSON error, since nothing was sent yet.

Not covered: structured tool calls, ``top_logprobs``, rate limits or per-key quotas, TLS.

This module imports fastapi and uvicorn; ``import agentloop`` does not import it.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agentloop.errors import ConfigError
from agentloop.protocols import Policy, accepts_tools
from agentloop.toolprompt import with_tools_in_system
from agentloop.types import Completion, Message, SamplingParams


class ServeConfig(BaseModel):
    """Settings of the server."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_name: str = Field(default="agentloop", description="The id /v1/models reports.")
    host: str = Field(default="127.0.0.1", description="Interface to bind; 127.0.0.1 keeps the server local.")
    port: int = Field(default=8000, ge=0, le=65535)
    max_batch_size: int = Field(default=32, ge=1, description="Most conversations merged into one generate call.")
    batch_wait_s: float = Field(default=0.01, ge=0.0, le=5.0, description="How long to wait for more requests to batch.")
    default_max_tokens: int = Field(default=512, ge=1, description="max_tokens when a request gives none.")
    max_tokens_limit: int = Field(default=8192, ge=1, description="Largest max_tokens a request may ask for (400 above).")
    max_n: int = Field(default=16, ge=1, le=128, description="Largest n (choices per request) a request may ask for.")
    max_body_bytes: int = Field(default=4 * 2**20, ge=1024, description="Largest request body in bytes (413 above).")
    api_key: str | None = Field(default=None, min_length=1, repr=False,
                                description="When set, requests need 'Authorization: Bearer KEY' (401 otherwise).")
    model_aliases: tuple[str, ...] = Field(default=(), description="More model names accepted besides model_name.")
    accept_any_model: bool = Field(default=False, description="Accept any model name (clients with a fixed name).")

    @model_validator(mode="after")
    def _check(self) -> ServeConfig:
        if self.default_max_tokens > self.max_tokens_limit:
            raise ValueError(f"default_max_tokens ({self.default_max_tokens}) is above max_tokens_limit "
                             f"({self.max_tokens_limit}); lower it or raise the limit.")
        return self


class _ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    model: str | None = None
    messages: list[dict[str, Any]] = Field(min_length=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    n: int = Field(default=1, ge=1, le=128)
    stop: str | list[str] | None = Field(default=None, max_length=16)
    seed: int | None = Field(default=None, ge=-(2**63), lt=2**64)  # what torch.manual_seed takes
    logprobs: bool | None = False
    stream: bool | None = False
    stream_options: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None


class _BadRequest(Exception):
    pass


def _message(raw: dict[str, Any]) -> Message:
    content = raw.get("content")
    if isinstance(content, list):  # OpenAI content parts: keep text parts, refuse the rest
        if not all(isinstance(p, dict) for p in content):
            raise _BadRequest("message content parts must be objects like {\"type\": \"text\", \"text\": \"...\"}")
        kinds = {p.get("type") for p in content}
        if kinds - {"text"}:
            raise _BadRequest(f"only text message parts are supported, got {sorted(str(k) for k in kinds)}")
        content = "".join(str(p.get("text", "")) for p in content)
    try:
        return Message(role=raw.get("role"), content=content or "", name=raw.get("name"),
                       tool_call_id=raw.get("tool_call_id"))
    except ValidationError as e:
        raise _BadRequest(f"invalid message {raw!r}: {e.errors()[0]['msg']}") from e


def _tools(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """Check the OpenAI tool shape: ``{"type": "function", "function": {"name": ..., "parameters": {...}}}``."""
    for i, tool in enumerate(tools or ()):
        fn = tool.get("function")
        if tool.get("type", "function") != "function" or not isinstance(fn, dict) \
                or not isinstance(fn.get("name"), str) or not fn["name"] \
                or not isinstance(fn.get("parameters", {}), dict):
            raise _BadRequest(f"tools[{i}] must be {{\"type\": \"function\", \"function\": {{\"name\": \"...\", "
                              "\"parameters\": {...}}}")
    return tools


def _sampling(req: _ChatRequest, config: ServeConfig) -> SamplingParams:
    stop = (req.stop,) if isinstance(req.stop, str) else tuple(req.stop or ())
    if any(not s for s in stop):
        raise _BadRequest("stop strings must not be empty")
    if req.n > config.max_n:
        raise _BadRequest(f"n={req.n} is above this server's limit of {config.max_n} choices per request")
    asked = req.max_completion_tokens or req.max_tokens
    if asked is not None and asked > config.max_tokens_limit:
        raise _BadRequest(f"max_tokens={asked} is above this server's limit of {config.max_tokens_limit}")
    return SamplingParams(
        temperature=1.0 if req.temperature is None else req.temperature,
        top_p=1.0 if req.top_p is None else req.top_p,
        max_new_tokens=req.max_completion_tokens or req.max_tokens or config.default_max_tokens,
        n=req.n, stop=stop, seed=req.seed, return_logprobs=bool(req.logprobs),
    )


@dataclass
class _Item:
    conversation: list[Message]
    sampling: SamplingParams
    tools: list[dict[str, Any]] | None = None
    future: Future = field(default_factory=Future)


class MicroBatcher:
    """Merges concurrent requests into batched ``policy.generate`` calls on one worker thread."""

    def __init__(self, policy: Policy, max_batch_size: int = 32, wait_s: float = 0.01):
        self.policy = policy
        self.takes_tools = accepts_tools(policy)
        self.max_batch_size = max_batch_size
        self.wait_s = wait_s
        self._queue: queue.Queue[_Item | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="agentloop-batcher", daemon=True)
        self._thread.start()

    def submit(self, conversation: list[Message], sampling: SamplingParams,
               tools: list[dict[str, Any]] | None = None) -> Future:
        if tools and not self.takes_tools:  # the documented text form, for policies without tools=
            conversation, tools = with_tools_in_system(conversation, tools), None
        item = _Item(conversation, sampling, tools or None)
        self._queue.put(item)
        return item.future

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)

    def _collect(self, first: _Item) -> list[_Item]:
        items, deadline = [first], time.monotonic() + self.wait_s
        while len(items) < self.max_batch_size:
            try:
                item = self._queue.get(timeout=max(deadline - time.monotonic(), 0.0))
            except queue.Empty:
                break
            if item is None:
                self._queue.put(None)  # re-post the shutdown signal for the loop
                break
            items.append(item)
        return items

    def _loop(self) -> None:
        while (first := self._queue.get()) is not None:
            groups: dict[Any, list[_Item]] = {}
            for item in self._collect(first):
                # Seeded requests run alone: batch composition would change their random stream.
                key = (item.sampling, id(item)) if item.sampling.seed is not None else item.sampling
                groups.setdefault(key, []).append(item)
            for group in groups.values():
                self._run(group)

    def _run(self, group: list[_Item]) -> None:
        sampling = group[0].sampling
        try:
            convs = [it.conversation for it in group]
            if any(it.tools for it in group):
                out = self.policy.generate(convs, sampling, tools=[it.tools for it in group])  # type: ignore[call-arg]
            else:
                out = self.policy.generate(convs, sampling)
            if len(out) != len(group) * sampling.n:
                raise RuntimeError(f"policy returned {len(out)} completions for {len(group)} x n={sampling.n}")
        except Exception as e:  # every request of the failed batch gets the error as a 500
            for it in group:
                it.future.set_exception(e)
            return
        for i, it in enumerate(group):
            it.future.set_result(out[i * sampling.n:(i + 1) * sampling.n])


def _error(status: int, message: str, type_: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"message": message, "type": type_, "code": status}})


class _Guard:
    """ASGI middleware in front of the app: the API key check and the request body cap (also for chunked bodies)."""

    def __init__(self, app: Any, config: ServeConfig):
        self.app, self.config = app, config

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", ())}
        key = self.config.api_key
        if key is not None and scope.get("path") != "/health":
            given = headers.get(b"authorization", b"").decode("latin-1")
            token = given[7:].strip() if given[:7].lower() == "bearer " else ""
            if not hmac.compare_digest(token.encode(), key.encode()):
                why = "no API key given" if not given else "the API key is not valid"
                await _error(401, f"{why}: send the header 'Authorization: Bearer <key>' with the key the server was "
                             "started with (--api-key or AGENTLOOP_API_KEY).", "invalid_request_error")(scope, receive, send)
                return
        limit = self.config.max_body_bytes
        length = headers.get(b"content-length")
        if length is not None:  # the server reads exactly Content-Length bytes: checking the header is enough
            if not length.isdigit() or int(length) > limit:
                await self._too_large(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        # No Content-Length (chunked): read the body here, up to the cap, then hand it on.
        chunks, seen = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            seen += len(chunks[-1])
            if seen > limit:
                await self._too_large(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        body, replayed = b"".join(chunks), False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await _error(413, f"the request body is over this server's limit of {self.config.max_body_bytes} bytes",
                     "invalid_request_error")(scope, receive, send)


def _token_text(policy: Policy, token_id: int) -> str:
    tokenizer = getattr(policy, "tokenizer", None)
    return tokenizer.decode([token_id]) if tokenizer is not None else str(token_id)


def _choice(policy: Policy, index: int, c: Completion, logprobs: bool) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": index, "message": {"role": "assistant", "content": c.text},
                              "finish_reason": c.finish_reason if c.finish_reason in ("stop", "length") else "stop",
                              "logprobs": None}
    if logprobs and c.token_ids is not None:
        lps = c.logprobs or ()
        choice["logprobs"] = {"content": [{"token": _token_text(policy, t), "logprob": lp, "bytes": None,
                                           "top_logprobs": []} for t, lp in zip(c.token_ids, lps)]}
        choice["token_ids"] = list(c.token_ids)
        choice["prompt_token_ids"] = list(c.prompt_token_ids or ())
    if c.warning:
        choice["warning"] = c.warning
    return choice


def create_app(policy: Policy, config: ServeConfig | None = None) -> FastAPI:
    """The FastAPI application serving ``policy`` (run it with uvicorn, or use :func:`serve`)."""
    config = config or ServeConfig()
    if not hasattr(policy, "generate"):
        raise ConfigError(f"serve: policy must have generate(conversations, sampling), got {type(policy).__name__}.")
    batcher = MicroBatcher(policy, config.max_batch_size, config.batch_wait_s)
    app = FastAPI(title="agentloop", description="OpenAI-compatible endpoint over an agentloop policy.")
    app.state.batcher = batcher
    app.router.add_event_handler("shutdown", batcher.close)
    created = int(time.time())

    app.add_middleware(_Guard, config=config)
    served = {config.model_name, *config.model_aliases}

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:  # 404 route, 405 method, ...
        return _error(exc.status_code, str(exc.detail), "invalid_request_error")

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            where = next(e for e in errors if e.get("type") == "json_invalid").get("ctx", {}).get("error", "")
            return _error(400, f"the request body is not valid JSON ({where or 'decode error'}); send one JSON object "
                          "with 'messages'.", "invalid_request_error")
        problems = "; ".join(f"{'.'.join(str(x) for x in e['loc'][1:]) or 'body'}: {e['msg']}" for e in errors)
        return _error(400, f"invalid request: {problems}", "invalid_request_error")

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": config.model_name, "object": "model", "created": created,
                                            "owned_by": "agentloop"}]}

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(req: _ChatRequest) -> dict[str, Any] | JSONResponse | StreamingResponse:
        if req.model is not None and req.model not in served and not config.accept_any_model:
            return _error(404, f"the model {req.model!r} does not exist here; this server serves "
                          f"{', '.join(repr(m) for m in sorted(served))} (see /v1/models).", "invalid_request_error")
        try:
            conversation = [_message(m) for m in req.messages]
            sampling = _sampling(req, config)
            tools = _tools(req.tools)
        except (_BadRequest, ValidationError) as e:
            return _error(400, str(e), "invalid_request_error")
        counted = sampling.model_copy(update={"return_logprobs": True})  # token ids for real usage counts
        try:
            completions = await asyncio.wrap_future(batcher.submit(conversation, counted, tools))
        except Exception as e:
            return _error(500, f"the policy failed: {type(e).__name__}: {e}", "server_error")
        head = {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "created": int(time.time()), "model": config.model_name}
        choices = [_choice(policy, i, c, bool(req.logprobs)) for i, c in enumerate(completions)]
        if req.stream:
            include_usage = bool((req.stream_options or {}).get("include_usage"))
            return StreamingResponse(_events(head, choices, _usage(completions), include_usage),
                                     media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        return {**head, "object": "chat.completion", "choices": choices, "usage": _usage(completions)}

    return app


def _usage(completions: list[Completion]) -> dict[str, int] | None:
    """OpenAI ``usage`` from the token ids the policy returned (the prompt counted once); None if it returned none."""
    if not completions or any(c.token_ids is None or c.prompt_token_ids is None for c in completions):
        return None
    prompt = len(completions[0].prompt_token_ids or ())
    generated = sum(len(c.token_ids or ()) for c in completions)
    return {"prompt_tokens": prompt, "completion_tokens": generated, "total_tokens": prompt + generated}


def _events(head: dict[str, Any], choices: list[dict[str, Any]], usage: dict[str, int] | None,
            include_usage: bool) -> Iterator[str]:
    """The server-sent events of a streamed reply: role, content and finish chunks per choice, usage, [DONE]."""
    def chunk(choice_list: list[dict[str, Any]], **extra: Any) -> str:
        body = {**head, "object": "chat.completion.chunk", "system_fingerprint": None, "choices": choice_list}
        if include_usage:
            body["usage"] = None  # as the OpenAI API: null on every chunk but the last
        return f"data: {json.dumps({**body, **extra})}\n\n"

    for c in choices:
        i = c["index"]
        yield chunk([{"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}])
        if c["message"]["content"]:
            yield chunk([{"index": i, "delta": {"content": c["message"]["content"]}, "logprobs": c["logprobs"],
                          "finish_reason": None}])
        yield chunk([{"index": i, "delta": {}, "logprobs": None, "finish_reason": c["finish_reason"]}])
    if include_usage:
        yield chunk([], usage=usage)
    yield "data: [DONE]\n\n"


def serve(policy: Policy, config: ServeConfig | None = None, log_level: str = "info") -> None:
    """Serve ``policy`` until interrupted (blocking)."""
    import uvicorn

    config = config or ServeConfig()
    uvicorn.run(create_app(policy, config), host=config.host, port=config.port, log_level=log_level)


__all__ = ["MicroBatcher", "ServeConfig", "create_app", "serve"]
