"""Every method's training data on a fixed, hand-written batch of episodes, checked against values
computed by hand: which attempts become examples, their weights / advantages / KL coefficients,
and the exact conditioning text. No model and no sampling: the episodes are literals."""

from __future__ import annotations

import math

import pytest

from agentloop.types import Episode, EpisodeError, Message, Turn, assistant, user

Q = {"a": "Question a: what is 12 + 7?", "b": "Question b: what is 3 - 5?"}
RETRY = "Try again."


def turn(task: str, index: int, action: str, reward: float, history: tuple[str, ...] = (), feedback: str = "",
         **extra) -> Turn:
    """Attempt ``index`` at ``task`` after the earlier actions ``history`` (each followed by RETRY)."""
    obs: list[Message] = [user(Q[task])]
    for prev in history:
        obs += [assistant(prev), user(RETRY)]
    return Turn(index=index, attempt=index, observation=tuple(obs), action=action, reward=reward,
                success=reward >= 1.0, info={"feedback": feedback} if feedback else {}, **extra)


def episode(task: str, *attempts: tuple[str, float], feedback: tuple[str, ...] = (), error: bool = False,
            eid: str = "") -> Episode:
    turns, history = [], []
    for i, (action, reward) in enumerate(attempts):
        turns.append(turn(task, i, action, reward, tuple(history), feedback[i] if i < len(feedback) else ""))
        history.append(action)
    err = EpisodeError(stage="step", type="RuntimeError", message="boom") if error else None
    return Episode(id=eid or f"{task}-{len(attempts)}-{attempts[0][0]}", env_id="toy", task_id=task,
                   turns=tuple(turns), error=err)


def reply(example) -> str:
    return example.trained_text.split("<|im_end|>")[0]


def context_messages_text(example) -> str:
    return "".join(s.text for s in example.segments if not s.train)


# -- RISE -----------------------------------------------------------------------------------------

RISE_BATCH = [
    episode("a", ("20", 0.0), ("18", 0.0), ("19", 1.0)),
    episode("a", ("19", 1.0)),
    episode("b", ("2", 0.0), ("-2", 1.0)),
    episode("b", ("-3", 0.5), ("8", 0.0)),  # a partial reward, then worse
]


def _rwr(rewards: list[float], tau: float = 0.4) -> list[float]:
    raw = [math.exp(r / tau) for r in rewards]
    mean = sum(raw) / len(raw)
    return [x / mean for x in raw]


@pytest.mark.parametrize("filt, kept", [
    # (task, attempt reply, reward) in the order examples are built: per task, episode order, turn order
    ("all", [("a", "20", 0.0), ("a", "18", 0.0), ("a", "19", 1.0), ("a", "19", 1.0),
             ("b", "2", 0.0), ("b", "-2", 1.0), ("b", "-3", 0.5), ("b", "8", 0.0)]),
    ("better", [("a", "19", 1.0), ("a", "19", 1.0), ("b", "-2", 1.0), ("b", "-3", 0.5)]),
    ("best", [("a", "19", 1.0), ("a", "19", 1.0), ("b", "-2", 1.0)]),
    ("success", [("a", "19", 1.0), ("a", "19", 1.0), ("b", "-2", 1.0)]),
])
def test_rise_examples_and_weights(tokenizer, filt, kept):
    from agentloop.algorithms.rise import RISE, RISEConfig

    exs = RISE(RISEConfig(filter=filt, tau=0.4)).examples(RISE_BATCH, tokenizer)
    assert [(e.group, reply(e)) for e in exs] == [(t, a) for t, a, _ in kept]
    want = _rwr([r for _, _, r in kept])
    assert [e.weight for e in exs] == pytest.approx(want, rel=1e-6)
    if filt == "all":
        # hand values: exp(r / 0.4) = 1, 12.1825, 3.4903 for r = 0, 1, 0.5; their mean over the 8 is 5.50473
        assert exs[0].weight == pytest.approx(0.181662, rel=1e-4)
        assert exs[2].weight == pytest.approx(2.213095, rel=1e-4)
        assert exs[6].weight == pytest.approx(0.634063, rel=1e-4)
    # only the final attempt is trained; earlier attempts and the feedback are context
    if filt in ("all", "better"):
        third = next(e for e in exs if reply(e) == "19" and "18" in context_messages_text(e))
        assert "20" in context_messages_text(third) and RETRY in context_messages_text(third)


