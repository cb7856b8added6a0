"""The self-correction report: one typed structure from one function, used by every evaluation.

:func:`self_correction` turns one model's episodes (or their :class:`ProblemAttempts`) under one
protocol into a :class:`SelfCorrection`; :func:`paired_gains` pairs two such sets over the same
problems into :class:`Gains`. ``agentloop eval`` (every block of ``metrics.json``), ``agentloop
improve`` (each held-out evaluation, ``ImproveResult.gain`` and its ``self_correction``), the
efficacy benchmark, the report and the trackers all read these two structures, so a figure of the
same episodes is the same number everywhere.

Names (K = ``max_attempts``; each name means one thing):

* ``acc_t1``, ``acc_t2``, ``acc_tk``: accuracy of attempt 1, of attempt 2, of attempt K (the last);
  ``acc_by_attempt`` lists Acc@t1..Acc@tK.
* ``delta_t1_t2`` = Acc@t2 - Acc@t1 and ``delta_t1_tk`` = Acc@tK - Acc@t1 (equal when K = 2).
* ``delta_i_to_c`` / ``delta_c_to_i``: share of problems wrong at t1 and right at t2 / right at t1 and
  wrong at t2 (so ``delta_t1_t2 = delta_i_to_c - delta_c_to_i``); ``fix_rate`` and ``break_rate`` are
  the same transitions over the problems wrong / right at t1. The ``_tk`` variants compare t1 with tK.
* ``p1_tk`` (RISE's p1@tK): share of problems with a right answer at any attempt (an oracle picks it);
  ``m1_tk`` (RISE's m1@tK): share whose majority answer over the K attempts is right (no oracle;
  unparsed answers do not vote, ties go to the earliest answer).
* ``uptake``: among problems wrong at t1 whose verdict asked for something checkable (the environment's
  ``feedback_uptake``: a NameError's name to define, the arithmetic checker's direction, the arguments a
  tool call's feedback names, the checks a travel plan failed), the share whose second attempt did it. Counted against the environment's own verdict under *every* protocol, shown or
  not: ``uptake`` under ``env`` above its value under ``binary``/``retry`` is feedback being read, even
  where the second attempt is still wrong (a right name with a wrong body), which ``delta_t1_t2`` cannot see.
* ``oracle_stopped``: the protocol ended episodes at their first success (it used the verifier's
  verdict), so Acc@t2.. are "with oracle" figures; say so wherever they are reported.

Gains (after minus before, paired over the same problems, bootstrap 95% intervals): ``gain_acc_t1``,
``gain_acc_t2``, ``gain_acc_tk``, ``gain_delta`` (of delta(t1,t2)), ``gain_delta_tk`` (of delta(t1,tK)).

Intervals: Wilson for proportions, percentile bootstrap (seed 0 unless a caller asks otherwise) for
differences, so the same episodes give the same interval in every command.

Counting rule, one for every caller: an attempt not played because the episode stopped at a success
keeps that success (the last verdict is carried forward); an attempt not played because the episode
errored (``Episode.error``: a failed reset, policy, step or critic) counts as wrong. The attempts an
errored episode did complete keep their verdicts, and ``n_errors`` says how many episodes errored.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agentloop.evaluation import metrics as M
from agentloop.types import Episode

__all__ = ["Gains", "OpAccuracy", "ProblemAttempts", "SelfCorrection", "paired_gains", "problem_key", "problems_of",
           "self_correction", "uptake_of"]


class _Figures(BaseModel):
    def as_json(self) -> dict[str, Any]:
        """JSON fields, leaving out figures that do not apply (None at the top level, e.g. Acc@t2 with K = 1);
        an estimate over no problems keeps its ``value: null``."""
        return {k: v for k, v in self.model_dump(mode="json").items() if v is not None}


class ProblemAttempts(BaseModel):
    """One problem's attempts under one protocol, padded to K by the counting rule (module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str = Field(description="Which problem (environment, task, sample, seed): pairs runs and protocols.")
    verdicts: tuple[bool, ...] = Field(description="Right or wrong at attempts 1..K.")
    answers: tuple[str | None, ...] = Field(description="The parsed answer of attempts 1..K (None: none, no vote).")
    tag: str | None = Field(default=None, description="The environment's operation tag (info['op']), if any.")
    uptake: bool | None = Field(default=None, description="Wrong at t1 with a checkable verdict: did attempt 2 do what "
                                "it asked (None: not applicable; module docstring).")
    errored: bool = Field(default=False, description="The episode recorded an error.")


