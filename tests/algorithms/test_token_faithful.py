"""Every method trains the ids its policy sampled (after the prompt ids it was given), not a re-rendering.

Episodes come from the real rollout engine with a scripted policy that records ids as the hf policy
does: the prompt rendered and tokenised at generation time, and a reply sampled as a split the
tokenizer would not make on re-encoding ("ye" + "s", not "yes"), ending with the end-of-turn token
or a stop-string token. On the old re-rendering path none of these examples has the sampled ids.
"""

from __future__ import annotations

import itertools

import pytest

from agentloop.algorithms.base import Collector, TaskSet
from agentloop.policies.chat import encode_chat
from agentloop.training.data import encode_example
from agentloop.types import Completion, Episode, SamplingParams, Turn

from .conftest import YesEnv

PIECES = {"yes": ["ye", "s"], "no": ["n", "o"]}


class TokenRecordingPolicy:
    """Answers from a fixed cycle, reporting the prompt ids and the (non-canonical) sampled ids of each reply."""

    def __init__(self, tokenizer, pattern=("no", "yes", "no", "no", "yes"), teacher: bool = False):
        self.tokenizer, self.cycle = tokenizer, itertools.cycle(pattern)
        self.ends = itertools.cycle([[tokenizer.convert_tokens_to_ids("<|im_end|>")], self._ids("\n\n")])

    def _ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def generate(self, conversations, sampling):
        out = []
        for conv in conversations:
            prompt, _ = encode_chat(self.tokenizer, conv, None, sampling.max_new_tokens)
            for _ in range(sampling.n):
                text = next(self.cycle)
                gen = [t for p in PIECES[text] for t in self._ids(p)] + next(self.ends)
                assert self._ids(text) != gen[:-1 if len(gen) == 3 else -1]  # a split re-encoding would not give
                out.append(Completion(text=text, token_ids=tuple(gen), logprobs=tuple(-1.0 for _ in gen),
                                      prompt_token_ids=tuple(prompt)))
        return out


def _collect(algorithm, tokenizer, critic=None, policy=None) -> list[Episode]:
    specs = algorithm.specs(1, TaskSet(make_env=YesEnv, indices=(0, 1, 2, 3)))
    policy = policy or TokenRecordingPolicy(tokenizer)
    return Collector(policy, SamplingParams(temperature=1.0, return_logprobs=True), critic=critic).collect(specs)


def _turns(episodes) -> list[Turn]:
    return [t for e in episodes for t in e.turns]


def _exact(tokenizer, example, turns) -> Turn:
    """The turn whose prompt ids + sampled ids the example is, exactly, with loss on the sampled ids only."""
    ids, mask, _ = encode_example(tokenizer, example, 4096)
    for t in turns:
        if ids == [*t.prompt_token_ids, *t.token_ids]:
            assert mask == [0] * len(t.prompt_token_ids) + [1] * len(t.token_ids)
            return t
    raise AssertionError(f"example is not any turn's sampled sequence: {tokenizer.decode(ids)!r}")


def _trained_ids(tokenizer, example) -> list[int]:
    ids, mask, _ = encode_example(tokenizer, example, 4096)
    return [i for i, m in zip(ids, mask) if m]


def test_score_trains_each_attempt_as_sampled(tokenizer):
    from agentloop.algorithms.score import SCoRe, SCoReConfig

    algo = SCoRe(SCoReConfig(samples_per_task=2))
    episodes = _collect(algo, tokenizer)
    examples = algo.examples(episodes, tokenizer)
    assert len(examples) == 2 * len(episodes)
    for ex, (ep, turn) in zip(examples, [(e, t) for e in episodes for t in e.turns[:2]]):
        assert _exact(tokenizer, ex, _turns(episodes)) is turn  # attempt 2's context holds attempt 1 as seen then
        assert ex.meta["tokens"] == "sampled"


def test_rs_sft_trains_successful_answers_as_sampled(tokenizer):
    from agentloop.algorithms.rs_sft import RejectionSamplingSFT, RSSFTConfig

    algo = RejectionSamplingSFT(RSSFTConfig(samples_per_task=3))
    episodes = _collect(algo, tokenizer)
    examples = algo.examples(episodes, tokenizer)
    assert examples and all(_exact(tokenizer, ex, _turns(episodes)).success for ex in examples)


