"""TravelPlanner (Xie et al. 2024) environments and the reference evaluator.

* :mod:`.evaluator`: the 8 commonsense and 5 hard checks, each returning (pass, reason), the six
  metrics and the FAFT feedback lines;
* :mod:`.plan` / :mod:`.query` / :mod:`.reference`: plans (JSON or the paper's text form), query
  constraints parsed from text, the reference information (lookups, text, SQLite);
* :mod:`.data`: the 45 shipped training queries with reference information and gold plans;
* environments: ``travel/sole-planning-v0`` (:mod:`.sole`), ``travel/tool-use-v0``
  (:mod:`.tooluse`), ``travel/synthetic-v0`` (:mod:`.synthetic`).

See README.md in this folder for the gold-plan pass table and DATA.md for the data's origin.
"""

from .data import TravelExample, load_train
from .evaluator import (COMMONSENSE, HARD, CheckResult, PlanEvaluation, TravelMetrics, evaluate_plan, metrics,
                        success_feedback)
from .plan import DayPlan, PlanParseError, parse_plan, plan_to_json, plan_to_text
from .query import LocalConstraint, QueryParseError, TravelQuery, parse_query
from .reference import ReferenceDB

__all__ = ["COMMONSENSE", "HARD", "CheckResult", "DayPlan", "LocalConstraint", "PlanEvaluation", "PlanParseError",
           "QueryParseError", "ReferenceDB", "TravelExample", "TravelMetrics", "TravelQuery", "evaluate_plan",
           "load_train", "metrics", "parse_plan", "parse_query", "plan_to_json", "plan_to_text", "success_feedback"]
