"""From recorded episodes to the metrics of an evaluation run (the glue between episodes and ``metrics``).

Units: one *problem* is one (environment, task, seed, sample) sequential episode. Parallel samples
for the compute-matched comparison carry ``metadata["mode"] == "parallel"`` and are grouped with the
sequential episode of the same (environment, task, seed).

Answers for majority votes come from the turn's ``info`` (``parsed_answer``, ``extracted_answer``,
``prediction`` or ``answer``, the first present), else from the action text with whitespace
collapsed. Environment-specific per-episode figures (numbers or booleans in the final turn's
``info``, e.g. TravelPlanner's delivery and pass flags) are averaged generically with an interval,
and every ``X_passed``/``X_total`` pair also gives the micro rate ``X_micro`` = sum passed / sum total.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable, Sequence
from typing import Any

from agentloop.evaluation import metrics as M
from agentloop.types import Episode, Turn

ANSWER_KEYS = ("parsed_answer", "extracted_answer", "prediction", "answer")
STANDARD_INFO = {"feedback", "success", "task_id", "oracle_feedback", "parse_error", "attempt", "policy_warning",
                 "truncated_by", "critique_request", "feedback_given", "critique"} | set(ANSWER_KEYS)

__all__ = ["answer_key", "attempt_answers", "correct_at", "group_key", "summarize", "turn_tokens"]


def answer_key(turn: Turn) -> Hashable | None:
    """What a majority vote compares: the parsed answer if the environment reports one, else the text."""
    for key in ANSWER_KEYS:
        value = turn.info.get(key)
        if value is not None and not isinstance(value, (dict, list)):
            return str(value).strip()
    if turn.parse_error:
        return None
    text = " ".join(turn.action.split())
    return text or None


def turn_tokens(turn: Turn) -> tuple[int, bool]:
    """(generated tokens, exact?): token ids when the policy returned them, else a whitespace word count."""
    if turn.token_ids is not None:
        return len(turn.token_ids), True
    return len(turn.action.split()), False


def attempt_answers(ep: Episode) -> list[tuple[Hashable | None, bool]]:
    """(answer, correct) of each attempt: the last judged turn of each attempt."""
    last: dict[int, Turn] = {}
    for t in ep.turns:
        if t.success is not None:
            last[t.attempt] = t
    return [(answer_key(last[a]), bool(last[a].success)) for a in sorted(last)]


def episode_tokens(ep: Episode) -> tuple[int, bool]:
    counts = [turn_tokens(t) for t in ep.turns]
    return sum(c for c, _ in counts), all(e for _, e in counts)


def group_key(ep: Episode) -> tuple[str, str, str]:
    """(environment label, task, seed): the problem an episode is about, across samples and modes."""
    md = ep.metadata
    label = str(md.get("env_label", ep.env_id))
    task = str(md.get("task_index", ep.task_id))
    return label, task, str(ep.seed)


def correct_at(episodes: Sequence[Episode], max_attempts: int, attempt: int) -> list[bool]:
    """Per episode, whether attempt ``attempt`` (1-based; -1 = the last) was right, by the report's counting
    rule (:mod:`agentloop.evaluation.selfcorrection`): the paired data of a gain."""
    from agentloop.evaluation.selfcorrection import problems_of

    return [p.verdicts[attempt - 1 if attempt > 0 else attempt] for p in problems_of(episodes, max_attempts)]


def _block(seq: Sequence[Episode], par: Sequence[Episode], k: int) -> dict[str, Any]:
    """Every metric over one set of sequential episodes (and their parallel samples)."""
    from agentloop.evaluation.selfcorrection import self_correction

    first = seq[0].metadata if seq else {}
    report = self_correction(seq, k, protocol=first.get("protocol"), oracle_stopped=bool(first.get("oracle_stopped")))
    out: dict[str, Any] = report.as_json()
    # RISE's names for the same figures (m1@t1 = Acc@t1, m1@tK, p1@tK), as the paper writes them
    out["rise"] = {"m1@t1": out["acc_t1"], **({f"m1@t{k}": out["m1_tk"], f"p1@t{k}": out["p1_tk"]} if k >= 2 else {})}
    # pass@k and confidence/critique need several samples of the same problem
    groups: dict[tuple[str, str], list[Episode]] = defaultdict(list)
    for ep in seq:
        label, task, _ = group_key(ep)
        groups[(label, task)].append(ep)
    sizes = [len(g) for g in groups.values()]
    if sizes and max(sizes) > 1:
        counts = [(len(g), sum(bool(e.attempt_success[:1] and e.attempt_success[0]) for e in g)) for g in groups.values()]
        out["pass_at_k"] = {f"pass@{j}": M.pass_at_k_estimate(counts, j).model_dump()
                            for j in sorted({1, 2, 5, 10, max(sizes)}) if j <= max(sizes)}
        if k >= 2:
            pairs = [[tuple(M.pad_attempts(e.attempt_success, 2)) for e in g] for g in groups.values()]
            out["confidence_critique"] = {n: e.model_dump() for n, e in M.confidence_critique(pairs).items()}
    critic = _critic_block(seq)
    if critic:
        out["critic"] = critic
    info = _info_block(seq)
    if info:
        out["env_metrics"] = info
    tokens = [episode_tokens(ep) for ep in seq]
    out["tokens"] = {"mean_per_episode": M.mean_estimate([t for t, _ in tokens]).model_dump(),
                     "exact": all(e for _, e in tokens)}
    if par:
        from agentloop.evaluation.compare import compute_matched

        out["compute_matched"] = compute_matched(seq, par, k)
    return out


def _critic_block(seq: Sequence[Episode]) -> dict[str, Any]:
    verdicts, labels = [], []
    for ep in seq:
        for t in ep.turns:
            if t.critique is not None and t.success is not None:
                verdicts.append(t.critique.final_correct)
                labels.append(bool(t.success))
    if not verdicts:
        return {}
    out = {name: e.model_dump() for name, e in M.critic_quality(verdicts, labels).items()}
    out["closed_loop_accuracy"] = M.closed_loop_accuracy([list(ep.attempt_success) for ep in seq]).model_dump()
    return out


def _info_block(seq: Sequence[Episode]) -> dict[str, Any]:
    values: dict[str, list[float]] = defaultdict(list)
    for ep in seq:
        judged = [t for t in ep.turns if t.success is not None]
        if not judged:
            continue
        for key, v in judged[-1].info.items():
            if key in STANDARD_INFO or key.startswith("_"):
                continue
            if isinstance(v, bool) or (isinstance(v, (int, float)) and math.isfinite(v)):
                values[key].append(float(v))
    out = {key: M.mean_estimate(vals).model_dump() for key, vals in sorted(values.items())}
    # X_passed / X_total pairs also give a micro rate (e.g. tests passed over all tests run)
    for key in sorted(values):
        total = key.removesuffix("_passed") + "_total"
        if key.endswith("_passed") and total in values and len(values[total]) == len(values[key]):
            out[key.removesuffix("_passed") + "_micro"] = M.ratio_estimate(values[key], values[total]).model_dump()
    return out


def summarize(episodes: Sequence[Episode], max_attempts: int | None = None) -> dict[str, Any]:
    """The metrics of an evaluation run: per protocol (``protocols[NAME]``) an ``overall`` and a
    ``per_env`` block (see ``_block``: the :class:`~agentloop.evaluation.selfcorrection.SelfCorrection`
    fields plus RISE, pass@k, critic, environment and token figures); the first protocol's blocks are
    also at the top level. Shared first attempts (``mode: first``) are not problems of their own."""
    seq = [ep for ep in episodes if ep.metadata.get("mode", "sequential") == "sequential"]
    par = [ep for ep in episodes if ep.metadata.get("mode") == "parallel"]
    k = max_attempts or max((len(ep.attempt_success) for ep in seq), default=1)
    by_protocol: dict[str, list[Episode]] = defaultdict(list)
    for ep in seq:
        by_protocol[str(ep.metadata.get("protocol") or "")].append(ep)
    par_by_env: dict[str, list[Episode]] = defaultdict(list)
    for ep in par:
        par_by_env[group_key(ep)[0]].append(ep)

    def blocks(eps: Sequence[Episode]) -> dict[str, Any]:
        by_env: dict[str, list[Episode]] = defaultdict(list)
        for ep in eps:
            by_env[group_key(ep)[0]].append(ep)
        return {"overall": _block(eps, par, k),
                "per_env": {label: _block(e, par_by_env.get(label, []), k) for label, e in sorted(by_env.items())}}

    protocols = {name: blocks(eps) for name, eps in by_protocol.items()}
    out: dict[str, Any] = {"max_attempts": k, **(next(iter(protocols.values())) if protocols else blocks([]))}
    if any(protocols):
        out["protocols"] = {name: {"oracle_stopped": b["overall"].get("oracle_stopped", False), **b}
                            for name, b in protocols.items()}
    return out