def test_rise_trains_rollout_and_best_of_n_turns_as_sampled(tokenizer):
    from agentloop.algorithms.rise import RISE, RISEConfig

    algo = RISE(RISEConfig(max_attempts=2, samples_per_task=1, filter="success", best_of=3))
    tasks = TaskSet(make_env=YesEnv, indices=(0, 1, 2, 3))
    collector = Collector(TokenRecordingPolicy(tokenizer, ("no", "no", "no", "yes", "no", "yes", "no")),
                          SamplingParams(temperature=1.0, return_logprobs=True), max_concurrency=1)
    rollouts = collector.collect(algo.specs(1, tasks))
    branches = collector.collect(algo.branch_specs(1, tasks, rollouts))
    examples = algo.examples([*rollouts, *branches], tokenizer)
    chosen = [_exact(tokenizer, ex, _turns([*rollouts, *branches])) for ex in examples]
    assert chosen and all(t.success for t in chosen)
    assert any(t in _turns(branches) for t in chosen)  # a best-of-N candidate trains its own sampled ids


def test_rise_teacher_turns_carry_no_ids_and_are_rendered(tokenizer):
    from agentloop.algorithms.rise import TurnRoutedPolicy
    from agentloop.training.data import turn_example
    from agentloop.types import assistant, user

    learner = TokenRecordingPolicy(tokenizer, ("no",))
    teacher = TokenRecordingPolicy(tokenizer, ("yes",))
    routed = TurnRoutedPolicy(learner, teacher)
    first = [user("Question 0: is it true?")]
    later = [*first, assistant("no"), user("Try again.")]
    mine, taught = routed.generate([first, later], SamplingParams(temperature=1.0, return_logprobs=True))
    assert mine.token_ids is not None and mine.prompt_token_ids is not None
    assert taught.text == "yes" and taught.token_ids is None and taught.prompt_token_ids is None
    turn = Turn(index=1, observation=tuple(later), action=taught.text)
    assert turn_example(tokenizer, turn).meta["tokens"] == "rendered"


def test_critique_loop_trains_sampled_answer_ids(tokenizer):
    from agentloop.algorithms.critique_loop import CritiqueLoop, CritiqueLoopConfig

    algo = CritiqueLoop(CritiqueLoopConfig(samples_per_task=2, max_attempts=3, min_work_chars=0))
    critic = algo.make_critic(None)
    episodes = _collect(algo, tokenizer, critic=critic)
    examples = algo.examples(episodes, tokenizer)
    assert any(ex.meta["refined"] for ex in examples) and any(not ex.meta["refined"] for ex in examples)
    # Per episode: its first successful answer, as sampled, after the original question's prompt ids (for a
    # refinement that is a context the policy did not see then; the reply keeps its sampled ids).
    want = []
    for ep in [e for e in episodes if any(t.success for t in e.turns)]:
        turn = next(t for t in ep.turns if t.success)
        want.append([*ep.turns[0].prompt_token_ids, *turn.token_ids])
        if turn.index > 0:
            assert list(turn.prompt_token_ids[: len(ep.turns[0].prompt_token_ids)]) == \
                list(ep.turns[0].prompt_token_ids)  # ...while the policy saw the critique after it
    assert [encode_example(tokenizer, ex, 4096)[0] for ex in examples] == want
    assert all(_trained_ids(tokenizer, ex) == w[-len(_trained_ids(tokenizer, ex)):] for ex, w in zip(examples, want))


@pytest.mark.parametrize("method", ["faft", "leti"])
def test_relabelling_methods_train_the_sampled_reply_ids(tokenizer, method):
    import copy

    tokenizer = copy.deepcopy(tokenizer)
    if method == "faft":
        from agentloop.algorithms.faft import FAFT, FAFTConfig

        algo = FAFT(FAFTConfig(samples_per_task=2, success_feedback="all checks pass"))
    else:
        from agentloop.algorithms.leti import LeTI, LeTIConfig

        algo = LeTI(LeTIConfig(samples_per_task=2))
        algo.setup(None, tokenizer)
    episodes = _collect(algo, tokenizer)
    examples = algo.examples(episodes, tokenizer)
    assert len(examples) == len(episodes)
    for ex, ep in zip(examples, episodes):
        ids, mask, _ = encode_example(tokenizer, ex, 4096)
        gen = list(ep.turns[0].token_ids)
        assert ids[-len(gen):] == gen and all(mask[-len(gen):]) and ex.meta["tokens"] == "sampled_reply"
        if method == "faft":  # only the reply is trained; the relabelled context is rendered
            assert _trained_ids(tokenizer, ex) == gen
