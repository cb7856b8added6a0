"""One iteration of each method on a toy setup moves the model the way the method says.

Episodes come from the real rollout engine (a scripted policy answering 'yes' or 'no' in a toy
environment where 'yes' is right); examples come from each algorithm; a tiny random Llama trains
one phase; we check the log-probability of the rewarded reply went up relative to the other.
"""

from __future__ import annotations

import copy
import itertools

import pytest
import torch

from agentloop.algorithms.base import Collector, TaskSet
from agentloop.env import Verdict
from agentloop.training.data import chat_example
from agentloop.training.trainer import TrainConfig, Trainer
from agentloop.types import SamplingParams, assistant, user

from .conftest import AlternatingPolicy, YesEnv


def _collect(algorithm, iteration: int = 1, critic=None):
    specs = algorithm.specs(iteration, TaskSet(make_env=YesEnv, indices=(0, 1, 2, 3)))
    policy = AlternatingPolicy()
    return Collector(policy, SamplingParams(temperature=1.0), critic=critic).collect(specs)


def _logp(trainer: Trainer, messages) -> float:
    ex = chat_example(trainer.tokenizer, messages)
    batch = trainer.collate([ex])
    with torch.no_grad():
        lp = trainer._logp(trainer.model, batch["input_ids"], batch["attention_mask"])
    return float((lp * batch["loss_mask"]).sum())


def _margin(trainer: Trainer, prompt) -> float:
    """log p(yes | prompt) - log p(no | prompt)."""
    return _logp(trainer, [*prompt, assistant("yes")]) - _logp(trainer, [*prompt, assistant("no")])


def _train(tiny_model, tokenizer, algorithm, episodes, lr=3e-3, epochs=3):
    trainer = Trainer(tiny_model, tokenizer, TrainConfig(lr=lr, batch_size=8, epochs=epochs, dtype="float32"))
    algorithm.setup(trainer.model, tokenizer)
    prompt = [algorithm.condition([user("Question 0: is it true?")])][0]
    before = _margin(trainer, prompt)
    examples = algorithm.examples(episodes, tokenizer)
    assert examples, "the algorithm built no training examples"
    trainer.fit(examples, algorithm.objective)
    return before, _margin(trainer, prompt), examples


def test_rs_sft_raises_successful_answer(tiny_model, tokenizer):
    from agentloop.algorithms.rs_sft import RejectionSamplingSFT, RSSFTConfig

    algo = RejectionSamplingSFT(RSSFTConfig(samples_per_task=3))
    episodes = _collect(algo)
    before, after, examples = _train(tiny_model, tokenizer, algo, episodes)
    assert all(ex.trained_text.startswith("yes") for ex in examples)
    assert after > before


def test_rise_weights_and_direction(tiny_model, tokenizer):
    from agentloop.algorithms.rise import RISE, RISEConfig

    algo = RISE(RISEConfig(max_attempts=3, samples_per_task=2, filter="all"))
    episodes = _collect(algo)
    assert any(len(e.turns) > 1 for e in episodes)
    second = next(e for e in episodes if len(e.turns) > 1).turns[1].observation[-1].content
    assert second.startswith("The answer is incorrect. Please try again. Here's the question: Question")
    before, after, examples = _train(tiny_model, tokenizer, algo, episodes)
    heavy = {ex.trained_text.split("<")[0] for ex in examples if ex.weight > 1}
    light = {ex.trained_text.split("<")[0] for ex in examples if ex.weight < 1}
    assert heavy == {"yes"} and light == {"no"}
    assert after > before


def test_rise_eval_settings_give_no_oracle_multi_attempt_evaluation():
    from agentloop.algorithms.rise import RISE, RISEConfig
    from agentloop.wrappers import MultiAttempt

    algo = RISE(RISEConfig(max_attempts=3, feedback_template="Wrong. Again: {question}"))
    settings = algo.eval_attempt_settings()
    assert settings["stop_on_success"] is False
    env = MultiAttempt(YesEnv(), max_attempts=3, **settings)
    obs, _ = env.reset(options={"index": 1})
    # a correct first answer neither ends the episode nor is revealed: RISE's own text follows every attempt
    obs, reward, terminated, _, _ = env.step("yes")
    assert reward == 1.0 and not terminated
    assert obs[-1].content == "Wrong. Again: Question 1: is it true?"
    obs, reward, terminated, _, _ = env.step("no")
    assert reward == 0.0 and not terminated and obs[-1].content == "Wrong. Again: Question 1: is it true?"
    _, _, terminated, _, _ = env.step("yes")
    assert terminated
    # the same text the training episodes use after a wrong attempt
    assert RISE(RISEConfig()).eval_attempt_settings()["none_template"] == RISEConfig().feedback_template


