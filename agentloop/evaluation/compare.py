"""Comparisons: sequential self-correction against parallel sampling at matched compute, and run against run.

Compute-matched (RISE's question, "does self-correction beat sampling?"): for each problem, the
sequential episode made up to K attempts; K independent single-attempt samples were drawn too.
Reported side by side:

* sequential: Acc@tK (the answer after self-correction) and p1@tK (any attempt right, oracle);
* parallel, K samples: first sample (m1@t1), majority vote (mK@t1), oracle best-of-K (pass@K, empirical);
* token-matched parallel: for each problem, the longest prefix of the parallel samples whose
  generated tokens fit within the tokens the sequential episode generated (at least one sample),
  then majority vote and oracle best-of over that prefix. This is the "equal generated tokens" row.

Tokens are exact when the policy returned token ids, else whitespace word counts (``tokens_exact``).

Run against run (:func:`compare_runs`): metrics on the problems both runs share (matched by run
key), with paired bootstrap differences. Runs over different environments are refused.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from agentloop.errors import ConfigError
from agentloop.evaluation import metrics as M
from agentloop.evaluation.summarize import attempt_answers, episode_tokens, group_key
from agentloop.runs import key_of
from agentloop.types import Episode

__all__ = ["compare_runs", "compute_matched", "token_matched_prefix"]


def token_matched_prefix(sample_tokens: Sequence[int], budget: int) -> int:
    """How many samples (in order) fit in ``budget`` generated tokens; at least one."""
    used, m = 0, 0
    for t in sample_tokens:
        if m >= 1 and used + t > budget:
            break
        used += t
        m += 1
    return max(1, m) if sample_tokens else 0


def compute_matched(seq: Sequence[Episode], par: Sequence[Episode], k: int) -> dict[str, Any]:
    """The compute-matched comparison (module docstring) over problems that have both kinds of episode."""
    samples: dict[tuple[str, str, str], list[Episode]] = defaultdict(list)
    for ep in sorted(par, key=lambda e: int(e.metadata.get("sample", 0))):
        samples[group_key(ep)].append(ep)
    rows = []
    for ep in seq:
        if int(ep.metadata.get("sample", 0)) != 0 or group_key(ep) not in samples:
            continue
        ps = samples[group_key(ep)][:k]
        votes = [(attempt_answers(p)[:1] or [(None, False)])[0] for p in ps]
        tok = [episode_tokens(p)[0] for p in ps]
        seq_tokens, _ = episode_tokens(ep)
        m = token_matched_prefix(tok, seq_tokens)
        attempts = M.pad_attempts(ep.attempt_success, k)
        rows.append({
            "seq_final": attempts[-1], "seq_oracle": any(attempts), "par_first": votes[0][1],
            "par_majority": M.majority_correct(votes), "par_oracle": any(ok for _, ok in votes),
            "tm_majority": M.majority_correct(votes[:m]), "tm_oracle": any(ok for _, ok in votes[:m]),
            "tm_samples": m, "seq_tokens": seq_tokens, "par_tokens": sum(tok),
            "exact": episode_tokens(ep)[1] and all(episode_tokens(p)[1] for p in ps),
        })
    if not rows:
        return {"n_problems": 0}

    def col(name: str) -> list[Any]:
        return [r[name] for r in rows]

    out: dict[str, Any] = {"n_problems": len(rows), "max_attempts": k, "tokens_exact": all(col("exact"))}
    for name in ("seq_final", "seq_oracle", "par_first", "par_majority", "par_oracle", "tm_majority", "tm_oracle"):
        out[name] = M.proportion(col(name)).model_dump()
    for name in ("seq_tokens", "par_tokens", "tm_samples"):
        out[name] = M.mean_estimate(col(name)).model_dump()
    as_float = {n: [float(x) for x in col(n)] for n in ("seq_final", "par_majority", "tm_majority")}
    out["diff_seq_vs_par_majority"] = M.paired_difference(as_float["par_majority"], as_float["seq_final"]).model_dump()
    out["diff_seq_vs_tm_majority"] = M.paired_difference(as_float["tm_majority"], as_float["seq_final"]).model_dump()
    return out


def _final_by_key(episodes: Sequence[Episode], k: int) -> dict[str, tuple[float, float, str]]:
    """run key -> (correct at t1, correct at tK, env label), sequential episodes only."""
    from agentloop.evaluation.selfcorrection import problems_of

    out = {}
    for ep in episodes:
        if ep.metadata.get("mode", "sequential") != "sequential":  # parallel samples, shared first attempts
            continue
        att = problems_of([ep], k)[0].verdicts  # the report's counting rule
        out[key_of(ep)] = (float(att[0]), float(att[-1]), group_key(ep)[0])
    return out


def compare_runs(runs: Sequence[tuple[str, Sequence[Episode], int]]) -> dict[str, Any]:
    """Compare runs (name, episodes, K) against the first, on the problems all of them share.

    Raises :class:`ConfigError` when the runs cover different environments or share no problem.
    """
    if len(runs) < 2:
        raise ConfigError("compare_runs needs at least two runs.")
    finals = [(_final_by_key(eps, k), name) for name, eps, k in runs]
    env_sets = [sorted({v[2] for v in f.values()}) for f, _ in finals]
    if any(s != env_sets[0] for s in env_sets[1:]):
        detail = "; ".join(f"{name}: {', '.join(s) or 'none'}" for (_, name), s in zip(finals, env_sets))
        raise ConfigError(f"cannot compare runs over different environments ({detail}); "
                          "compare runs of the same suite, or evaluate the missing environments first.")
    shared = sorted(set.intersection(*(set(f) for f, _ in finals)))
    if not shared:
        raise ConfigError("the runs share no problem (no common episode keys: env, task, sample, seed); "
                          "compare runs made with the same suite, seeds and task limit.")
    base, base_name = finals[0]
    out: dict[str, Any] = {"n_shared": len(shared), "baseline": base_name, "runs": [], "per_env": {}}
    for f, name in finals:
        out["runs"].append({
            "name": name,
            "n_total": len(f),
            "acc_t1": M.proportion([f[s][0] == 1.0 for s in shared]).model_dump(),
            "acc_final": M.proportion([f[s][1] == 1.0 for s in shared]).model_dump(),
            "diff_t1": M.paired_difference([base[s][0] for s in shared], [f[s][0] for s in shared]).model_dump(),
            "diff_final": M.paired_difference([base[s][1] for s in shared], [f[s][1] for s in shared]).model_dump(),
        })
    for env in env_sets[0]:
        keys = [s for s in shared if base[s][2] == env]
        out["per_env"][env] = [
            {"name": name,
             "acc_final": M.proportion([f[s][1] == 1.0 for s in keys]).model_dump(),
             "diff_final": M.paired_difference([base[s][1] for s in keys], [f[s][1] for s in keys]).model_dump()}
            for f, name in finals
        ]
    return out