# -- SCoRe ----------------------------------------------------------------------------------------

SCORE_BATCH = [
    episode("a", ("20", 0.0), ("19", 1.0)),      # 0 -> 1
    episode("a", ("19", 1.0), ("19", 1.0)),      # 1 -> 1
    episode("a", ("20", 0.0), ("21", 0.0)),      # 0 -> 0
    episode("b", ("-2", 1.0), ("2", 0.0)),       # 1 -> 0
    episode("b", ("2", 0.0), ("-2", 1.0)),       # 0 -> 1
    episode("b", ("2", 0.0)),                    # one attempt only: no pair, skipped
    episode("a", ("1", 0.0), ("2", 0.0), error=True),  # errored: skipped
]


@pytest.mark.parametrize("stage, adv1, adv2, kl1", [
    # Stage I: R1 = 0 (no advantage), R2 = r2; RLOO within each task: a: [1, 1, 0], b: [0, 1]
    (1, [0.0, 0.0, 0.0, 0.0, 0.0], [0.5, 0.5, -1.0, -1.0, 1.0], 0.25),
    # Stage II (alpha 10): R1 = r1: a [0, 1, 0] -> [-0.5, 1, -0.5], b [1, 0] -> [1, -1];
    # R2 = r2 + 10 (r2 - r1): a [11, 1, 0] -> [10.5, -4.5, -6], b [-10, 11] -> [-21, 21]
    (2, [-0.5, 1.0, -0.5, 1.0, -1.0], [10.5, -4.5, -6.0, -21.0, 21.0], 0.01),
])
def test_score_rewards_advantages_and_kl(tokenizer, stage, adv1, adv2, kl1):
    from agentloop.algorithms.score import SCoReConfig, score_examples

    cfg = SCoReConfig(alpha=10.0, beta1=0.01, beta2=0.25)
    exs = score_examples(SCORE_BATCH, tokenizer, cfg, stage=stage)
    first = [e for e in exs if e.meta["attempt"] == 1]
    second = [e for e in exs if e.meta["attempt"] == 2]
    assert [e.group for e in first] == ["a", "a", "a", "b", "b"]
    assert [e.weight for e in first] == pytest.approx(adv1)
    assert [e.weight for e in second] == pytest.approx(adv2)
    assert all(e.kl_coef == kl1 for e in first) and all(e.kl_coef == 0.01 for e in second)
    # attempt 2 is trained on its own reply, with attempt 1 and the retry instruction as context
    assert reply(second[3]) == "2" and "-2" in context_messages_text(second[3])
    assert reply(first[3]) == "-2" and RETRY not in context_messages_text(first[3])


# -- LeTI -----------------------------------------------------------------------------------------

def test_leti_reward_tokens_and_feedback_block(tokenizer):
    import copy

    from agentloop.algorithms.leti import BAD, FEEDBACK_CLOSE, FEEDBACK_OPEN, GOOD, LeTI, LeTIConfig, add_reward_tokens

    tok = copy.deepcopy(tokenizer)
    batch = [episode("a", ("19", 1.0), feedback=("All tests passed.",)),
             episode("b", ("2", 0.0), feedback=("AssertionError: expected -2, got 2",)),
             episode("b", ("x", 0.0)),  # a failure with no feedback text
             episode("a", ("19", 1.0), error=True)]
    algo = LeTI(LeTIConfig(max_feedback_chars=12))
    add_reward_tokens(tok)
    exs = algo.examples(batch, tok)
    assert len(exs) == 3  # the errored episode is not data
    users = [e.text.split("<|im_start|>user\n")[1].split("<|im_end|>")[0] for e in exs]
    # success: <|good|> only; failure: <|bad|> and the last 12 characters of the feedback; no text: <|bad|> only
    assert users == [GOOD + Q["a"], f"{BAD}{FEEDBACK_OPEN}ed -2, got 2{FEEDBACK_CLOSE}{Q['b']}", BAD + Q["b"]]
    assert [e.meta["success"] for e in exs] == [True, False, False]
    assert all(e.weight == 1.0 and all(s.train for s in e.segments) for e in exs)
    # binary ablation: reward token only
    binary = LeTI(LeTIConfig(textual_feedback=False)).examples(batch, tok)
    assert [b.text.split("<|im_start|>user\n")[1].split("<|im_end|>")[0] for b in binary] == \
        [GOOD + Q["a"], BAD + Q["b"], BAD + Q["b"]]
    # the conditioning at inference is <|good|>
    assert algo.condition([user(Q["a"])])[0].content == GOOD + Q["a"]


