"""``agentloop envs check-gold ENV [key=value ...]``: run a task file's reference solutions and list the broken tasks.

Works on every environment whose unwrapped env has ``gold_reply(task) -> str | None`` (the standard
format environments: ``code/humaneval-format-v0``, ``code/mbpp-format-v0``, ``tools/bfcl-format-v0``,
``math/qa-format-v0``). Each task's gold reply goes through the environment's own ``verify``; a task
whose gold reply fails is reported with the verifier's feedback, so a wrong canonical solution, a
test that cannot pass, or an answer the checker cannot read shows up before any training run.

``agentloop envs export-gold ENV OUT.jsonl [key=value ...]`` writes the gold replies that pass as chat
SFT rows (``{"messages": [...prompt, {"role": "assistant", "content": gold}]}``): the teacher data of a
gold-SFT baseline or a warm start (``tools/synthetic-calls-v0``, ``travel/synthetic-v0``).
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


def _gold_source(env: Any, hint: str) -> tuple[Any, Any]:
    """(the unwrapped environment, its ``gold_reply``); ConfigError ending with ``hint`` when it has none."""
    inner = env.unwrapped
    gold = getattr(inner, "gold_reply", None)
    if gold is None or not hasattr(inner, "num_tasks"):
        raise ConfigError(f"{type(inner).__name__} has no gold solutions (no gold_reply method); {hint}")
    return inner, gold


def check_gold(env: Any) -> list[GoldResult]:
    """Run every task's gold reply through the environment's verifier."""
    inner, gold = _gold_source(env, "check-gold works on the standard format environments, e.g. "
                                    "code/humaneval-format-v0 path=...")
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


def gold_conversations(env: Any, limit: int | None = None) -> list[list[dict[str, str]]]:
    """SFT rows from gold solutions: each task's prompt messages plus its gold reply as the assistant turn.

    Only replies that pass the environment's own ``verify`` are kept, so a row is always a correct
    answer in exactly the format the environment parses (the "teacher data" of a warm start or of a
    gold-SFT baseline). ``{"messages": [...]}`` per row is the chat format SFT trainers read.
    """
    inner, gold = _gold_source(env, "export-gold works on environments that define gold_reply(task), e.g. "
                                    "tools/synthetic-calls-v0.")
    rows = []
    for i in range(inner.num_tasks() if limit is None else min(limit, inner.num_tasks())):
        task = inner.get_task(i)
        reply = gold(task)
        if reply is None or not inner.verify(task, reply).success:
            continue
        rows.append([*(m.model_dump(mode="json", include={"role", "content"}) for m in task.messages),
                     {"role": "assistant", "content": reply}])
    return rows


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

    @envs_app.command("export-gold")
    def export_gold_cmd(
        env_id: str = typer.Argument(..., help="Environment id, e.g. tools/synthetic-calls-v0."),
        out: str = typer.Argument(..., help="JSONL file to write, one {\"messages\": [...]} row per task."),
        env_args: list[str] = typer.Argument(None, help="Environment arguments as key=value, e.g. level=parallel."),
        limit: int | None = typer.Option(None, "--limit", help="At most this many tasks (default: all)."),
    ) -> None:
        """Write the gold replies that pass the environment's verifier as chat SFT rows (prompt + assistant reply)."""
        from pathlib import Path

        from agentloop.registry import make

        env = make(env_id, **parse_kwargs(env_args or []))
        rows = gold_conversations(env, limit)
        env.close()
        Path(out).write_text("".join(json.dumps({"messages": r}) + "\n" for r in rows), encoding="utf-8")
        typer.echo(f"{env_id}: wrote {len(rows)} gold conversations to {out}.")