class OpAccuracy(BaseModel):
    """Accuracy of the problems of one operation tag."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    n: int
    acc_t1: M.Estimate
    acc_t2: M.Estimate | None = None
    acc_tk: M.Estimate | None = None


class SelfCorrection(_Figures):
    """One model's self-correction figures under one protocol (names: module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    protocol: str | None = Field(default=None, description="The evaluation protocol (retry, binary, env, critic...).")
    oracle_stopped: bool = Field(default=False, description="Episodes stopped at their first success (the "
                                 "verifier's verdict was used): later-attempt figures are 'with oracle'.")
    n_episodes: int = Field(ge=0, description="Problems (sequential episodes) the figures are over.")
    n_errors: int = Field(default=0, ge=0, description="Episodes that recorded an error (unplayed attempts wrong).")
    max_attempts: int = Field(ge=1, description="K: attempts per episode.")
    acc_by_attempt: list[M.Estimate] = Field(description="Acc@t1 .. Acc@tK.")
    acc_t1: M.Estimate
    acc_t2: M.Estimate | None = Field(default=None, description="Acc@t2 (K >= 2).")
    acc_tk: M.Estimate | None = Field(default=None, description="Acc@tK, the last attempt (K >= 2).")
    delta_t1_t2: M.Estimate | None = Field(default=None, description="Acc@t2 - Acc@t1 (K >= 2).")
    delta_t1_tk: M.Estimate | None = Field(default=None, description="Acc@tK - Acc@t1 (K >= 2).")
    delta_i_to_c: M.Estimate | None = Field(default=None, description="Wrong at t1, right at t2.")
    delta_c_to_i: M.Estimate | None = Field(default=None, description="Right at t1, wrong at t2.")
    fix_rate: M.Estimate | None = Field(default=None, description="Among problems wrong at t1: right at t2.")
    break_rate: M.Estimate | None = Field(default=None, description="Among problems right at t1: wrong at t2.")
    delta_i_to_c_tk: M.Estimate | None = Field(default=None, description="Wrong at t1, right at tK.")
    delta_c_to_i_tk: M.Estimate | None = Field(default=None, description="Right at t1, wrong at tK.")
    p1_tk: M.Estimate | None = Field(default=None, description="RISE's p1@tK: right at any attempt (oracle pick).")
    m1_tk: M.Estimate | None = Field(default=None, description="RISE's m1@tK: majority answer over the K attempts "
                                     "right (no oracle).")
    uptake: M.Estimate | None = Field(default=None, description="Among problems wrong at t1 whose verdict asked "
                                      "something checkable: share whose attempt 2 did it (K >= 2; None: no such "
                                      "problem or the environment checks nothing).")
    by_op: dict[str, OpAccuracy] = Field(default_factory=dict, description="Accuracies per operation tag.")

    def accuracy(self, attempt: int) -> float | None:
        """Acc@t for ``attempt`` t (1-based; -1 = the last)."""
        return self.acc_by_attempt[attempt - 1 if attempt > 0 else attempt].value