def test_rise_no_oracle_collection_plays_as_evaluation_and_keeps_right_turns():
    """collection: no_oracle: the text follows a right first answer too, the episode goes on, and the success
    filter keeps first-attempt successes, kept right answers (c->c) and corrections (i->c), never c->i."""
    from agentloop.algorithms.rise import RISE, RISEConfig, rise_training_pairs
    algo = RISE(RISEConfig(max_attempts=2, collection="no_oracle", filter="success"))
    env = algo.train_env(lambda: YesEnv())()
    obs, _ = env.reset(options={"index": 1})
    obs, reward, terminated, _, _ = env.step("yes")
    assert reward == 1.0 and not terminated  # the oracle collection would stop here
    assert obs[-1].content == RISEConfig().feedback_template.format(question="Question 1: is it true?")
    oracle = RISE(RISEConfig(max_attempts=2)).train_env(lambda: YesEnv())()
    oracle.reset(options={"index": 1})
    assert oracle.step("yes")[2]  # stops at the first success

    from agentloop.policies.scripted import ScriptedPolicy
    from agentloop.rollout import Job, rollout

    scripts = {"cc": ["yes", "yes"], "ci": ["yes", "no"], "ic": ["no", "yes"], "ii": ["no", "no"]}
    episodes = []
    for name, replies in scripts.items():
        [ep] = rollout([Job(env=algo.train_env(lambda: YesEnv()), seed=0)], ScriptedPolicy(replies))
        assert len(ep.turns) == 2 and ep.error is None, name
        episodes.append(ep.model_copy(update={"task_id": name}))
    kept = [(task, len([m for m in ctx if m.role == "assistant"]) + 1, a)
            for ctx, a, _, task in rise_training_pairs(episodes, "success")]
    assert sorted(kept) == [("cc", 1, "yes"), ("cc", 2, "yes"), ("ci", 1, "yes"), ("ic", 2, "yes")]


def test_rise_env_collection_plays_the_env_protocol():
    """collection: env: after a wrong attempt the environment's own feedback (the `env` evaluation protocol's
    text), stop at the first success; a right first answer ends the episode."""
    from agentloop.algorithms.rise import RISE, RISEConfig
    from agentloop.evaluation.protocols import EvalProtocol
    from agentloop.wrappers import MultiAttempt

    algo = RISE(RISEConfig(max_attempts=3, collection="env", filter="success"))
    env = algo.train_env(lambda: YesEnv())()
    reference = MultiAttempt(YesEnv(), max_attempts=3, **EvalProtocol.parse("env").attempt_kwargs())
    obs, _ = env.reset(options={"index": 1})
    ref_obs, _ = reference.reset(options={"index": 1})
    obs, reward, terminated, _, _ = env.step("no")
    ref_obs, *_ = reference.step("no")
    assert reward == 0.0 and not terminated
    assert obs[-1].content == ref_obs[-1].content  # the env protocol's text, not RISE's
    assert obs[-1].content != RISEConfig().feedback_template.format(question="Question 1: is it true?")
    _, reward, terminated, _, _ = env.step("yes")
    assert reward == 1.0 and terminated  # oracle-stopped
    first = algo.train_env(lambda: YesEnv())()
    first.reset(options={"index": 1})
    assert first.step("yes")[2]

    class RevealEnv(YesEnv):  # an environment with answer-revealing feedback
        def verify(self, task, action):
            return super().verify(task, action).model_copy(update={"oracle_feedback": "The answer is yes."})

    reveal = RISE(RISEConfig(max_attempts=2, collection="reveal")).train_env(RevealEnv)()
    reveal.reset(options={"index": 1})
    obs, _, terminated, _, _ = reveal.step("no")
    assert "The answer is yes." in obs[-1].content and not terminated
    assert reveal.step("yes")[2]


def test_rise_rationalization_trains_revealed_corrections_after_the_env_feedback(tokenizer):
    """collection: reveal + train_feedback: env: the second attempt is sampled after the answer-revealing
    text and trained after the text the env protocol shows for the same wrong answer (never the answer);
    the trained span is the sampled reply, first attempts keep their own context."""
    import agentloop
    from agentloop.algorithms.rise import RISE, RISEConfig, question_of
    from agentloop.evaluation.protocols import EvalProtocol
    from agentloop.policies.scripted import ScriptedPolicy
    from agentloop.rollout import Job, rollout
    from agentloop.wrappers import MultiAttempt

    def arith():
        return agentloop.make("math/arith-v0", difficulty=6, split="test")

    index = next(i for i in range(50) if arith().get_task(i).answer.startswith("-"))
    gold = arith().get_task(index).answer
    algo = RISE(RISEConfig(max_attempts=2, collection="reveal", train_feedback="env", filter="success"))
    wrong = f"Answer: {gold[1:]}"  # the sign error
    [ep] = rollout([Job(env=algo.train_env(arith), seed=0, options={"index": index})],
                   ScriptedPolicy([wrong, f"Answer: {gold}"]))
    assert [t.success for t in ep.turns] == [False, True]
    assert f"The correct answer is {gold}." in ep.turns[1].observation[-1].content  # collected after the reveal
    # what evaluation under `env` shows after the same wrong answer
    reference = MultiAttempt(arith(), max_attempts=2, **EvalProtocol.parse("env").attempt_kwargs())
    reference.reset(options={"index": index})
    env_text = reference.step(wrong)[0][-1].content
    assert "Its sign is wrong." in env_text and gold not in env_text
    assert question_of(ep.turns[1].observation) == ep.turns[0].observation[-1].content

    examples = algo.examples([ep.model_copy(update={"task_id": "t"})], tokenizer)
    assert len(examples) == 1  # the first attempt failed: only the correction trains
    [ex] = examples
    context = "".join(seg.text for seg in ex.segments if not seg.train)
    assert env_text in context and "The correct answer" not in context
    assert ex.trained_text.startswith(f"Answer: {gold}")
    # the collected context stays with train_feedback: collected
    [kept] = RISE(RISEConfig(max_attempts=2, collection="reveal", filter="success")).examples([ep], tokenizer)
    assert "The correct answer" in "".join(seg.text for seg in kept.segments if not seg.train)
    # question: the correction trains as a first attempt (STaR's rationalization)
    [first] = RISE(RISEConfig(max_attempts=2, collection="reveal", train_feedback="question",
                              filter="success")).examples([ep], tokenizer)
    context = "".join(seg.text for seg in first.segments if not seg.train)
    assert ep.turns[0].observation[-1].content in context and wrong not in context and "incorrect" not in context
    assert first.trained_text.startswith(f"Answer: {gold}")
    with pytest.raises(ValueError, match="train_feedback"):
        RISEConfig(max_attempts=1, train_feedback="env")


