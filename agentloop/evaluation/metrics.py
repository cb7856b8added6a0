"""Self-correction metrics as pure functions (docs/methods.md section 7), each with N and a 95% interval.

Inputs are plain Python values, never episodes (``evaluate.py`` extracts them):

* ``attempts``: one sequence of booleans per problem, the oracle verdict of attempt 1, 2, ...
  Episodes that stopped early are padded by :func:`pad_attempts`, which carries the last verdict
  forward (a correct answer that ended the episode stays the final answer; an episode cut short
  by an error stays wrong).
* pass@k uses per-problem sample counts ``(n, c)``.
* majority votes use per-problem lists of ``(answer_key, correct)``; ``answer_key`` None means the
  answer could not be parsed and does not vote.

Every figure is an :class:`Estimate` (value, N, 95% interval, method): Wilson intervals for
proportions, percentile bootstrap over problems otherwise; :func:`paired_difference` bootstraps
the difference between two runs over the problems they share.

Not covered: first-error-step labels are rarely available; :func:`first_error_step_accuracy` takes
them when they exist.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

Z95 = 1.959963984540054
N_BOOT = 2000


class Estimate(BaseModel):
    """A figure with its sample size and 95% interval. ``value`` is None when N is 0."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    value: float | None
    n: int = Field(ge=0, description="Number of units (problems, pairs, verdicts) the figure is computed over.")
    lo: float | None = None
    hi: float | None = None
    method: Literal["wilson", "bootstrap", "exact", "none"] = "none"

    def fmt(self, pct: bool = True, digits: int | None = None) -> str:
        """``'42.0 [35.1, 49.2] (N=100)'``: percent with one decimal, or 4 significant digits when not ``pct``."""
        if self.value is None:
            return f"n/a (N={self.n})"
        s = 100.0 if pct else 1.0
        spec = f".{digits}f" if digits is not None else (".1f" if pct else ".4g")
        ci = f" [{self.lo * s:{spec}}, {self.hi * s:{spec}}]" if self.lo is not None and self.hi is not None else ""
        return f"{self.value * s:{spec}}{ci} (N={self.n})"