class Gains(_Figures):
    """After minus before over the same problems (paired bootstrap 95% intervals; names: module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    n: int = Field(ge=0, description="Problems both sides share.")
    max_attempts: int = Field(ge=1)
    gain_acc_t1: M.Estimate
    gain_acc_t2: M.Estimate | None = None
    gain_acc_tk: M.Estimate | None = None
    gain_delta: M.Estimate | None = Field(default=None, description="Gain in delta(t1,t2).")
    gain_delta_tk: M.Estimate | None = Field(default=None, description="Gain in delta(t1,tK).")


# -- from episodes to problems ----------------------------------------------------------------------
def problem_key(ep: Episode) -> str:
    """``LABEL|task=T|sample=J|seed=S``: the same problem in every run and protocol evaluated alike."""
    md = ep.metadata
    label = md.get("env_label", ep.env_id)
    task = md.get("task_index", ep.task_id)
    return f"{label}|task={task}|sample={md.get('sample', 0)}|seed={ep.seed}"


def _tag(ep: Episode) -> str | None:
    tags = [t.info.get("op") for t in ep.turns if isinstance(t.info.get("op"), str)]
    return str(tags[0]) if tags else None


def _uptake_check(env_id: str) -> Any:
    """The registered environment's ``feedback_uptake`` (None: unknown id, or the base class's)."""
    from agentloop.env import TaskEnv
    from agentloop.errors import AgentLoopError
    from agentloop.registry import spec

    if env_id not in _UPTAKE:
        try:
            check = getattr(spec(env_id).load(), "feedback_uptake", None)
        except AgentLoopError:
            check = None
        _UPTAKE[env_id] = None if check is None or check is TaskEnv.feedback_uptake else check
    return _UPTAKE[env_id]


_UPTAKE: dict[str, Any] = {}


def uptake_of(ep: Episode) -> bool | None:
    """Whether attempt 2 did what the environment's verdict on a wrong attempt 1 asked (None: attempt 1 was
    right, there is no attempt 2, or the verdict asked nothing checkable)."""
    if len(ep.turns) < 2 or ep.turns[0].success:
        return None
    check = _uptake_check(ep.env_id)
    return None if check is None else check(ep.turns[0].info, ep.turns[1].action, ep.turns[1].info)


def problems_of(episodes: Sequence[Episode], max_attempts: int) -> list[ProblemAttempts]:
    """Each episode's attempts padded to ``max_attempts`` by the counting rule (module docstring), in order."""
    from agentloop.evaluation.summarize import attempt_answers

    out = []
    for ep in episodes:
        judged = attempt_answers(ep)[:max_attempts]
        verdicts = [ok for _, ok in judged]
        answers = [None if a is None else str(a) for a, _ in judged]
        missing = max_attempts - len(judged)
        if ep.error is not None or not judged:
            verdicts += [False] * missing
            answers += [None] * missing
        else:
            verdicts += [verdicts[-1]] * missing
            answers += [answers[-1]] * missing
        out.append(ProblemAttempts(key=problem_key(ep), verdicts=tuple(verdicts), answers=tuple(answers),
                                   tag=_tag(ep), uptake=uptake_of(ep) if max_attempts >= 2 else None,
                                   errored=ep.error is not None))
    return out


def _problems(items: Sequence[Episode] | Sequence[ProblemAttempts], max_attempts: int | None) -> list[ProblemAttempts]:
    if items and isinstance(items[0], Episode):
        if max_attempts is None:
            raise ValueError("self_correction of episodes needs max_attempts (K).")
        return problems_of(items, max_attempts)  # type: ignore[arg-type]
    return list(items)  # type: ignore[arg-type]