def test_rise_filters():
    from agentloop.algorithms.rise import RISE, RISEConfig, rise_training_pairs

    episodes = _collect(RISE(RISEConfig(max_attempts=3, samples_per_task=2)))
    assert {a for _, a, _, _ in rise_training_pairs(episodes, "success")} == {"yes"}
    better = rise_training_pairs(episodes, "better")
    assert all(r == 1.0 for _, _, r, _ in better)
    best = rise_training_pairs(episodes, "best")
    assert all(r == 1.0 for _, _, r, _ in best)
    assert len(rise_training_pairs(episodes, "all")) >= len(best)


def test_rise_first_attempt_weight_scales_or_drops_first_attempt_examples(tokenizer):
    import math

    from agentloop.algorithms.rise import RISE, RISEConfig, is_first_attempt, rise_training_pairs

    episodes = _collect(RISE(RISEConfig(max_attempts=3, samples_per_task=2)))
    pairs = rise_training_pairs(episodes, "all")
    first = [is_first_attempt(ctx) for ctx, _, _, _ in pairs]
    assert any(first) and not all(first)

    def weights(w: float) -> list[float]:
        algo = RISE(RISEConfig(max_attempts=3, samples_per_task=2, filter="all", first_attempt_weight=w))
        return [ex.weight for ex in algo.examples(episodes, tokenizer)]

    # by hand: exp(r / 0.4) over the kept examples, divided by their mean, first attempts times w
    def by_hand(kept: list[tuple[float, bool]], w: float) -> list[float]:
        raw = [math.exp(r / 0.4) for r, _ in kept]
        mean = sum(raw) / len(raw)
        return [x / mean * (w if f else 1.0) for x, (_, f) in zip(raw, kept)]

    kept = [(r, f) for (_, _, r, _), f in zip(pairs, first)]
    assert weights(1.0) == pytest.approx(by_hand(kept, 1.0))
    assert weights(0.25) == pytest.approx(by_hand(kept, 0.25))
    later = [(r, f) for r, f in kept if not f]
    assert weights(0.0) == pytest.approx(by_hand(later, 0.0))  # first attempts dropped, later ones renormalised


def test_rise_first_attempt_weight_needs_a_second_attempt():
    from agentloop.algorithms.rise import RISEConfig

    with pytest.raises(ValueError, match="max_attempts >= 2"):
        RISEConfig(max_attempts=1, first_attempt_weight=0.0)


def test_score_stage2_direction_and_advantages(tiny_model, tokenizer):
    from agentloop.algorithms.score import SCoRe, SCoReConfig

    algo = SCoRe(SCoReConfig(samples_per_task=3, stage1_iterations=0, beta1=0.0))
    episodes = _collect(algo, iteration=1)
    assert all(len(e.turns) == 2 for e in episodes)  # retry mode: always two attempts
    assert episodes[0].turns[1].observation[-1].content == YesEnv.retry_instruction
    before, after, examples = _train(tiny_model, tokenizer, algo, episodes, lr=1e-2)
    # within a prompt the attempt-2 advantages are centred (leave-one-out baseline)
    assert abs(sum(ex.weight for ex in examples if ex.group == "t0" and ex.meta["attempt"] == 2)) < 1e-4
    assert after > before


def test_score_stage1_pins_first_attempt_with_beta2(tokenizer):
    from agentloop.algorithms.score import SCoRe, SCoReConfig, score_examples

    algo = SCoRe(SCoReConfig(samples_per_task=2, beta1=0.01, beta2=0.25))
    episodes = _collect(algo)
    exs = score_examples(episodes, tokenizer, algo.config, stage=1)
    first = [e for e in exs if e.meta["attempt"] == 1]
    assert all(e.weight == 0.0 and e.kl_coef == 0.25 for e in first)
    assert all(e.kl_coef == 0.01 for e in exs if e.meta["attempt"] == 2)


def test_score_stage_follows_the_episodes_iteration(tokenizer):
    """The stage comes from the iteration the episodes were collected for (no state set by specs())."""
    from agentloop.algorithms.score import SCoRe, SCoReConfig

    algo = SCoRe(SCoReConfig(samples_per_task=2, stage1_iterations=1, beta1=0.01, beta2=0.25))
    first, second = _collect(algo, iteration=1), _collect(algo, iteration=2)
    assert algo.episodes_stage(first) == 1 and algo.episodes_stage(second) == 2
    assert algo.episodes_stage([*first, *second]) == 2  # data: union trains older episodes under today's stage
    kl1 = {e.kl_coef for e in algo.examples(first, tokenizer) if e.meta["attempt"] == 1}
    assert kl1 == {0.25}  # stage I: beta2 on attempt 1
    kl2 = {e.kl_coef for e in algo.examples(second, tokenizer) if e.meta["attempt"] == 1}
    assert kl2 == {0.01}  # stage II: beta1 on both attempts
    assert algo.stats(first)["stage"] == 1.0 and algo.stats(second)["stage"] == 2.0