# -- intervals ------------------------------------------------------------------------------------
def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (well-behaved at 0, 1 and small N)."""
    if n <= 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def proportion(values: Sequence[bool]) -> Estimate:
    """Share of True values, with a Wilson interval."""
    n = len(values)
    if n == 0:
        return Estimate(value=None, n=0)
    k = int(sum(bool(v) for v in values))
    lo, hi = wilson_interval(k, n)
    return Estimate(value=k / n, n=n, lo=lo, hi=hi, method="wilson")


def bootstrap_interval(values: Sequence[float] | np.ndarray, stat: Callable[[np.ndarray], float] | None = None,
                       n_boot: int = N_BOOT, seed: int = 0, alpha: float = 0.05) -> tuple[float, float]:
    """Percentile bootstrap interval of ``stat`` (default: mean) over resampled rows of ``values``."""
    arr = np.asarray(values, dtype=float)
    if len(arr) == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(arr), size=(n_boot, len(arr)))
    if stat is None:
        stats = arr[idx].mean(axis=1)
    else:
        stats = np.array([stat(arr[i]) for i in idx])
    stats = stats[~np.isnan(stats)]
    if len(stats) == 0:
        return (math.nan, math.nan)
    return (float(np.quantile(stats, alpha / 2)), float(np.quantile(stats, 1 - alpha / 2)))


def mean_estimate(values: Sequence[float], seed: int = 0) -> Estimate:
    """Mean with a bootstrap interval (a Wilson interval if every value is 0 or 1)."""
    vals = [float(v) for v in values]
    if not vals:
        return Estimate(value=None, n=0)
    if all(v in (0.0, 1.0) for v in vals):
        return proportion([v == 1.0 for v in vals])
    lo, hi = bootstrap_interval(vals, seed=seed)
    return Estimate(value=float(np.mean(vals)), n=len(vals), lo=lo, hi=hi, method="bootstrap")


def ratio_estimate(numerators: Sequence[float], denominators: Sequence[float], seed: int = 0) -> Estimate:
    """sum(num) / sum(den) over units (a micro average, e.g. tests passed / tests run), bootstrap over units."""
    if len(numerators) != len(denominators):
        raise ValueError("ratio_estimate needs one denominator per numerator.")
    num, den = np.asarray(numerators, dtype=float), np.asarray(denominators, dtype=float)
    if len(num) == 0 or den.sum() <= 0:
        return Estimate(value=None, n=len(num))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(num), size=(N_BOOT, len(num)))
    d = den[idx].sum(axis=1)
    boots = num[idx].sum(axis=1)[d > 0] / d[d > 0]
    lo, hi = float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))
    return Estimate(value=float(num.sum() / den.sum()), n=len(num), lo=lo, hi=hi, method="bootstrap")


def paired_difference(a: Sequence[float], b: Sequence[float], seed: int = 0) -> Estimate:
    """Mean of ``b - a`` over paired units (same problems), with a paired bootstrap interval."""
    if len(a) != len(b):
        raise ValueError(f"paired_difference needs equal-length inputs (same problems), got {len(a)} and {len(b)}.")
    if not a:
        return Estimate(value=None, n=0)
    diff = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    lo, hi = bootstrap_interval(diff, seed=seed)
    return Estimate(value=float(diff.mean()), n=len(diff), lo=lo, hi=hi, method="bootstrap")


# -- accuracy by attempt and transitions ---------------------------------------------------------
def pad_attempts(attempts: Sequence[bool], k: int) -> list[bool]:
    """The verdicts of attempts 1..k, the last one carried forward (no attempt at all = all wrong)."""
    seq = [bool(x) for x in attempts[:k]]
    if not seq:
        return [False] * k
    return seq + [seq[-1]] * (k - len(seq))


def _column(attempts: Sequence[Sequence[bool]], t: int) -> list[bool]:
    if t < 1:
        raise ValueError(f"attempt numbers start at 1, got t={t}.")
    return [pad_attempts(a, t)[t - 1] for a in attempts]


def accuracy_at(attempts: Sequence[Sequence[bool]], t: int) -> Estimate:
    """Acc@t: share of problems whose answer at attempt ``t`` (1-based) is correct."""
    return proportion(_column(attempts, t))


def accuracy_by_attempt(attempts: Sequence[Sequence[bool]], k: int | None = None) -> list[Estimate]:
    """[Acc@t1, ..., Acc@tK] (K defaults to the longest episode)."""
    k = k or max((len(a) for a in attempts), default=1)
    return [accuracy_at(attempts, t) for t in range(1, k + 1)]


def delta(attempts: Sequence[Sequence[bool]], t1: int = 1, t2: int = 2, seed: int = 0) -> Estimate:
    """delta(t1, t2) = Acc@t2 - Acc@t1, with a bootstrap interval over problems."""
    a, b = _column(attempts, t1), _column(attempts, t2)
    return paired_difference([float(x) for x in a], [float(x) for x in b], seed=seed)


def delta_i_to_c(attempts: Sequence[Sequence[bool]], t1: int = 1, t2: int = 2) -> Estimate:
    """Share of problems wrong at t1 and right at t2."""
    return proportion([not x and y for x, y in zip(_column(attempts, t1), _column(attempts, t2))])


def delta_c_to_i(attempts: Sequence[Sequence[bool]], t1: int = 1, t2: int = 2) -> Estimate:
    """Share of problems right at t1 and wrong at t2."""
    return proportion([x and not y for x, y in zip(_column(attempts, t1), _column(attempts, t2))])


def fix_rate(attempts: Sequence[Sequence[bool]], t1: int = 1, t2: int = 2) -> Estimate:
    """delta_i->c / (1 - Acc@t1): among problems wrong at t1, the share right at t2 (N = those problems)."""
    a, b = _column(attempts, t1), _column(attempts, t2)
    return proportion([y for x, y in zip(a, b) if not x])


def break_rate(attempts: Sequence[Sequence[bool]], t1: int = 1, t2: int = 2) -> Estimate:
    """delta_c->i / Acc@t1: among problems right at t1, the share wrong at t2."""
    a, b = _column(attempts, t1), _column(attempts, t2)
    return proportion([not y for x, y in zip(a, b) if x])


# -- pass@k ---------------------------------------------------------------------------------------
def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one problem from n samples with c correct: 1 - C(n-c, k) / C(n, k)."""
    if not 0 <= c <= n:
        raise ValueError(f"pass_at_k needs 0 <= c <= n, got n={n}, c={c}.")
    if k < 1 or k > n:
        raise ValueError(f"pass_at_k needs 1 <= k <= n (the samples drawn), got k={k}, n={n}.")
    if n - c < k:
        return 1.0
    # product form of the ratio of binomials: numerically stable for large n
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def pass_at_k_estimate(counts: Sequence[tuple[int, int]], k: int, seed: int = 0) -> Estimate:
    """Mean unbiased pass@k over problems given ``(n, c)`` per problem, bootstrap interval over problems."""
    usable = [(n, c) for n, c in counts if n >= k]
    if not usable:
        return Estimate(value=None, n=0)
    vals = [pass_at_k(n, c, k) for n, c in usable]
    if all(v in (0.0, 1.0) for v in vals):
        return proportion([v == 1.0 for v in vals])
    lo, hi = bootstrap_interval(vals, seed=seed)
    return Estimate(value=float(np.mean(vals)), n=len(vals), lo=lo, hi=hi, method="bootstrap")