# -- the report ---------------------------------------------------------------------------------------
def self_correction(items: Sequence[Episode] | Sequence[ProblemAttempts], max_attempts: int | None = None, *,
                    protocol: str | None = None, oracle_stopped: bool = False, seed: int = 0) -> SelfCorrection:
    """The :class:`SelfCorrection` of one model's episodes (or problems) under one protocol.

    Example::

        report = self_correction(episodes, 2, protocol="retry")
        report.acc_t1.value, report.delta_t1_t2.fmt()
    """
    problems = _problems(items, max_attempts)
    k = max_attempts or max((len(p.verdicts) for p in problems), default=1)
    att = [list(p.verdicts[:k]) for p in problems]
    fields: dict[str, Any] = {"acc_by_attempt": M.accuracy_by_attempt(att, k), "acc_t1": M.accuracy_at(att, 1)}
    if k >= 2:
        votes = [list(zip(p.answers[:k], p.verdicts[:k])) for p in problems]
        fields.update(
            acc_t2=M.accuracy_at(att, 2), acc_tk=M.accuracy_at(att, k),
            delta_t1_t2=M.delta(att, 1, 2, seed=seed), delta_t1_tk=M.delta(att, 1, k, seed=seed),
            delta_i_to_c=M.delta_i_to_c(att, 1, 2), delta_c_to_i=M.delta_c_to_i(att, 1, 2),
            fix_rate=M.fix_rate(att, 1, 2), break_rate=M.break_rate(att, 1, 2),
            delta_i_to_c_tk=M.delta_i_to_c(att, 1, k), delta_c_to_i_tk=M.delta_c_to_i(att, 1, k),
            p1_tk=M.oracle_accuracy(att), m1_tk=M.majority_accuracy(votes))
        took = [p.uptake for p in problems if p.uptake is not None]
        fields["uptake"] = M.proportion(took) if took else None
    by_op: dict[str, OpAccuracy] = {}
    for op in sorted({p.tag for p in problems if p.tag is not None}):
        rows = [a for a, p in zip(att, problems) if p.tag == op]
        later = {"acc_t2": M.accuracy_at(rows, 2), "acc_tk": M.accuracy_at(rows, k)} if k >= 2 else {}
        by_op[op] = OpAccuracy(n=len(rows), acc_t1=M.accuracy_at(rows, 1), **later)
    return SelfCorrection(protocol=protocol, oracle_stopped=oracle_stopped, n_episodes=len(problems),
                          n_errors=sum(p.errored for p in problems), max_attempts=k, by_op=by_op, **fields)


def paired_gains(before: Sequence[Episode] | Sequence[ProblemAttempts],
                 after: Sequence[Episode] | Sequence[ProblemAttempts], max_attempts: int | None = None, *,
                 seed: int = 0) -> Gains:
    """``after`` minus ``before`` over the same problems (matched by :func:`problem_key`), paired bootstrap.

    Raises ValueError when the two sides are not the same problems (evaluate both on the same tasks).
    """
    b, a = _problems(before, max_attempts), _problems(after, max_attempts)
    bk, ak = {p.key: p for p in b}, {p.key: p for p in a}
    if len(bk) != len(b) or set(bk) != set(ak):
        raise ValueError(f"before has {len(b)} problems and after {len(a)} ({len(set(bk) ^ set(ak))} not shared): "
                         "evaluate both on the same tasks, samples and seeds.")
    keys = [p.key for p in b]
    k = max_attempts or max((len(p.verdicts) for p in (*b, *a)), default=1)

    def col(side: dict[str, ProblemAttempts], t: int) -> list[float]:
        return [float(side[key].verdicts[min(t, k) - 1]) for key in keys]

    def gain(xs: list[float], ys: list[float]) -> M.Estimate:
        return M.paired_difference(xs, ys, seed=seed)

    out: dict[str, Any] = {"gain_acc_t1": gain(col(bk, 1), col(ak, 1))}
    if k >= 2:
        for name, t in (("", 2), ("_tk", k)):
            db = [y - x for x, y in zip(col(bk, 1), col(bk, t))]
            da = [y - x for x, y in zip(col(ak, 1), col(ak, t))]
            out["gain_delta" + name] = gain(db, da)
        out.update(gain_acc_t2=gain(col(bk, 2), col(ak, 2)), gain_acc_tk=gain(col(bk, k), col(ak, k)))
    return Gains(n=len(keys), max_attempts=k, **out)
