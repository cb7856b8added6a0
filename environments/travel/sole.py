"""Sole-planning mode: the reference information and the query in, a plan out, the evaluator's verdict back.

One action per episode (a :class:`~agentloop.env.TaskEnv`); wrap it in ``MultiAttempt`` for
self-correction with the evaluator's feedback. The verdict:

* ``success``: the paper's final pass (all 8 commonsense checks and every applicable hard check);
* ``reward``: 1.0 on final pass, else 0.0 (``reward="final"``), or the fraction of checks passed
  (``reward="fraction"``: commonsense plus applicable hard checks, 0 if not delivered);
* ``feedback``: the FAFT lines, one per commonsense check (plus hard checks with
  ``feedback_checks="all"``); an unparseable plan is "not delivered" and the feedback is the parse
  error; ``oracle_feedback`` adds the gold plan where one exists;
* ``info``: the evaluation, plus ``commonsense_passed``/``commonsense_total`` (of the 8 checks) and
  ``hard_passed``/``hard_total`` (of the query's applicable hard checks; an undelivered plan passes
  none of either), so evaluation reports show the paper's commonsense and hard micro rates.

Prompts: ``prompt_format="compact"`` (default) renders the reference information one record per
line (the 45 queries' boxes are ~10k tokens in the paper's pandas form, more than small models
hold; ``max_per_section=N`` keeps the first N attractions, restaurants and accommodations per
city, which may drop what a valid plan needs; ``days=[3]`` keeps the 15 three-day queries, the shortest
prompts: 677-3014 tokens with ``max_per_section=3``); ``"paper"`` uses the shipped SFT rows' system and
user messages verbatim (train split only).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from agentloop.env import Task, TaskEnv, Verdict
from agentloop.errors import ConfigError
from agentloop.types import system, user

from .data import TravelExample, load_train, paper_system_prompt, raw_train_rows
from .evaluator import COMMONSENSE, PlanEvaluation, applicable_hard, evaluate_plan
from .plan import plan_to_json, plan_to_text
from .query import TravelQuery

PLAN_INSTRUCTIONS = """You are a proficient travel planner. Using only the reference information, write a plan for the \
query: flight numbers, restaurant, attraction and accommodation names exactly as listed, each written "Name, City".
Reply with a JSON list with one object per day and the keys "days", "current_city", "transportation", "breakfast", \
"attraction", "lunch", "dinner", "accommodation". Use "-" when nothing is needed. A travel day's current_city is \
"from A to B" and its transportation copies the flight line ("Flight Number: F0123456, from A to B, Departure Time: \
..., Arrival Time: ...") or the self-driving/taxi line. Separate several attractions with ";". Start and end the trip \
in the origin city; the last day needs no accommodation. Obey the minimum nights, the budget and every constraint of \
the query."""


def faft_text(reference: str, query: str, feedback: str, plan: str) -> str:
    """FAFT's training/inference text (docs/methods.md section 5)."""
    return f"reference information box:{reference}\nquery:{query}\nfeedback:{feedback}\ndraft travel plan:{plan}"


def check_counts(ev: PlanEvaluation, query: TravelQuery) -> dict[str, int]:
    """Per-plan counts whose sums over N plans give the evaluator's micro rates (``metrics``).

    The totals do not depend on delivery: every plan owes 8 commonsense checks and the query's
    applicable hard checks, which an undelivered plan all fails.
    """
    delivered = ev.delivered
    return {"commonsense_passed": sum(bool(c.passed) for c in ev.commonsense) if delivered else 0,
            "commonsense_total": len(COMMONSENSE),
            "hard_passed": sum(bool(c.passed) for c in ev.hard) if delivered else 0,
            "hard_total": len(applicable_hard(query))}


def verdict_from_evaluation(ev: PlanEvaluation, *, reward_mode: str, include_hard: bool,
                            gold_text: str | None, query: TravelQuery | None = None) -> Verdict:
    """The environment verdict for one evaluated plan (shared by the sole-planning and tool-use modes).

    With ``query`` the info also carries :func:`check_counts` (for the micro rates).
    """
    checks = (*ev.commonsense, *ev.hard)
    if reward_mode == "fraction":
        reward = sum(bool(c.passed) for c in checks) / len(checks) if ev.delivered and checks else 0.0
    else:
        reward = float(ev.final_pass)
    feedback = ev.feedback(include_hard=include_hard)
    info: dict[str, Any] = {
        "delivered": ev.delivered, "commonsense_pass": ev.commonsense_pass, "hard_pass": ev.hard_pass,
        "failed_checks": sorted(ev.failed()), "total_cost": ev.total_cost,
        "evaluation": ev.model_dump(mode="json"), **(check_counts(ev, query) if query is not None else {}),
    }
    oracle = f"{feedback}\nA plan that passes:\n{gold_text}" if gold_text else None
    return Verdict(reward=reward, success=ev.final_pass, feedback=feedback, oracle_feedback=oracle,
                   parse_error=ev.parse_error, info=info)


