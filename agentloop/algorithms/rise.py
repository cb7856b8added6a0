"""RISE: recursive introspection (Qu et al. 2024; docs/methods.md section 2).

A single-turn task becomes a multi-turn MDP: after a wrong attempt the user turn is
``"The answer is incorrect. Please try again. Here's the question: {question}"`` and the episode
stops at the first correct answer (up to ``max_attempts`` attempts). Every attempt ``a_t`` in state
``s_t`` (the whole conversation before it) becomes a training example whose only trained span is
that final assistant turn (earlier turns are context), weighted by reward-weighted regression
``exp(r / tau)`` (:func:`~agentloop.algorithms.losses.rwr_weights`, tau = 0.4), after one of the
paper's filters:

* ``all`` (default): every attempt;
* ``better``: attempts strictly better than the previous attempt (the first attempt: reward > 0);
* ``best``: per task, the attempts with the task's highest reward;
* ``success``: reward 1 only (RWR weights are then all equal: SFT on successful turns).

Data collection. Self-distillation samples ``samples_per_task`` multi-turn episodes per task from
the learner. With ``best_of: 1`` (default) those are N independent trajectories and the filter
picks among their turns. With ``best_of: N > 1`` (the paper's self-distillation, N = 16 there),
every state after a first attempt that the learner's own rollout reached gets N candidates for the
next attempt, and the best by reward is the training target at that state: the rollout's own
attempt is one candidate, and where it failed ``N - 1`` more are sampled from that state
(:meth:`RISE.branch_specs`: a :class:`~agentloop.wrappers.Branch` episode replays the recorded
attempts, then the learner answers once). Ties go to the rollout's own attempt, so a state whose
rollout attempt succeeded needs no sampling. Choices the paper leaves open: the states are those
of the learner's rollout (its own mistakes, as at test time), not of a rollout continued from the
chosen candidates; the filter then applies to the first attempts and to each state's best
candidate, with "better" meaning better than the rollout's previous attempt. With ``teacher``
set (a policy registry id and kwargs), attempts after the first come from that policy instead
(distillation): the collector is given a policy that routes by turn.

Tokens. Every kept attempt trains the ids the learner sampled, after the prompt ids it was given
(:func:`~agentloop.training.data.turn_example`); a best-of-N candidate's own turn (from its branch)
supplies them. The teacher's attempts carry no ids (:class:`TurnRoutedPolicy` drops them: the
learner did not sample that text) and are rendered by the chat template.
Iterate: each iteration collects with the latest model.

Fresh candidates (``candidates: question``, our addition, after the self-corrector of Welleck et al. 2023,
which pairs a model's worse and better outputs for the same input). With ``candidates: state`` (the paper's)
the ``best_of - 1`` candidates of a failed state are sampled *in* that state, after the wrong attempt and
its feedback; a small model mostly repeats the answer it can see there (``benchmarks/correction_ceiling.py``:
after RISE's text 65% of the base model's second answers repeat its first on arithmetic; on the code tasks the
rollouts' own second attempts after the interpreter's feedback fixed 0 of 47 failing functions where fresh
answers found a right one for 26: the cell ``rise_fresh-codefam``). With ``question`` they are fresh
answers to the question alone (:class:`~agentloop.wrappers.Branch` episodes with no replayed prefix, sampled
by the learner at ``collect.temperature``: :meth:`RISE.branch_policy`), and the best of them is trained in
the failed state's context: after the wrong attempt and its feedback, the learner's own *other* answer. The
lesson is "after this verdict, answer differently, as you might have": the pairs are the model's own outputs,
so the trained span is its sampled ids (the context, which it did not see when sampling them, is rendered
by the chat template, as with ``train_feedback``). With greedy first attempts (``first_temperature: 0``) the
wrong attempt in each pair is the one greedy evaluation shows. Fresh answers do not depend on the state, so
one pool of ``best_of - 1`` is sampled per rollout (at its first failed state) and serves each of its failed
states (with more than two attempts: after every wrong answer so far, the right other one); a fresh candidate
counts only for the rollout whose opening it answered (:func:`best_turns`).

First attempts at another temperature (``first_temperature``, our addition). Held-out evaluation is
greedy, so the states a second attempt starts from at test time hold the learner's *greedy* first
answer; collected at ``collect.temperature``, the data's second attempts instead follow sampled first
answers, often unlikely ones that the model's most likely answer already fixes, and a model trained
on them learns "replace an unlikely answer by my usual one", which greedy evaluation never needs.
``first_temperature: 0`` collects first attempts greedily and samples only the later ones, so the
corrections in the data are corrections of the mistakes evaluation will meet (the ``samples_per_task``
rollouts of a task then share their first attempt and differ from the second on).

Weighting first attempts (``first_attempt_weight``, our addition). The examples' RWR weights of first
attempts are multiplied by this factor (0 drops them: only later attempts are trained). SCoRe's stage I
(docs/methods.md) trains the second attempt while keeping the first near the base model, so that the
two attempts are not trained to the same answers and the second can learn to differ; this is the
supervised counterpart, without SCoRe's KL term on the first attempt (what it did on the default run:
docs/findings.md).

Collection protocol (``collection``, our addition; the paper leaves the unseen-verdict case open):
``oracle`` (default, the paper's) gives RISE's text only after a *wrong* attempt and stops at the
first success, so every second attempt in the data follows a failure: the model learns "after this
text, change the answer". Under the no-oracle evaluation below the same text also follows right
answers, and such a model turns them wrong (the efficacy cell ``rise-arith``: docs/results.md).
``no_oracle`` collects exactly as held-out evaluation
plays (:meth:`RISE.eval_attempt_settings`: the text after every attempt, all attempts played);
with ``filter: success`` the data are then the right turns in that context: first-attempt
successes, kept right answers (c->c) and corrections (i->c), never a right answer abandoned.
``env`` plays the ``env`` evaluation protocol (:mod:`agentloop.evaluation.protocols`): after a wrong
attempt the environment's own feedback (a failing assert with the value returned, the arithmetic
checker's "its sign is wrong" / "it is too large"), stop at the first success. The corrections in the
data then follow feedback that *carries information*, and the lesson is "read the feedback", not only
"change the answer" (the efficacy cell ``rise_env-arith``). ``reveal`` plays the ``oracle`` protocol: after
a wrong attempt the environment's answer-revealing feedback (a function call's acceptable values, the
correct number), stop at the first success; for a model that starts at zero successes (no tool call at
all) the second attempts it corrects with that text are the only right turns to train on (the tool-use
cell ``rise-tools``), at the price of a context evaluation never shows.

Rationalization (``train_feedback``, our addition, after STaR's rationalization: Zelikman et al. 2022 give the
model the answer as a hint and train the rationale as if no hint had been given). A model that cannot yet use
informative feedback rarely corrects itself after it (the efficacy cell ``rise_env-arith``: a handful of
corrections among hundreds of best-of-8 samples), so the ``env`` collection has almost nothing to train on.
With ``collection: reveal`` every wrong attempt is followed by the answer-revealing text and some of the
model's second attempts are right (it copies the answer; ``best_of`` raises the share of states that get one);
``train_feedback: env`` then trains each of those attempts after the text the ``env`` protocol would have shown instead ("Its sign is wrong." / "It is too
large."), rewritten from the previous attempt's recorded verdict (:func:`relabelled_contexts`), so the data
say "after this feedback, this is the right answer": where the feedback determines the fix (a sign error:
negate) the model can learn the fix; where it does not, it learns to move in the direction the feedback
names. ``binary`` rewrites to the binary protocol's text (RISE's); ``question`` trains the corrections as first
attempts (the question alone: STaR's rationalization as published), for a model that starts at zero
successes and must learn to answer at all (the tool-use cell ``rise_rationalize-tools``). The rewritten context is rendered by the
chat template (it is not what the policy saw); the trained span stays the ids the learner sampled. Choices
of ours: only later attempts are rewritten (first attempts have no feedback before them), and a rewrite
keys on the exact context, so a best-of-N branch sampled at the same state is rewritten the same way.

Evaluation (docs/methods.md section 2): held-out multi-attempt evaluation runs *without an oracle*:
after every attempt, right or wrong, the user turn is the same RISE text (so the verdict is never
revealed) and the episode runs all its attempts; Acc@tk is then the accuracy of the k-th answer.
:meth:`RISE.eval_attempt_settings` gives the ``MultiAttempt`` keyword arguments for this
(``feedback="none"`` with RISE's template, ``stop_on_success=False``); the loop's evaluation uses
them instead of its generic feedback mode. Binary feedback with stop-at-first-success (the
collection setting) would make later-turn accuracy oracle-stopped.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field, model_validator

from agentloop.algorithms.base import Algorithm, EnvFactory, EpisodeSpec, MethodConfig, TaskSet, usable
from agentloop.config import ComponentRef
from agentloop.protocols import ToolSchemas, accepts_tools
from agentloop.runs import episode_key
from agentloop.training.data import TrainExample, reply_example, turn_example
from agentloop.types import Episode, Message, SamplingParams, Turn
from agentloop.wrappers import PolicyWrapper

__all__ = ["RISE", "RISEConfig", "TurnRoutedPolicy", "best_candidates", "best_turns", "is_first_attempt",
           "opening", "question_of", "relabelled_contexts", "rise_training_pairs", "rise_training_turns"]

RISE_FEEDBACK = "The answer is incorrect. Please try again. Here's the question: {question}"
Filter = Literal["all", "better", "best", "success"]
#: The evaluation protocol (agentloop.evaluation.protocols) each collection plays, with RISE's text as the
#: method's own: oracle = binary (RISE's text after wrong attempts), no_oracle = retry (after every attempt).
COLLECTION_PROTOCOL = {"oracle": "binary", "no_oracle": "retry", "env": "env", "reveal": "oracle"}


TeacherSettings = ComponentRef  # the policy that writes the attempts after the first (RISE distillation)


class RISEConfig(MethodConfig):
    """RISE settings."""

    name: Literal["rise"] = "rise"
    max_attempts: int = Field(default=3, ge=1, le=16, description="Attempts per training episode (stops at the first success).")
    tau: float = Field(default=0.4, gt=0, description="RWR temperature: weights exp(r / tau).")
    filter: Filter = Field(default="all", description="Which attempts become training examples (see the module docstring).")
    feedback_template: str = Field(default=RISE_FEEDBACK, description="User turn after a wrong attempt; may use {question}.")
    collection: Literal["oracle", "no_oracle", "env", "reveal"] = Field(
        default="oracle", description="oracle: RISE's text only after a wrong attempt, stop at the first success (the "
        "paper's collection); no_oracle: collect as held-out evaluation plays (the text after every attempt, every "
        "attempt played; use with filter: success); env: the environment's own feedback after a wrong attempt, "
        "stop at the first success (as the `env` evaluation protocol plays); reveal: the environment's answer-revealing "
        "feedback after a wrong attempt (the `oracle` protocol), stop at the first success. See the module docstring.")
    train_feedback: Literal["collected", "binary", "env", "question"] = Field(
        default="collected", description="The feedback text later attempts are trained after: collected (the text "
        "they were sampled after), that of the binary / env evaluation protocol, rewritten from the previous "
        "attempt's verdict, or question (trained as first attempts: the question alone, STaR's rationalization). "
        "Rationalization: collect with reveal, train as if the answer had not been shown; see the module docstring.")
    teacher: ComponentRef | None = Field(
        default=None, description="Distillation: the policy producing attempts after the first (None = self-distillation).")
    best_of: int = Field(
        default=1, ge=1, le=64, description="Candidates per state after a first attempt; the best by reward is the "
        "target there (the paper's best-of-N self-distillation; 1 = the rollout's own attempts only).")
    candidates: Literal["state", "question"] = Field(
        default="state", description="Where best-of-N candidates for a failed state come from: state (sampled in "
        "that state, after the wrong attempt and its feedback: the paper's) or question (fresh answers to the question "
        "alone, trained in the state's context: the learner's other answers; see the module docstring).")
    first_temperature: float | None = Field(
        default=None, ge=0.0, description="Sampling temperature of first attempts during collection (None = "
        "collect.temperature). 0 collects the states held-out evaluation reaches: the learner's greedy first answer, "
        "with later attempts sampled at collect.temperature (see the module docstring).")
    first_attempt_weight: float = Field(
        default=1.0, ge=0.0, le=1.0, description="Factor on the training weight of first-attempt examples (1 = the "
        "paper's; 0 trains later attempts only, SCoRe stage I's division of labour; see the module docstring).")

    @model_validator(mode="after")
    def _check_needs_second_attempt(self) -> RISEConfig:
        if self.max_attempts >= 2:
            return self
        needs_second = [  # (set, what it does, how to turn it off)
            (self.best_of > 1, "method.best_of > 1 picks among next-attempt candidates", "best_of: 1"),
            (self.first_attempt_weight < 1.0, "method.first_attempt_weight < 1 weights first attempts apart from "
             "later ones", "first_attempt_weight: 1"),
            (self.first_temperature is not None, "method.first_temperature sets first attempts apart from later ones",
             "drop first_temperature"),
            (self.train_feedback != "collected", "method.train_feedback rewrites the feedback before later attempts",
             "train_feedback: collected"),
            (self.candidates != "state", "method.candidates picks where next-attempt candidates come from",
             "candidates: state"),
        ]
        for active, what, off in needs_second:
            if active:
                raise ValueError(f"{what}, which needs max_attempts >= 2; set max_attempts: 2 or more, or {off}.")
        return self

    @model_validator(mode="after")
    def _check_candidates(self) -> RISEConfig:
        if self.candidates == "question" and self.best_of < 2:
            raise ValueError("method.candidates: question samples best_of - 1 fresh answers per failed state; set "
                             "best_of: 2 or more (e.g. 8), or candidates: state.")
        if self.candidates == "question" and self.teacher is not None:
            raise ValueError("method.candidates: question takes the learner's own fresh answers, method.teacher writes "
                             "later attempts with another policy; drop one of them.")
        return self


Pair = tuple[list[Message], str, float, str]  # (context messages, attempt, reward, task id)
Candidate = tuple[Turn, float, str]  # (the chosen attempt's turn, its reward, task id)


def is_first_attempt(context: Sequence[Message]) -> bool:
    """True for the context of a first attempt: no earlier assistant turn in it."""
    return not any(m.role == "assistant" for m in context)


def _key(ep: Episode) -> str:
    return str(ep.metadata.get("run_key", id(ep)))


def best_turns(episodes: Sequence[Episode], branches: Sequence[Episode]) -> dict[tuple[str, int], Turn]:
    """(rollout key, turn index) -> the best turn among the rollout's own attempt at that state and the
    branches sampled there; ties go to the rollout's own attempt, then to the earlier branch.

    A branch counts only if its replayed state equals the rollout's recorded one (same messages), so
    an environment that did not repeat its task cannot put a foreign answer into the data; a fresh
    candidate (``metadata["candidate"] == "question"``) only if it answered the rollout's own opening, and it
    is returned in the rollout's state (its observation), without prompt ids. The turn is returned whole,
    so its sampled ids train (not a re-rendering of its text).
    """
    by_state: dict[tuple[str, int], list[Episode]] = {}
    fresh_of: dict[str, list[Episode]] = {}  # fresh candidates answer the question alone: one pool per rollout
    for b in branches:
        if b.metadata.get("candidate") == "question":
            fresh_of.setdefault(str(b.metadata.get("source")), []).append(b)
        else:
            by_state.setdefault((str(b.metadata.get("source")), int(b.metadata.get("turn", -1))), []).append(b)
    best: dict[tuple[str, int], Turn] = {}
    for ep in episodes:
        for t, turn in enumerate(ep.turns):
            if t == 0:
                continue
            chosen = turn
            for b in [*by_state.get((_key(ep), t), []), *(fresh_of.get(_key(ep), []) if not turn.success else [])]:
                fresh = b.metadata.get("candidate") == "question"
                state = opening(turn.observation) if fresh else list(turn.observation)
                if b.turns and b.error is None and list(b.turns[0].observation) == state \
                        and b.turns[0].reward > chosen.reward:
                    # a fresh answer moves into the state it is trained in; its prompt ids (the question alone)
                    # go, its sampled ids stay (RISE.examples renders the new context around them)
                    chosen = b.turns[0] if not fresh else b.turns[0].model_copy(
                        update={"observation": turn.observation, "prompt_token_ids": None})
            best[(_key(ep), t)] = chosen
    return best


def best_candidates(episodes: Sequence[Episode], branches: Sequence[Episode]) -> dict[tuple[str, int], tuple[str, float]]:
    """:func:`best_turns` as (attempt text, reward) per state."""
    return {k: (t.action, float(t.reward)) for k, t in best_turns(episodes, branches).items()}


def rise_training_turns(episodes: Sequence[Episode], filter: Filter,
                        best: dict[tuple[str, int], Turn] | None = None) -> list[Candidate]:
    """(turn, reward, task id) for every attempt the filter keeps.

    With ``best`` (from :func:`best_turns`), each state after a first attempt contributes its best
    candidate instead of the rollout's own attempt; "better" still compares with the rollout's previous
    attempt (the one in the context).
    """
    out: list[Candidate] = []
    by_task: dict[str, list[Candidate]] = {}
    for ep in episodes:
        prev = 0.0
        for t, turn in enumerate(ep.turns):
            chosen = (best or {}).get((_key(ep), t), turn)
            reward = float(chosen.reward)
            keep = (filter in ("all", "best") or (filter == "success" and reward >= 1.0)
                    or (filter == "better" and reward > prev))
            prev = turn.reward
            if keep:
                by_task.setdefault(str(ep.task_id), []).append((chosen, reward, str(ep.task_id)))
    for items in by_task.values():
        if filter == "best":
            top = max(r for _, r, _ in items)
            items = [it for it in items if it[1] == top]
        out.extend(items)
    return out


def rise_training_pairs(episodes: Sequence[Episode], filter: Filter,
                        best: dict[tuple[str, int], tuple[str, float]] | None = None) -> list[Pair]:
    """(context messages, attempt, reward, task id) for every attempt the filter keeps (the text view of
    :func:`rise_training_turns`; ``best`` from :func:`best_candidates`)."""
    turns: dict[tuple[str, int], Turn] | None = None
    if best is not None:
        by_key = {(_key(ep), t): turn for ep in episodes for t, turn in enumerate(ep.turns)}
        turns = {k: by_key[k].model_copy(update={"action": a, "reward": r}) for k, (a, r) in best.items()
                 if k in by_key}
    return [(list(t.observation), t.action, r, task) for t, r, task in rise_training_turns(episodes, filter, turns)]


def opening(context: Sequence[Message]) -> list[Message]:
    """The messages before the first answer: the context of a first attempt."""
    return list(context[:next((i for i, m in enumerate(context) if m.role == "assistant"), len(context))])


def question_of(context: Sequence[Message]) -> str:
    """The task's question in a multi-attempt context: the last user message before the first answer
    (what :class:`~agentloop.wrappers.MultiAttempt` formats its ``{question}`` with)."""
    return next((m.content for m in reversed(opening(context)) if m.role == "user"), "")


def relabelled_contexts(episodes: Sequence[Episode], settings: Any | None) -> dict[str, list[Message]]:
    """Each later attempt's context (keyed by :func:`_conversation_key` of the context it was sampled in)
    with its last user turn, the feedback, rewritten as ``settings`` (a
    :class:`~agentloop.wrappers.MultiAttemptConfig`) would have written it after the previous attempt:
    from that attempt's step info (the environment's ``feedback``) and verdict; ``settings=None``: the
    context of a first attempt instead (everything before the first answer). A branch sampled at the
    same state has the same context, so it maps to the same rewrite."""
    out: dict[str, list[Message]] = {}
    for ep in episodes:
        for t in range(1, len(ep.turns)):
            context = list(ep.turns[t].observation)
            if not context or context[-1].role != "user":
                continue
            if settings is None:
                out[_conversation_key(context)] = opening(context)
                continue
            prev = ep.turns[t - 1]
            text = settings.feedback_text(prev.info, bool(prev.success), question_of(context))
            out[_conversation_key(context)] = [*context[:-1], context[-1].model_copy(update={"content": text})]
    return out


class RISE(Algorithm):
    """See the module docstring."""

    objective = "rwr"

    def __init__(self, config: RISEConfig):
        super().__init__(config)
        self._teacher: Any = None

    def collection_policy(self, learner: Any) -> Any:
        """The learner, or a :class:`TurnRoutedPolicy`: the teacher after the first attempt (distillation)
        and/or first attempts at ``first_temperature``."""
        c = self.config
        if c.teacher is None and c.first_temperature is None:
            return learner
        if c.teacher is not None and self._teacher is None:
            self._teacher = c.teacher.make_policy()
        return TurnRoutedPolicy(learner, self._teacher or learner, first_temperature=c.first_temperature)

    def branch_policy(self, learner: Any) -> Any:
        """Fresh candidates (``candidates: question``) are the learner's first attempts at ``collect.temperature``
        (not at ``first_temperature``: greedy ones would repeat the rollout's own answer)."""
        return learner if self.config.candidates == "question" else self.collection_policy(learner)

    def eval_attempt_settings(self) -> dict[str, Any]:
        """``make`` keywords (all but ``max_attempts``) for held-out multi-attempt evaluation with no oracle.

        The RISE feedback text follows every attempt whatever its verdict (``feedback="none"`` writes
        ``none_template`` formatted with the question), and every attempt runs: ``improve`` builds its
        held-out episodes as ``make(id, max_attempts=eval.max_attempts, **algorithm.eval_attempt_settings())``.
        """
        from agentloop.evaluation.protocols import EvalProtocol

        return EvalProtocol.parse("retry").attempt_kwargs(method_text=self.config.feedback_template)

    def train_env(self, make_env: Any) -> EnvFactory:
        from agentloop.evaluation.protocols import EvalProtocol
        from agentloop.wrappers import MultiAttempt

        c = self.config
        attempts = EvalProtocol.parse(COLLECTION_PROTOCOL[c.collection]).attempt_kwargs(method_text=c.feedback_template)

        def factory() -> Any:
            env = make_env()
            return env if c.max_attempts == 1 else MultiAttempt(env, max_attempts=c.max_attempts, **attempts)
        return factory

    def branch_specs(self, iteration: int, tasks: TaskSet, episodes: Sequence[Episode]) -> list[EpisodeSpec]:
        """``best_of - 1`` one-step branches from every state after a first attempt whose rollout attempt failed."""
        if self.config.best_of <= 1:
            return []
        from agentloop.wrappers import Branch

        inner = self.train_env(tasks.make_env)

        def env() -> Any:
            return Branch(inner())

        fresh = self.config.candidates == "question"
        specs: list[EpisodeSpec] = []
        for ep in usable(episodes):
            index = ep.metadata.get("task_index")
            if index is None:
                continue
            failed = [t for t, turn in enumerate(ep.turns) if t > 0 and not turn.success]
            # fresh answers do not depend on the state: one pool (at the first failed state) serves every failed state
            for t in failed[:1] if fresh else failed:
                prefix = [] if fresh else [u.action for u in ep.turns[:t]]
                for j in range(self.config.best_of - 1):
                    specs.append(EpisodeSpec(
                        key=episode_key("branch", task=f"{_key(ep)}@{t}", sample=j, iteration=iteration), env=env,
                        options={"index": index, "prefix": prefix}, seed=ep.seed,
                        metadata={"phase": "branch", "iteration": iteration, "task_index": index, "sample": j,
                                  "source": _key(ep), "turn": t, "candidate": self.config.candidates}))
        return specs

    def examples(self, episodes: Sequence[Episode], tokenizer: Any) -> list[TrainExample]:
        import torch

        from agentloop.algorithms.losses import rwr_weights

        rollouts = [e for e in episodes if e.metadata.get("phase") != "branch"]
        branches = [e for e in episodes if e.metadata.get("phase") == "branch"]
        best = best_turns(rollouts, branches) if self.config.best_of > 1 else None
        chosen = rise_training_turns(rollouts, self.config.filter, best)
        w_first = self.config.first_attempt_weight
        if w_first == 0.0:
            chosen = [c for c in chosen if not is_first_attempt(c[0].observation)]
        if not chosen:
            return []
        weights = rwr_weights(torch.tensor([r for _, r, _ in chosen]), tau=self.config.tau).tolist()
        weights = [w * w_first if is_first_attempt(turn.observation) else w for (turn, _, _), w in zip(chosen, weights)]
        # Each attempt trains its sampled ids in the context it was sampled in (rendered only for turns
        # without ids, e.g. a distillation teacher's), or, with train_feedback, after the rewritten feedback
        # (the context rendered by the chat template, the sampled ids kept as the trained span).
        relabelled = self._relabelled(rollouts)
        out = []
        for (turn, _, task), w in zip(chosen, weights):
            context = relabelled.get(_conversation_key(turn.observation))
            if context is None and turn.prompt_token_ids is None:  # a fresh candidate (or a teacher's text)
                context = list(turn.observation)
            out.append(turn_example(tokenizer, turn, weight=w, group=task) if context is None else
                       reply_example(tokenizer, context, turn, weight=w, group=task))
        return out

    def _relabelled(self, rollouts: Sequence[Episode]) -> dict[str, list[Message]]:
        c = self.config
        if c.train_feedback == "collected":
            return {}
        if c.train_feedback == "question":
            return relabelled_contexts(rollouts, None)
        from agentloop.evaluation.protocols import EvalProtocol
        from agentloop.wrappers import MultiAttemptConfig

        settings = MultiAttemptConfig(max_attempts=c.max_attempts, **EvalProtocol.parse(c.train_feedback).attempt_kwargs(
            method_text=c.feedback_template))
        return relabelled_contexts(rollouts, settings)


class TurnRoutedPolicy(PolicyWrapper):
    """First attempts from ``learner`` (at ``first_temperature`` when set), later attempts from ``teacher``
    (RISE distillation; the learner itself when only the temperature differs).

    A :class:`~agentloop.wrappers.PolicyWrapper` around the learner: ``tools`` (native-tool environments)
    reach both routes, each conversation's schemas with it; ``takes_tools`` holds when both routes take them.
    """

    def __init__(self, learner: Any, teacher: Any, first_temperature: float | None = None):
        super().__init__(learner)
        self.learner, self.teacher, self.first_temperature = learner, teacher, first_temperature

    @property
    def takes_tools(self) -> bool:
        return all(_route_takes_tools(p) for p in (self.learner, self.teacher))

    def generate(self, conversations: Sequence[Sequence[Message]], sampling: SamplingParams,
                 tools: Sequence[ToolSchemas | None] | None = None) -> list[Any]:
        first = [i for i, c in enumerate(conversations) if is_first_attempt(c)]
        first_set = set(first)
        later = [i for i in range(len(conversations)) if i not in first_set]
        first_sampling = sampling
        if self.first_temperature is not None:
            first_sampling = sampling.model_copy(update={"temperature": self.first_temperature})
        out: list[Any] = [None] * (len(conversations) * sampling.n)
        for policy, idx, params in ((self.learner, first, first_sampling), (self.teacher, later, sampling)):
            if not idx:
                continue
            asked, slot = idx, list(range(len(idx)))
            if params.temperature == 0:  # greedy: a conversation asked several times is generated once
                position: dict[str, int] = {}
                asked, slot = [], []
                for i in idx:
                    key = _conversation_key(conversations[i], tools[i] if tools else None)
                    if key not in position:
                        position[key] = len(asked)
                        asked.append(i)
                    slot.append(position[key])
            # each route is a wrapped policy of its own: the asked conversations' tools pass through it
            route = PolicyWrapper(policy)
            comps = route.generate([conversations[i] for i in asked], params,
                                   [tools[i] for i in asked] if tools else None)
            if policy is not self.learner:
                # The teacher's text was not sampled by the learner (its ids may not even be the learner's
                # vocabulary): training renders it, like any text-only turn.
                comps = [c.model_copy(update={"token_ids": None, "logprobs": None, "prompt_token_ids": None})
                         for c in comps]
            for k, i in zip(slot, idx):
                out[i * sampling.n:(i + 1) * sampling.n] = comps[k * sampling.n:(k + 1) * sampling.n]
        return out


def _route_takes_tools(policy: Any) -> bool:
    return policy.takes_tools if isinstance(policy, PolicyWrapper) else accepts_tools(policy)


def _conversation_key(conversation: Sequence[Message], tools: Any = None) -> str:
    return "\x1e".join([*(m.model_dump_json() for m in conversation), json.dumps(tools, sort_keys=True, default=str)])