def test_leti_sequences_and_direction(tiny_model, tokenizer):
    from agentloop.algorithms.leti import BAD, FEEDBACK_OPEN, GOOD, LeTI, LeTIConfig

    tokenizer = copy.deepcopy(tokenizer)  # LeTI adds tokens: keep the shared fixture unchanged

    from agentloop.algorithms.leti import leti_conversation

    algo = LeTI(LeTIConfig(samples_per_task=2, textual_feedback=False))
    episodes = _collect(algo)
    trainer = Trainer(tiny_model, tokenizer, TrainConfig(lr=1e-2, batch_size=8, epochs=4, dtype="float32"))
    algo.setup(tiny_model, tokenizer)
    prompt = [user("Question 0: is it true?")]

    def conditioning() -> float:  # how much more <|good|> favours 'yes' over 'no' than <|bad|> does
        return _margin(trainer, leti_conversation(prompt, GOOD)) - _margin(trainer, leti_conversation(prompt, BAD))

    before = conditioning()
    examples = algo.examples(episodes, tokenizer)
    trainer.fit(examples, algo.objective)
    after = conditioning()
    examples = LeTI(LeTIConfig()).examples(episodes, tokenizer)
    assert GOOD in tokenizer.get_vocab() and tiny_model.get_input_embeddings().weight.shape[0] == len(tokenizer)
    good = [ex for ex in examples if ex.meta["success"]]
    bad = [ex for ex in examples if not ex.meta["success"]]
    assert good and bad
    assert all(GOOD in ex.text and FEEDBACK_OPEN not in ex.text for ex in good)
    assert all(f"{BAD}{FEEDBACK_OPEN}NameError" in ex.text for ex in bad)
    assert all(all(s.train for s in ex.segments) for ex in examples)  # LM loss over the whole sequence
    assert after > before


def test_leti_binary_ablation_drops_feedback(tokenizer):
    from agentloop.algorithms.leti import (
        FEEDBACK_OPEN,
        LeTI,
        LeTIConfig,
        add_reward_tokens,
    )

    tokenizer = copy.deepcopy(tokenizer)

    add_reward_tokens(tokenizer)
    algo = LeTI(LeTIConfig(textual_feedback=False))
    exs = algo.examples(_collect(algo), tokenizer)
    assert not any(FEEDBACK_OPEN in ex.text for ex in exs)


def test_leti_regulariser_chunks_are_whole_lines_of_the_source(tmp_path):
    from agentloop.algorithms.leti import regulariser_chunks
    from agentloop.errors import ConfigError

    lines = [f"line {i} " + "x" * (i % 7) + "\n" for i in range(60)]
    (tmp_path / "a.py").write_text("".join(lines[:40]))
    (tmp_path / "b.txt").write_text("".join(lines[40:]))
    (tmp_path / "skip.bin").write_text("not text")
    chunks = regulariser_chunks(str(tmp_path), 64)
    assert all(len(c) <= 64 and c.endswith("\n") for c in chunks)
    assert "".join(chunks) == "".join(lines)  # every line once, in order, file by file
    stdlib = regulariser_chunks("python-stdlib", 1200)
    assert len(stdlib) > 1000 and any("def " in c for c in stdlib)
    with pytest.raises(ConfigError, match="neither 'python-stdlib' nor an existing file"):
        regulariser_chunks(str(tmp_path / "missing"), 64)


def test_leti_regulariser_mixes_general_text_one_to_one_seeded_by_the_episodes(tmp_path, tokenizer):
    from agentloop.algorithms.leti import LeTI, LeTIConfig, add_reward_tokens

    tokenizer = copy.deepcopy(tokenizer)
    add_reward_tokens(tokenizer)
    (tmp_path / "corpus.txt").write_text("".join(f"general text line {i}\n" for i in range(400)))
    episodes = _collect(LeTI(LeTIConfig(samples_per_task=2)))

    def split(cfg: LeTIConfig, eps) -> tuple[list, list]:
        exs = LeTI(cfg).examples(eps, tokenizer)
        return [e for e in exs if not e.meta.get("regulariser")], [e for e in exs if e.meta.get("regulariser")]

    plain, none = split(LeTIConfig(), episodes)
    assert plain and not none
    leti, reg = split(LeTIConfig(regulariser=str(tmp_path), regulariser_chars=80), episodes)
    assert [e.text for e in leti] == [e.text for e in plain]  # the LeTI sequences are unchanged
    assert len(reg) == len(leti)  # 1:1
    assert all(len(e.segments) == 1 and e.segments[0].train and e.text.startswith("general text line") for e in reg)
    again = split(LeTIConfig(regulariser=str(tmp_path), regulariser_chars=80), episodes)[1]
    assert [e.text for e in again] == [e.text for e in reg]  # same episodes (a resumed run): same draw
    other = split(LeTIConfig(regulariser=str(tmp_path), regulariser_chars=80), episodes[1:])[1]
    assert [e.text for e in other] != [e.text for e in reg]
    half = split(LeTIConfig(regulariser=str(tmp_path), regulariser_chars=80, regulariser_ratio=0.5), episodes)[1]
    assert len(half) == round(0.5 * len(leti))