# -- majority vote and RISE's metrics ----------------------------------------------------------
Vote = tuple[Hashable | None, bool]


def majority_correct(samples: Sequence[Vote]) -> bool:
    """Is the most common parsed answer correct? Ties go to the answer seen first; unparsed answers don't vote."""
    counts: dict[Hashable, int] = {}
    correct: dict[Hashable, bool] = {}
    for key, ok in samples:
        if key is None:
            continue
        counts[key] = counts.get(key, 0) + 1
        correct[key] = correct.get(key, False) or bool(ok)
    if not counts:
        return False
    best = max(counts.values())
    winner = next(k for k in counts if counts[k] == best)  # dicts keep first-seen order
    return correct[winner]


def majority_accuracy(problems: Sequence[Sequence[Vote]]) -> Estimate:
    """Share of problems whose majority-vote answer is correct."""
    return proportion([majority_correct(p) for p in problems])


def oracle_accuracy(problems: Sequence[Sequence[bool]]) -> Estimate:
    """Share of problems with at least one correct answer (best-of-K with an oracle; RISE's p1@tK)."""
    return proportion([any(p) for p in problems])


def rise_metrics(sequential: Sequence[Sequence[Vote]], parallel: Sequence[Sequence[Vote]] | None = None,
                 k: int = 5) -> dict[str, Estimate]:
    """RISE's m1@t1, m1@tK, p1@tK from sequential episodes and m{K}@t1 from K parallel first-turn samples.

    ``sequential[i]`` are the (answer, correct) pairs of problem i's attempts in order (padded to K by
    carrying the last forward); ``parallel[i]`` its K independent first-attempt samples.
    """
    seq = [list(s)[:k] + [list(s)[-1]] * (k - len(s)) if s else [(None, False)] * k for s in sequential]
    out = {
        "m1@t1": proportion([s[0][1] for s in seq]),
        f"m1@t{k}": majority_accuracy(seq),
        f"p1@t{k}": oracle_accuracy([[ok for _, ok in s] for s in seq]),
    }
    if parallel is not None:
        out[f"m{k}@t1"] = majority_accuracy([list(p)[:k] for p in parallel])
    return out


