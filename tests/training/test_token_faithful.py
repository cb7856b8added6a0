"""Token-faithful examples: a sampled reply trains its sampled ids after the prompt ids it was sampled from."""

from __future__ import annotations

from agentloop.policies.chat import encode_chat
from agentloop.training.data import (
    Segment,
    TrainExample,
    chat_example,
    encode_example,
    reply_example,
    turn_example,
)
from agentloop.types import Turn, assistant, user


def _ids(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def sampled_turn(tokenizer, observation, pieces: list[str], end: str = "\n\n", index: int = 0) -> Turn:
    """A turn as a policy records it: the generation-time prompt ids, and a reply sampled piece by piece
    (a split the tokenizer would not make: "hel" + "lo", not "hello") ending with the stop-string token."""
    prompt, _ = encode_chat(tokenizer, observation, None, 0)
    gen = [t for p in pieces for t in _ids(tokenizer, p)] + _ids(tokenizer, end)
    return Turn(index=index, observation=tuple(observation), action="".join(pieces), token_ids=tuple(gen),
                logprobs=tuple(-0.5 for _ in gen), prompt_token_ids=tuple(prompt))


def test_a_sampled_reply_trains_exactly_its_ids_after_its_prompt_ids(tokenizer):
    obs = [user("Say hello."), assistant("hi"), user("The answer is incorrect. Please try again.")]
    turn = sampled_turn(tokenizer, obs, ["hel", "lo"], index=1)
    ex = turn_example(tokenizer, turn, weight=0.5, group="t0", attempt=2)
    ids, mask, cut = encode_example(tokenizer, ex, 512)
    assert ids == [*turn.prompt_token_ids, *turn.token_ids] and not cut
    assert mask == [0] * len(turn.prompt_token_ids) + [1] * len(turn.token_ids)
    assert ex.weight == 0.5 and ex.group == "t0" and ex.meta == {"attempt": 2, "tokens": "sampled"}
    # Re-rendering the same turn trains other tokens: "hello" re-tokenised as one id, the stop token gone,
    # the template's end-of-turn and newline added.
    r_ids, r_mask, _ = encode_example(tokenizer, chat_example(tokenizer, [*obs, assistant(turn.action)]), 512)
    assert [i for i, m in zip(r_ids, r_mask) if m] != list(turn.token_ids)
    assert r_ids[: len(turn.prompt_token_ids)] == list(turn.prompt_token_ids)  # the context renders the same here


def test_a_turn_without_ids_is_rendered(tokenizer):
    obs = [user("Say hello.")]
    turn = Turn(index=0, observation=tuple(obs), action="hello")
    ex = turn_example(tokenizer, turn)
    assert ex.meta["tokens"] == "rendered"
    assert encode_example(tokenizer, ex, 512) == encode_example(tokenizer, chat_example(tokenizer, [*obs,
                                                                assistant("hello")]), 512)


def test_a_relabelled_context_is_rendered_and_the_reply_keeps_its_sampled_ids(tokenizer):
    obs = [user("Say hello.")]
    turn = sampled_turn(tokenizer, obs, ["hel", "lo"])
    context = [user("Say hello.\nfeedback:\nall checks pass")]
    ex = reply_example(tokenizer, context, turn, group="t1")
    ids, mask, _ = encode_example(tokenizer, ex, 512)
    head, _ = encode_chat(tokenizer, context, None, 0)
    assert ids == [*head, *turn.token_ids] and mask == [0] * len(head) + [1] * len(turn.token_ids)
    assert ex.meta["tokens"] == "sampled_reply"


def test_sampled_ids_are_cut_from_the_left_and_survive_json(tokenizer):
    turn = sampled_turn(tokenizer, [user("word " * 40)], ["hel", "lo"])
    ex = turn_example(tokenizer, turn)
    ids, mask, cut = encode_example(tokenizer, ex, 12)
    assert cut and ids == [*turn.prompt_token_ids, *turn.token_ids][-12:] and mask[-len(turn.token_ids):] == [1] * 3
    again = TrainExample.model_validate_json(ex.model_dump_json())  # how examples reach DDP processes
    assert encode_example(tokenizer, again, 512) == encode_example(tokenizer, ex, 512)


def test_an_id_segment_is_never_retokenised(tokenizer):
    ex = TrainExample(segments=(Segment(text="a"), Segment(text="hello", ids=tuple(_ids(tokenizer, "hel") +
                                                                                   _ids(tokenizer, "lo")))))
    ids, _, _ = encode_example(tokenizer, ex, 64)
    assert ids == _ids(tokenizer, "a") + _ids(tokenizer, "hel") + _ids(tokenizer, "lo")


def test_a_reply_cut_inside_a_character_keeps_its_byte_tokens(tokenizer):
    """A reply stopped by max_new_tokens in the middle of a multi-byte character decodes to U+FFFD, which
    re-tokenises to another id: rendering would train a token the policy never sampled."""
    obs = [user("Draw a smiley.")]
    prompt, _ = encode_chat(tokenizer, obs, None, 0)
    smiley = _ids(tokenizer, "Sure: \U0001F600")
    gen = tuple(smiley[:-1])  # the last byte of the emoji was never generated
    text = tokenizer.decode(list(gen), skip_special_tokens=True)
    assert _ids(tokenizer, text) != list(gen)
    turn = Turn(index=0, observation=tuple(obs), action=text, token_ids=gen, prompt_token_ids=tuple(prompt))
    ids, mask, _ = encode_example(tokenizer, turn_example(tokenizer, turn), 512)
    assert ids == [*prompt, *gen] and sum(mask) == len(gen)