def test_leti_long_traceback_keeps_the_reward_token(tokenizer):
    from agentloop.algorithms.leti import BAD, FEEDBACK_CLOSE, FEEDBACK_OPEN, add_reward_tokens, leti_example
    from agentloop.training.data import encode_example

    tokenizer = copy.deepcopy(tokenizer)
    add_reward_tokens(tokenizer)
    traceback = "Traceback (most recent call last):\n" + "".join(
        f'  File "/tmp/prog.py", line {i}, in f{i}\n    return f{i + 1}(x)\n' for i in range(200)) + \
        "RecursionError: maximum recursion depth exceeded"
    solution = "def f(x):\n    return f(x)\n"
    ex = leti_example(tokenizer, [user("Write f.")], solution, success=False, feedback=traceback,
                      max_feedback_chars=len(traceback))
    ids, mask, cut = encode_example(tokenizer, ex, 256)
    assert cut and len(ids) == 256 and all(mask)
    vocab = tokenizer.get_vocab()
    for token in (BAD, FEEDBACK_OPEN, FEEDBACK_CLOSE):
        assert vocab[token] in ids, f"{token} was cut"
    text = tokenizer.decode(ids)
    assert "RecursionError: maximum recursion depth exceeded" in text  # the feedback keeps its end
    assert text.rstrip().endswith("<|im_end|>") and "return f(x)" in text  # the solution is whole
    assert text.index(BAD) < text.index("Write f.") < text.index("def f(x)")


def test_leti_reward_tokens_are_single_tokens(tokenizer):
    from agentloop.algorithms.leti import GOOD, add_reward_tokens

    tokenizer = copy.deepcopy(tokenizer)

    add_reward_tokens(tokenizer)
    assert add_reward_tokens(tokenizer) == 0  # idempotent
    ids = tokenizer(GOOD + "x", add_special_tokens=False)["input_ids"]
    assert ids[0] == tokenizer.convert_tokens_to_ids(GOOD)


def test_critique_loop_keeps_correct_and_refined(tiny_model, tokenizer):
    from agentloop.algorithms.critique_loop import (
        CritiqueLoop,
        CritiqueLoopConfig,
        shows_work,
    )

    algo = CritiqueLoop(CritiqueLoopConfig(samples_per_task=2, max_attempts=3, min_work_chars=0))
    critic = algo.make_critic(None)
    episodes = _collect(algo, critic=critic)
    assert any(t.critique is not None for e in episodes for t in e.turns)
    before, after, examples = _train(tiny_model, tokenizer, algo, episodes)
    assert {ex.trained_text.split("<")[0] for ex in examples} == {"yes"}
    assert any(ex.meta["refined"] for ex in examples)
    assert after > before
    assert shows_work("12 + 7 = 19\nAnswer: 19", 8) and not shows_work("Answer: 19", 8)


@pytest.mark.parametrize("text, ok", [
    ("Answer: -19", False),               # a signed answer is not working
    ("The answer is -19.", False),
    ("Answer: x = 19", False),            # 'x' the variable, not a product
    ("Final answer (next): 19", False),   # 'x' inside a word
    ("Answer: 19", False),
    ("12 + 7 = 19, so the answer is 19", True),
    ("5 x 3 = 15, so the answer is 15", True),
    ("-12 - 7 = -19, so the answer is -19", True),
    ("20 / 4 = 5, the answer is 5", True),
    ("First add the numbers.\nAnswer: 19", True),  # a line of working beyond the answer line
])
def test_critique_loop_shortcut_check(text, ok):
    from agentloop.algorithms.critique_loop import shows_work

    assert shows_work(text, 8) is ok


def test_faft_trains_on_all_samples_with_feedback(tiny_model, tokenizer):
    from agentloop.algorithms.faft import (
        FAFT,
        FAFTConfig,
        all_success_feedback,
        with_feedback,
    )

    algo = FAFT(FAFTConfig(samples_per_task=2, success_feedback="correct"))
    episodes = _collect(algo)
    trainer = Trainer(tiny_model, tokenizer, TrainConfig(lr=1e-2, batch_size=8, epochs=4, dtype="float32"))
    prompt = [user("Question 0: is it true?")]

    def conditioning() -> float:  # how much more success feedback favours 'yes' than failure feedback does
        return (_margin(trainer, with_feedback(prompt, "correct"))
                - _margin(trainer, with_feedback(prompt, "NameError: 'no' is not it")))

    before = conditioning()
    examples = algo.examples(episodes, tokenizer)
    trainer.fit(examples, algo.objective)
    assert {ex.trained_text.split("<")[0] for ex in examples} == {"yes", "no"}  # positives and negatives both
    assert all("feedback:\n" in ex.text for ex in examples)
    assert conditioning() > before
    assert algo.condition(prompt)[-1].content.endswith("feedback:\ncorrect")
    fb = "is_valid_accommodation: fail, reason: too short\nis_valid_restaurants: pass"
    assert all_success_feedback(fb) == "is_valid_accommodation: pass\nis_valid_restaurants: pass"


class _CheckEnv(YesEnv):
    """Feedback one line per check, like TravelPlanner's evaluator."""

    def verify(self, task, action):
        ok = action.strip() == "yes"
        lines = ["is_yes: pass, reason:It says yes." if ok else "is_yes: fail, reason:It does not say yes.",
                 "is_short: pass, reason:One word."]
        return Verdict(reward=float(ok), success=ok, feedback="\n".join(lines))


