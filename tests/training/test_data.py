"""Loss masks: which tokens of a chat example carry loss."""

from __future__ import annotations

from agentloop.training.data import Segment, TrainExample, chat_example, encode_example
from agentloop.types import assistant, user


def test_chat_example_trains_only_last_reply(tokenizer):
    ex = chat_example(tokenizer, [user("What is 2+2?"), assistant("5"), user("Wrong, try again."), assistant("4")])
    trained = [s.text for s in ex.segments if s.train]
    assert len(trained) == 1 and trained[0].startswith("4")
    assert "5" in ex.segments[0].text and "try again" in ex.segments[0].text  # earlier turns are context
    ids, mask, cut = encode_example(tokenizer, ex, 512)
    assert not cut and len(ids) == len(mask)
    assert tokenizer.decode([i for i, m in zip(ids, mask) if m]).startswith("4<|im_end|>")


def test_chat_example_all_and_none(tokenizer):
    msgs = [user("q"), assistant("a1"), user("f"), assistant("a2")]
    all_ = chat_example(tokenizer, msgs, train="all")
    assert [s.text.split("<|im_end|>")[0] for s in all_.segments if s.train] == ["a1", "a2"]
    assert not any(s.train for s in chat_example(tokenizer, msgs, train="none").segments)
    assert all_.text == tokenizer.apply_chat_template([m.to_openai() for m in msgs], tokenize=False)


def test_encode_truncates_from_the_left(tokenizer):
    ex = TrainExample(segments=(Segment(text="context " * 50), Segment(text="reply", train=True)))
    ids, mask, cut = encode_example(tokenizer, ex, 8)
    assert cut and len(ids) == 8 and mask[-1] == 1 and mask[0] == 0


def test_encode_cuts_cut_first_segments_before_anything_else(tokenizer):
    ex = TrainExample(segments=(Segment(text="header "), Segment(text="<KEEP>", cut="never"),
                                Segment(text=" noise" * 60 + " tail", cut="first"), Segment(text=" reply", train=True)))
    ids, mask, cut = encode_example(tokenizer, ex, 16)
    text = tokenizer.decode(ids)
    assert cut and len(ids) == 16
    assert text.startswith("header <KEEP>") and text.endswith(" tail reply")  # the cuttable middle keeps its end
    assert mask[-1] == 1 and sum(mask) == len(tokenizer(" reply", add_special_tokens=False)["input_ids"])


def test_encode_never_cuts_pinned_segments(tokenizer):
    ex = TrainExample(segments=(Segment(text="context " * 40), Segment(text="<PIN>", cut="never"),
                                Segment(text=" more context" * 40), Segment(text=" reply", train=True)))
    ids, mask, cut = encode_example(tokenizer, ex, 12)
    text = tokenizer.decode(ids)
    assert cut and len(ids) == 12 and text.startswith("<PIN>") and text.endswith(" reply")
    # nothing pinned: the old rule, keep the end
    plain = TrainExample(segments=(Segment(text="context " * 40), Segment(text=" reply", train=True)))
    ids2, _, _ = encode_example(tokenizer, plain, 12)
    assert tokenizer.decode(ids2).endswith(" reply") and len(ids2) == 12


def test_without_a_chat_template_training_renders_what_generation_prompted(tokenizer):
    """A base model's tokenizer (no template): the context is generation's prompt, the trained text the reply + EOS."""
    import copy

    from agentloop.policies.chat import render_chat

    base = copy.deepcopy(tokenizer)
    base.chat_template = None
    first, reply = " 5", " 4"  # replies as generated after the prompt "assistant:" (BPE puts the space in them)
    convo = [user("What is 2+2?"), assistant(first), user("Wrong, try again.")]
    ex = chat_example(base, [*convo, assistant(reply)])
    context = "".join(s.text for s in ex.segments if not s.train)
    trained = [s.text for s in ex.segments if s.train]
    assert context.startswith(render_chat(base, convo))  # exactly the prompt the policy generated the reply from
    assert trained == [reply + base.eos_token + "\n"]
    assert ex.text.startswith(render_chat(base, convo) + reply)
    ids, mask, _ = encode_example(base, ex, 512)
    assert base.eos_token_id in [i for i, m in zip(ids, mask) if m]  # the stop is trained as a token
