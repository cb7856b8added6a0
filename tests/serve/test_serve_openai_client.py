"""`agentloop serve` with the official `openai` client, sync and async, over real HTTP on 127.0.0.1.

A tiny random Llama (with the default model's tokenizer) serves, so the token counts are real:
``usage`` must equal the lengths of the prompt and completion ids the policy itself reports.
Streaming must give the same text as the plain request, through the client's own SSE parser.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from agentloop.policies.scripted import ScriptedPolicy
from agentloop.serve import ServeConfig, create_app
from agentloop.types import SamplingParams, user
from tests.policies.conftest import ThreadServer

openai = pytest.importorskip("openai")
pytest.importorskip("torch")
pytestmark = pytest.mark.timeout(300)

MESSAGES = [{"role": "user", "content": "What is 2 + 2?"}]


@pytest.fixture(scope="module")
def tiny_policy(tiny_model_dir):
    from agentloop.policies.hf import HFPolicy

    return HFPolicy(model=tiny_model_dir, device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def url(tiny_policy) -> Iterator[str]:
    with ThreadServer(create_app(tiny_policy, ServeConfig(model_name="tiny"))) as srv:
        yield srv.base_url


def _expected(policy, max_tokens: int, n: int = 1) -> tuple[list[str], dict[str, int]]:
    """Greedy texts and the usage the policy's own token ids give (the prompt once, every choice's tokens)."""
    out = policy.generate([[user(MESSAGES[0]["content"])]], SamplingParams(max_new_tokens=max_tokens, n=n,
                                                                          return_logprobs=True))
    prompt, generated = len(out[0].prompt_token_ids), sum(len(c.token_ids) for c in out)
    assert prompt > 5 and generated > 0
    return [c.text for c in out], {"prompt_tokens": prompt, "completion_tokens": generated,
                                   "total_tokens": prompt + generated}


def test_sync_client_gets_real_usage_and_the_same_text_streamed(url, tiny_policy):
    texts, usage = _expected(tiny_policy, 6)
    client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0)
    plain = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=6, temperature=0)
    assert plain.choices[0].message.content == texts[0]
    assert plain.usage.model_dump(include=set(usage)) == usage

    stream = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=6, temperature=0,
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == texts[0]
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == \
        [plain.choices[0].finish_reason]
    assert all(c.usage is None for c in chunks[:-1])  # usage comes once, last, with no choices
    assert chunks[-1].choices == [] and chunks[-1].usage.model_dump(include=set(usage)) == usage

    no_usage = list(client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=6, temperature=0,
                                                   stream=True))
    assert all(c.choices and c.usage is None for c in no_usage)  # not asked: no usage chunk


def test_async_client_streams_several_choices_with_usage(url, tiny_policy):
    texts, usage = _expected(tiny_policy, 5, n=2)

    async def run() -> tuple[object, dict[int, str], object]:
        client = openai.AsyncOpenAI(base_url=url, api_key="unused", max_retries=0)
        plain = await client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=5, temperature=0,
                                                     n=2)
        parts: dict[int, str] = {0: "", 1: ""}
        last = None
        async for chunk in await client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=5,
                                                                temperature=0, n=2, stream=True,
                                                                stream_options={"include_usage": True}):
            for choice in chunk.choices:
                parts[choice.index] += choice.delta.content or ""
            last = chunk
        await client.close()
        return plain, parts, last

    plain, parts, last = asyncio.run(run())
    assert [c.message.content for c in plain.choices] == texts
    assert plain.usage.model_dump(include=set(usage)) == usage
    assert [parts[0], parts[1]] == texts
    assert last.usage.model_dump(include=set(usage)) == usage


def test_logprobs_stream_only_when_asked_and_a_policy_without_token_ids_reports_no_usage():
    with ThreadServer(create_app(ScriptedPolicy(["pong"]), ServeConfig(model_name="s"))) as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key="unused", max_retries=0)
        plain = client.chat.completions.create(model="s", messages=MESSAGES)
        assert plain.choices[0].message.content == "pong" and plain.usage is None  # nothing made up
        chunks = list(client.chat.completions.create(model="s", messages=MESSAGES, stream=True,
                                                     stream_options={"include_usage": True}))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "pong"
        assert chunks[-1].choices == [] and chunks[-1].usage is None


def test_streamed_logprobs_match_the_plain_ones(url):
    client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0)
    plain = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=4, temperature=0, logprobs=True)
    chunks = list(client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=4, temperature=0,
                                                 logprobs=True, stream=True))
    streamed = [t for c in chunks if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content]
    assert [t.logprob for t in streamed] == [t.logprob for t in plain.choices[0].logprobs.content]
    without = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=4, temperature=0)
    assert without.choices[0].logprobs is None