def test_faft_success_feedback_is_ready_before_the_first_evaluation(tmp_path):
    from agentloop.algorithms.base import TaskSet
    from agentloop.algorithms.faft import FAFT, FAFTConfig

    algo = FAFT(FAFTConfig(samples_per_task=2))
    text = algo.prepare(TaskSet(make_env=_CheckEnv, indices=(0, 1)), run_dir=tmp_path)
    # derived from the environment's own verdict on a known-good answer, before any episode exists
    assert text == "is_yes: pass, reason:It says yes.\nis_short: pass, reason:One word."
    prompt = [user("Question 0: is it true?")]
    assert algo.condition(prompt)[-1].content.endswith("feedback:\n" + text)
    # a resumed run reads the persisted text back (even where the environment could no longer derive it)
    resumed = FAFT(FAFTConfig(samples_per_task=2))
    assert resumed.prepare(TaskSet(make_env=YesEnv, indices=()), run_dir=tmp_path) == text
    # the config's text wins over both
    fixed = FAFT(FAFTConfig(success_feedback="all good"))
    assert fixed.prepare(TaskSet(make_env=_CheckEnv, indices=(0,)), run_dir=None) == "all good"


def test_faft_examples_do_not_change_the_inference_feedback(tokenizer):
    from agentloop.algorithms.base import Collector, TaskSet
    from agentloop.algorithms.faft import FAFT, FAFTConfig

    algo = FAFT(FAFTConfig(samples_per_task=2))
    prompt = [user("Question 0: is it true?")]
    specs = algo.specs(1, TaskSet(make_env=_CheckEnv, indices=(0, 1)))  # without prepare(), this fixes the text
    before = algo.condition(prompt)
    assert before[-1].content.endswith("feedback:\nis_yes: pass, reason:It says yes.\nis_short: pass, reason:One word.")
    episodes = Collector(AlternatingPolicy(), SamplingParams(temperature=1.0)).collect(specs)
    assert algo.examples(episodes, tokenizer)
    assert algo.condition(prompt) == before  # what evaluation and collection see is fixed by prepare, not by training


def test_faft_prepare_names_the_fix_when_nothing_can_be_derived():
    from agentloop.algorithms.base import TaskSet
    from agentloop.algorithms.faft import FAFT, FAFTConfig
    from agentloop.errors import ConfigError

    class NoGold(YesEnv):
        def get_task(self, index):
            return super().get_task(index).model_copy(update={"answer": None})

    class TaskSpecific(YesEnv):  # the success text names the task: it cannot be shown for every task
        def verify(self, task, action):
            return Verdict(reward=1.0, success=True, feedback=f"Your answer to {task.id} is correct.")

    for env in (NoGold, TaskSpecific):
        with pytest.raises(ConfigError, match="success_feedback"):
            FAFT(FAFTConfig()).prepare(TaskSet(make_env=env, indices=(0, 1)))
    # the same free text for every task is fine
    assert FAFT(FAFTConfig()).prepare(TaskSet(make_env=YesEnv, indices=(0, 1))) == "correct"


def test_faft_prepare_on_travel_gives_the_evaluators_all_pass_lines():
    from agentloop.algorithms.base import TaskSet
    from agentloop.algorithms.faft import FAFT, FAFTConfig
    from agentloop.environments.travel import success_feedback
    from agentloop.registry import make

    algo = FAFT(FAFTConfig())
    text = algo.prepare(TaskSet(make_env=lambda: make("travel/synthetic-v0", level="easy", num_tasks=4, seed=0),
                                indices=(0, 1)))
    assert text == success_feedback()


@pytest.mark.parametrize("name", ["rs_sft", "rise", "score", "leti", "critique_loop", "faft"])
def test_every_method_builds_from_its_config(name):
    from agentloop.improve import ImproveConfig
    from agentloop.registry import make_algorithm

    cfg = ImproveConfig.model_validate({"env": {"id": "math/arith-v0", "eval_kwargs": {"seed": 1}},
                                        "method": {"name": name}, "eval": {"max_attempts": 2}})
    assert make_algorithm(cfg.method).config.name == name


def test_rise_distillation_routes_later_attempts_to_teacher():
    from agentloop.policies.scripted import ScriptedPolicy

    from agentloop.algorithms.rise import RISE, RISEConfig

    algo = RISE(RISEConfig(max_attempts=3, samples_per_task=1, teacher={"id": "scripted", "kwargs": {"replies": ["yes"]}}))
    policy = algo.collection_policy(ScriptedPolicy(["no"]))
    specs = algo.specs(1, TaskSet(make_env=YesEnv, indices=(0, 1)))
    episodes = Collector(policy, SamplingParams()).collect(specs)
    assert all([t.action for t in e.turns] == ["no", "yes"] for e in episodes)


def test_rise_routed_collection_hands_native_tools_to_both_routes():
    """TurnRoutedPolicy is a PolicyWrapper: on a native-tool environment each route gets its conversations' tools."""
    from agentloop.algorithms.rise import RISE, RISEConfig, TurnRoutedPolicy
    from agentloop.registry import make
    from agentloop.wrappers import PolicyWrapper
    from tests.helpers import RecordingPolicy

    def env():
        return make("tools/synthetic-calls-v0", level="multiple", num_tasks=5, tool_prompt="native")

    algo = RISE(RISEConfig(max_attempts=2, collection="no_oracle", samples_per_task=2))
    learner, teacher = RecordingPolicy(lambda c: "learner"), RecordingPolicy(lambda c: "teacher")
    routed = TurnRoutedPolicy(learner, teacher, first_temperature=0.0)
    assert routed.takes_tools and isinstance(routed, PolicyWrapper)
    episodes = Collector(routed, SamplingParams(temperature=0.8)).collect(
        algo.specs(1, TaskSet(make_env=env, indices=(0, 1))))
    assert all(e.error is None and [t.action for t in e.turns] == ["learner", "teacher"] for e in episodes)
    names = {i: [fn["name"] for fn in env().unwrapped.records[i].functions] for i in (0, 1)}
    for calls in (learner.tools, teacher.tools):
        got = sorted(tuple(t["function"]["name"] for t in tools) for call in calls for tools in call)
        assert got and set(got) == {tuple(n) for n in names.values()}  # every conversation's own schemas arrived
    # a route that cannot render tools natively is refused, not silently given none
    assert not TurnRoutedPolicy(learner, _TemperatureTellingPolicy()).takes_tools


