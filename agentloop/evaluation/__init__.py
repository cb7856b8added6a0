"""Evaluation on held-out environments: metrics (pure functions), evaluation runs, suites, reports.

``metrics`` is light (numpy and pydantic); ``report`` imports matplotlib inside its functions.
"""