# -- confidence vs critique (Yang et al. 2025) --------------------------------------------------
def _cl_cs(pairs_per_q: Sequence[Sequence[tuple[bool, bool]]]) -> tuple[float, float]:
    num_cl = den_cl = num_cs = den_cs = 0.0
    for pairs in pairs_per_q:
        if not pairs:
            continue
        first = [a for a, _ in pairs]
        pa = sum(first) / len(first)
        right = [b for a, b in pairs if a]
        wrong = [b for a, b in pairs if not a]
        if right:
            num_cl += pa * sum(right) / len(right)
        den_cl += pa
        if wrong:
            num_cs += (1 - pa) * sum(wrong) / len(wrong)
        den_cs += 1 - pa
    return (num_cl / den_cl if den_cl else math.nan, num_cs / den_cs if den_cs else math.nan)


def confidence_critique(pairs_per_question: Sequence[Sequence[tuple[bool, bool]]],
                        seed: int = 0) -> dict[str, Estimate]:
    """CL = sum(P_a P_b) / sum(P_a) and CS = sum((1-P_a) P_c) / sum(1-P_a) over questions.

    ``pairs_per_question[q]`` holds (first correct, second correct) for each sample of question q.
    Intervals: bootstrap over questions.
    """
    qs = [list(p) for p in pairs_per_question if p]
    out = {}
    for i, name in enumerate(("CL", "CS")):
        value = _cl_cs(qs)[i]
        if not qs or math.isnan(value):
            out[name] = Estimate(value=None, n=len(qs))
            continue
        rng = np.random.default_rng(seed)
        boots = [_cl_cs([qs[j] for j in rng.integers(0, len(qs), len(qs))])[i] for _ in range(N_BOOT // 4)]
        boots = [b for b in boots if not math.isnan(b)]
        lo, hi = (float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))) if boots else (None, None)
        out[name] = Estimate(value=value, n=len(qs), lo=lo, hi=hi, method="bootstrap")
    return out


# -- critic quality -------------------------------------------------------------------------------
def critic_quality(verdicts: Sequence[bool | None], labels: Sequence[bool]) -> dict[str, Estimate]:
    """Critic verdicts (True = "correct", None = unparsed) against oracle labels.

    The positive class is "wrong": precision = share of "wrong" verdicts that are wrong;
    recall = share of wrong answers the critic called wrong. An unparsed verdict counts as a miss
    for accuracy and recall, and ``parsed`` reports how often the critic gave a verdict at all.
    """
    if len(verdicts) != len(labels):
        raise ValueError(f"critic_quality needs one label per verdict, got {len(verdicts)} and {len(labels)}.")
    pairs = list(zip(verdicts, labels))
    return {
        "verdict_accuracy": proportion([v is not None and v == y for v, y in pairs]),
        "wrong_precision": proportion([not y for v, y in pairs if v is False]),
        "wrong_recall": proportion([v is False for v, y in pairs if not y]),
        "parsed": proportion([v is not None for v, _ in pairs]),
    }


def first_error_step_accuracy(predicted: Sequence[int | None], gold: Sequence[int | None]) -> Estimate:
    """Share of labelled solutions where the critic found the first wrong step (None = no wrong step)."""
    if len(predicted) != len(gold):
        raise ValueError("first_error_step_accuracy needs one gold label per prediction.")
    return proportion([p == g for p, g in zip(predicted, gold)])


def closed_loop_accuracy(attempts: Sequence[Sequence[bool]]) -> Estimate:
    """RealCritic's closed-loop correction accuracy: accuracy of the final answer after refinement."""
    k = max((len(a) for a in attempts), default=1)
    return accuracy_at(attempts, k)


__all__ = [
    "Estimate",
    "accuracy_at",
    "accuracy_by_attempt",
    "bootstrap_interval",
    "break_rate",
    "closed_loop_accuracy",
    "confidence_critique",
    "critic_quality",
    "delta",
    "delta_c_to_i",
    "delta_i_to_c",
    "first_error_step_accuracy",
    "fix_rate",
    "majority_accuracy",
    "majority_correct",
    "mean_estimate",
    "oracle_accuracy",
    "pad_attempts",
    "paired_difference",
    "pass_at_k",
    "pass_at_k_estimate",
    "proportion",
    "ratio_estimate",
    "rise_metrics",
    "wilson_interval",
]