class _TemperatureTellingPolicy:
    """Answers with the temperature it was asked to sample at, and records it per call."""

    def __init__(self):
        self.calls: list[tuple[int, float]] = []

    def generate(self, conversations, sampling):
        from agentloop.types import Completion

        self.calls.append((len(conversations), sampling.temperature))
        return [Completion(text=f"t={sampling.temperature}") for _ in conversations for _ in range(sampling.n)]


def test_rise_first_temperature_collects_greedy_first_attempts_and_sampled_later_ones():
    from agentloop.algorithms.rise import RISE, RISEConfig

    def attempts(config):
        algo = RISE(RISEConfig(max_attempts=2, collection="no_oracle", samples_per_task=2, **config))
        policy = algo.collection_policy(_TemperatureTellingPolicy())
        episodes = Collector(policy, SamplingParams(temperature=0.8)).collect(
            algo.specs(1, TaskSet(make_env=YesEnv, indices=(0, 1))))
        return {tuple(t.action for t in e.turns) for e in episodes}

    assert attempts({}) == {("t=0.8", "t=0.8")}
    assert attempts({"first_temperature": 0.0}) == {("t=0.0", "t=0.8")}

    inner = _TemperatureTellingPolicy()  # greedy first attempts: each distinct question generated once
    policy = RISE(RISEConfig(max_attempts=2, first_temperature=0.0)).collection_policy(inner)
    q0, q1 = [user("Question 0: is it true?")], [user("Question 1: is it true?")]
    replies = policy.generate([q0, q1, q0, q0, [*q0, assistant("no"), user("again")]], SamplingParams(temperature=0.8))
    assert [c.text for c in replies] == ["t=0.0"] * 4 + ["t=0.8"]
    assert inner.calls == [(2, 0.0), (1, 0.8)]
    with pytest.raises(ValueError, match="max_attempts >= 2"):
        RISEConfig(max_attempts=1, first_temperature=0.0)


def test_critic_training_path_keeps_critiques_that_led_to_a_fix(tokenizer):
    from agentloop.policies.scripted import ScriptedPolicy

    from agentloop.algorithms.critique_loop import (
        CritiqueLoop,
        CritiqueLoopConfig,
        critic_examples,
    )

    critique = ("Step sentence: no\nCorrectness of the step: Wrong\nExplanation: it is true.\n"
                "Correctness of the final answer: Wrong\nExplanation: answer yes.")
    algo = CritiqueLoop(CritiqueLoopConfig(samples_per_task=2, max_attempts=2, train_critic=True, min_work_chars=0,
                                           critic={"id": "llm", "kwargs": {"policy": ScriptedPolicy([critique])}}))
    critic = algo.make_critic(None)
    episodes = _collect(algo, critic=critic)
    positives, negatives = critic_examples(episodes, critic, tokenizer)
    fixed = sum(1 for e in episodes if len(e.turns) == 2 and e.turns[1].success)
    failed = sum(1 for e in episodes if len(e.turns) == 2 and not e.turns[1].success)
    assert len(positives) == fixed > 0 and negatives == failed
    assert all(ex.trained_text.startswith("Step sentence: no") for ex in positives)
    examples = algo.examples(episodes, tokenizer)
    assert sum(ex.meta.get("role") == "critic" for ex in examples) == fixed


class _FirstNoThenPattern:
    """First attempts answer 'no'; later attempts follow ``pattern`` in call order (rollout, then branches)."""

    def __init__(self, pattern: tuple[str, ...]):
        self._cycle = itertools.cycle(pattern)

    def generate(self, conversations, sampling):
        from agentloop.types import Completion

        return [Completion(text="no" if not any(m.role == "assistant" for m in c) else next(self._cycle))
                for c in conversations for _ in range(sampling.n)]


def test_rise_best_of_n_samples_failed_states_and_trains_on_their_best_candidate(tokenizer):
    """best_of N: every failed state after a first attempt gets N - 1 branches replaying the rollout's attempts;
    the target there is a successful candidate when one exists (the rollout's own attempt on ties), and a branch
    whose replayed state differs from the recorded one is ignored."""
    from agentloop.algorithms.rise import RISE, RISEConfig, best_candidates, rise_training_pairs

    algo = RISE(RISEConfig(max_attempts=2, samples_per_task=1, filter="success", best_of=3))
    tasks = TaskSet(make_env=YesEnv, indices=(0, 1, 2, 3))
    policy = _FirstNoThenPattern(("no", "yes", "no", "no", "no", "no", "no", "yes", "no", "no"))
    collector = Collector(policy, SamplingParams(temperature=1.0), max_concurrency=1)
    rollouts = collector.collect(algo.specs(1, tasks))
    assert [[t.action for t in e.turns] for e in rollouts] == [["no", "no"], ["no", "yes"], ["no", "no"], ["no", "no"]]
    specs = algo.branch_specs(1, tasks, rollouts)
    # task 1's rollout already corrected itself: no branches there; 3 failed states x (3 - 1) candidates
    assert len(specs) == 6 and {s.options["index"] for s in specs} == {0, 2, 3}
    assert all(s.options["prefix"] == ["no"] for s in specs)
    branches = collector.collect(specs)
    # in call order the branches answered no, no | no, yes | no, no: task 2's second branch corrects it
    assert all(len(b.turns) == 1 and b.turns[0].truncated is False and b.error is None for b in branches)
    assert [b.turns[0].observation for b in branches[:2]] == [rollouts[0].turns[1].observation] * 2
    best = best_candidates(rollouts, branches)
    assert [best[(e.metadata["run_key"], 1)] for e in rollouts] == [("no", 0.0), ("yes", 1.0), ("yes", 1.0), ("no", 0.0)]
    kept = sorted((task, len([m for m in ctx if m.role == "assistant"]) + 1, a)
                  for ctx, a, _, task in rise_training_pairs(rollouts, "success", best))
    assert kept == [("t1", 2, "yes"), ("t2", 2, "yes")]
    examples = algo.examples([*rollouts, *branches], tokenizer)
    assert len(examples) == 2
    # a branch from a different state (a task that did not repeat) never enters the data
    foreign = [b.model_copy(update={"turns": (b.turns[0].model_copy(update={"observation": b.turns[0].observation[:1]}),)})
               for b in branches]
    assert best_candidates(rollouts, foreign)[(rollouts[2].metadata["run_key"], 1)] == ("no", 0.0)
    assert RISE(RISEConfig(max_attempts=2)).branch_specs(1, tasks, rollouts) == []  # best_of 1: no branching


