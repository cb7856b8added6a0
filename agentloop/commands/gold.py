"""``agentloop envs check-gold ENV [key=value ...]``: run a task file's reference solutions and list the broken tasks.

Works on every environment whose unwrapped env has ``gold_reply(task) -> str | None`` (the standard
format environments: ``code/humaneval-format-v0``, ``code/mbpp-format-v0``, ``tools/bfcl-format-v0``,
``math/qa-format-v0``). Each task's gold reply goes through the environment's own ``verify``; a task
whose gold reply fails is reported with the verifier's feedback, so a wrong canonical solution, a
test that cannot pass, or an answer the checker cannot read shows up before any training run.
"""

from __future__ import annotations

import json
from typing import Any

import typer
from pydantic import BaseModel, ConfigDict

from agentloop.errors import ConfigError


class GoldResult(BaseModel):
    """One task's gold check."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    task_id: str
    passed: bool
    has_gold: bool
    reason: str = ""


def parse_kwargs(pairs: list[str]) -> dict[str, Any]:
    """``["path=x.jsonl", "limit=3"]`` -> ``{"path": "x.jsonl", "limit": 3}`` (values read as JSON when they parse)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"environment argument {pair!r} must be key=value, e.g. path=tasks.jsonl.")
        key, value = pair.split("=", 1)
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def check_gold(env: Any) -> list[GoldResult]:
    """Run every task's gold reply through the environment's verifier."""
    inner = env.unwrapped
    gold = getattr(inner, "gold_reply", None)
    if gold is None or not hasattr(inner, "num_tasks"):
        raise ConfigError(f"{type(inner).__name__} has no gold solutions (no gold_reply method); check-gold works on "
                          "the standard format environments, e.g. code/humaneval-format-v0 path=...")
    results = []
    for i in range(inner.num_tasks()):
        task = inner.get_task(i)
        reply = gold(task)
        if reply is None:
            results.append(GoldResult(task_id=task.id, passed=False, has_gold=False, reason="no reference solution"))
            continue
        verdict = inner.verify(task, reply)
        results.append(GoldResult(task_id=task.id, passed=bool(verdict.success), has_gold=True,
                                  reason="" if verdict.success else (verdict.feedback or "failed")))
    return results


def register(app: typer.Typer) -> None:
    envs_app = next(g.typer_instance for g in app.registered_groups if g.name == "envs")

    @envs_app.command("check-gold")
    def check_gold_cmd(
        env_id: str = typer.Argument(..., help="Environment id, e.g. code/humaneval-format-v0."),
        env_args: list[str] = typer.Argument(None, help="Environment arguments as key=value, e.g. path=tasks.jsonl."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
    ) -> None:
        """Check the environment (check_env), then run its gold solutions; exit 1 if any fails."""
        from rich.console import Console

        from agentloop.checker import check_env
        from agentloop.registry import make

        console = Console()
        kwargs = parse_kwargs(env_args or [])
        check_env(make(env_id, **kwargs))
        env = make(env_id, **kwargs)
        results = check_gold(env)
        env.close()
        failed = [r for r in results if r.has_gold and not r.passed]
        missing = [r for r in results if not r.has_gold]
        if as_json:
            console.print_json(json.dumps({"env": env_id, "tasks": len(results), "failed": [r.model_dump() for r in failed],
                                           "without_gold": [r.task_id for r in missing]}))
        else:
            console.print(f"{env_id}: {len(results) - len(failed) - len(missing)}/{len(results)} gold solutions pass, "
                          f"{len(failed)} fail, {len(missing)} without a reference.")
            for r in failed:
                console.print(f"[red]FAIL[/red] {r.task_id}: {r.reason}", markup=True, highlight=False)
        if failed:
            raise typer.Exit(1)