# -- rejection-sampling SFT -----------------------------------------------------------------------

def test_rs_sft_filter(tokenizer):
    from agentloop.algorithms.rs_sft import RejectionSamplingSFT, RSSFTConfig

    batch = [episode("a", ("19", 1.0), eid="1"), episode("a", (" 19 ", 1.0), eid="2"),  # duplicate after strip
             episode("a", ("12 + 7 = 19", 1.0), eid="3"), episode("a", ("Answer: 19", 1.0), eid="4"),  # over max
             episode("a", ("20", 0.0), eid="5"), episode("b", ("-2", 1.0), error=True, eid="6"),
             episode("b", ("2", 0.0), eid="7"), episode("b", ("-2", 1.0), eid="8")]
    exs = RejectionSamplingSFT(RSSFTConfig(max_per_task=2)).examples(batch, tokenizer)
    assert [(e.group, e.meta["episode"], reply(e)) for e in exs] == [("a", "1", "19"), ("a", "3", "12 + 7 = 19"),
                                                                     ("b", "8", "-2")]
    assert all(e.weight == 1.0 and Q[e.group] in context_messages_text(e) for e in exs)


# -- critique-in-the-loop -------------------------------------------------------------------------

def test_critique_loop_selection(tokenizer):
    from agentloop.algorithms.critique_loop import CritiqueLoop, CritiqueLoopConfig

    batch = [
        episode("a", ("Answer: 19", 1.0)),                                    # right first time: kept as is
        episode("a", ("Answer: 20", 0.0), ("12 + 7 = 19\nAnswer: 19", 1.0)),  # refined with work: kept
        episode("b", ("Answer: 2", 0.0), ("Answer: -2", 1.0)),                # refined, no work: shortcut, dropped
        episode("b", ("Answer: 2", 0.0), ("3 - 5 = -2, so the answer is -2", 1.0)),  # one line with work: kept
        episode("b", ("Answer: 2", 0.0), ("Answer: 8", 0.0)),                 # never right: nothing
        episode("a", ("Answer: 19", 1.0), error=True),                        # errored: nothing
    ]
    exs = CritiqueLoop(CritiqueLoopConfig(min_work_chars=8)).examples(batch, tokenizer)
    assert [(e.group, reply(e), e.meta["refined"]) for e in exs] == [
        ("a", "Answer: 19", False), ("a", "12 + 7 = 19\nAnswer: 19", True),
        ("b", "3 - 5 = -2, so the answer is -2", True)]
    # a refinement is trained as an answer to the original question, without the failed attempt or critique
    refined = exs[1]
    assert "Answer: 20" not in refined.text and RETRY not in refined.text and Q["a"] in refined.text


# -- FAFT -----------------------------------------------------------------------------------------

def test_faft_selection_and_conditioning(tokenizer):
    from agentloop.algorithms.faft import FAFT, FAFTConfig

    batch = [episode("a", ("19", 1.0), feedback=("sum: pass",)),
             episode("b", ("2", 0.0), feedback=("sign: fail, reason:wrong sign",)),
             episode("b", ("8", 0.0)),                  # no feedback text: 'failure'
             episode("a", ("19", 1.0)),                 # no feedback text: 'success'
             episode("a", ("19", 1.0), error=True)]     # errored: skipped
    exs = FAFT(FAFTConfig(success_feedback="sum: pass\nsign: pass")).examples(batch, tokenizer)
    assert [(e.group, reply(e), e.meta["success"]) for e in exs] == [
        ("a", "19", True), ("b", "2", False), ("b", "8", False), ("a", "19", True)]
    users = [e.text.split("<|im_start|>user\n")[1].split("<|im_end|>")[0] for e in exs]
    assert users == [f"{Q['a']}\nfeedback:\nsum: pass", f"{Q['b']}\nfeedback:\nsign: fail, reason:wrong sign",
                     f"{Q['b']}\nfeedback:\nfailure", f"{Q['a']}\nfeedback:\nsuccess"]
    assert all(e.weight == 1.0 for e in exs)