def test_rise_fresh_candidates_train_the_learners_other_answer_after_the_wrong_one(tokenizer):
    """candidates: question: a failed state's candidates are fresh answers to the question alone, sampled by the
    learner at the collection temperature (not the greedy first-attempt route); the best is trained in the failed
    state's context (wrong answer + feedback), its sampled ids kept as the trained span."""
    import agentloop
    from agentloop.algorithms.rise import RISE, RISEConfig, TurnRoutedPolicy, best_turns, opening
    from agentloop.policies.scripted import ScriptedPolicy

    def arith():
        return agentloop.make("math/arith-v0", difficulty=6, split="train")

    gold = arith().get_task(0).answer
    wrong, other = f"Answer: {int(gold) + 1}", f"Answer: {int(gold) + 2}"
    algo = RISE(RISEConfig(max_attempts=3, collection="oracle", filter="success", best_of=3, candidates="question", samples_per_task=1,
                           first_temperature=0.0, first_attempt_weight=0.0))
    learner = ScriptedPolicy([wrong])
    assert isinstance(algo.collection_policy(learner), TurnRoutedPolicy) and algo.branch_policy(learner) is learner
    tasks = TaskSet(make_env=arith, indices=(0,))
    [ep] = Collector(learner, SamplingParams(temperature=0.0), max_concurrency=1).collect(algo.specs(1, tasks))
    assert [t.action for t in ep.turns] == [wrong, wrong, wrong]
    specs = algo.branch_specs(1, tasks, [ep])  # one pool of fresh answers for both failed states
    assert len(specs) == 2 and all(s.options["prefix"] == [] and s.metadata["candidate"] == "question" for s in specs)
    fresh = iter([other, f"Answer: {gold}"])
    branches = Collector(ScriptedPolicy(lambda conv: next(fresh)), SamplingParams(temperature=0.8),
                         max_concurrency=1).collect(specs)
    assert [list(b.turns[0].observation) for b in branches] == [opening(ep.turns[1].observation)] * 2
    # the right fresh answer, moved into the failed state (after the wrong answer and RISE's text)
    ids = tuple(tokenizer.encode(f"Answer: {gold}", add_special_tokens=False))
    branches[1] = branches[1].model_copy(update={"turns": (branches[1].turns[0].model_copy(
        update={"token_ids": ids, "prompt_token_ids": (1, 2, 3)}),)})
    best = best_turns([ep], branches)
    for t in (1, 2):
        chosen = best[(ep.metadata["run_key"], t)]
        assert chosen.action == f"Answer: {gold}" and chosen.observation == ep.turns[t].observation
        assert chosen.prompt_token_ids is None and chosen.token_ids == ids
    examples = algo.examples([ep, *branches], tokenizer)
    assert len(examples) == 2  # after one and after two wrong answers
    for ex, wrongs in zip(examples, (1, 2)):
        context = "".join(seg.text for seg in ex.segments if not seg.train)
        assert context.count(wrong) == wrongs and "The answer is incorrect" in context
        assert [seg.ids for seg in ex.segments if seg.train] == [ids]
    # a fresh answer to another question never enters the data
    foreign = [b.model_copy(update={"turns": (b.turns[0].model_copy(update={"observation": b.turns[0].observation[:0]}),)})
               for b in branches]
    assert best_turns([ep], foreign)[(ep.metadata["run_key"], 1)].action == wrong
    with pytest.raises(ValueError, match="best_of"):
        RISEConfig(max_attempts=2, candidates="question")


def test_rise_best_of_needs_a_second_attempt():
    from agentloop.algorithms.rise import RISEConfig

    with pytest.raises(ValueError, match="max_attempts >= 2"):
        RISEConfig(max_attempts=1, best_of=4)


@pytest.mark.parametrize("old, new", [({"name": "rise", "turns": 3}, "max_attempts: 3"),
                                      ({"name": "critique_loop", "rounds": 2}, "max_attempts: 3")])
def test_old_method_attempt_names_are_refused_with_the_new_spelling(old, new):
    from agentloop.registry import method_config

    with pytest.raises(ValueError, match=f"was renamed: write {new}"):
        method_config(old)