def named_checks_fixed(previous: Mapping[str, Any], current: Mapping[str, Any]) -> bool | None:
    """Did the next plan pass every check the feedback on the previous one named as failed (its
    ``NAME: fail`` lines; after "plan_delivered: fail", a plan delivered)? None when no line failed.

    >>> named_checks_fixed({"feedback": "is_valid_days: fail, reason: 2 days\\nwithin_sandbox: pass"},
    ...                    {"delivered": True, "failed_checks": ["valid_cost"]})
    True
    """
    lines = [line.split(":", 1) for line in str(previous.get("feedback") or "").splitlines() if ":" in line]
    named = [name.strip() for name, rest in lines if rest.strip().startswith("fail")]
    if not named:
        return None
    if not current.get("delivered"):
        return False
    still = set(current.get("failed_checks") or [])
    return not (set(named) - {"plan_delivered"}) & still


class SolePlanningEnv(TaskEnv):
    """TravelPlanner sole-planning over a sequence of examples (default: the 45 training queries)."""

    retry_instruction = ("There might be an error in the plan above. Check every constraint of the query and "
                         "every commonsense rule, then rewrite the whole plan.")

    def __init__(self, split: Literal["train"] = "train", prompt_format: Literal["compact", "paper"] = "compact",
                 reward: Literal["final", "fraction"] = "final",
                 feedback_checks: Literal["commonsense", "all"] = "commonsense",
                 max_per_section: int | None = None, examples: Sequence[TravelExample] | None = None,
                 days: Sequence[int] | None = None):
        super().__init__()
        if max_per_section is not None and max_per_section < 1:
            raise ConfigError(f"max_per_section must be None (everything) or >= 1, got {max_per_section}.")
        self.max_per_section = max_per_section
        if split != "train":
            raise ConfigError(f"SolePlanningEnv: split={split!r} is not shipped; only 'train' (45 queries) is.")
        if prompt_format == "paper" and examples is not None:
            raise ConfigError("prompt_format='paper' needs the shipped training rows; use 'compact' with examples=.")
        if days is not None:
            if prompt_format == "paper":
                raise ConfigError("days= selects a subset; the 'paper' prompts index the shipped rows, use 'compact'.")
            if not set(days) <= {3, 5, 7}:
                raise ConfigError(f"TravelPlanner trips last 3, 5 or 7 days; got days={list(days)}.")
        self.prompt_format = prompt_format
        self.reward_mode = reward
        self.include_hard = feedback_checks == "all"
        if days is not None:  # a named subset, e.g. days=[3]: the 15 shortest queries (5 per level)
            examples = [ex for ex in (examples if examples is not None else load_train()) if ex.query.days in days]
        self._examples = tuple(examples) if examples is not None else None

    @property
    def examples(self) -> Sequence[TravelExample]:
        return self._examples if self._examples is not None else load_train()

    def num_tasks(self) -> int:
        return len(self.examples)

    def example(self, index: int) -> TravelExample:
        return self.examples[index]

    def get_task(self, index: int) -> Task:
        ex = self.example(index)
        if self.prompt_format == "paper":
            msgs = raw_train_rows()[1][index]["messages"]
            messages = (system(paper_system_prompt()), user(msgs[1]["content"]))
        else:
            messages = (system(PLAN_INSTRUCTIONS),
                        user(f"Reference information:\n{ex.reference.render(self.max_per_section)}\n\n"
                             f"Query: {ex.query.query}"))
        return Task(id=ex.id, messages=messages, answer=plan_to_json(ex.gold) if ex.gold else None,
                    metadata={"level": ex.query.level, "days": ex.query.days, "index": index})

    @staticmethod
    def feedback_uptake(previous: Mapping[str, Any], action: str, current: Mapping[str, Any]) -> bool | None:
        """Every check the feedback named as failed passes now (:func:`named_checks_fixed`)."""
        return named_checks_fixed(previous, current)

    def verify(self, task: Task, action: str) -> Verdict:
        ex = self.example(int(task.metadata["index"]))  # type: ignore[arg-type]
        ev = evaluate_plan(ex.query, action, ex.reference)
        gold = plan_to_text(ex.gold) if ex.gold else None
        return verdict_from_evaluation(ev, reward_mode=self.reward_mode, include_hard=self.include_hard,
                                       gold_text=gold, query=ex.query)


__all__ = ["PLAN_INSTRUCTIONS", "SolePlanningEnv", "check_counts", "faft_text", "named_checks_fixed",
           "verdict_from_evaluation"]
