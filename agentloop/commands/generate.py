"""``agentloop generate``: quick checks of a policy on one prompt or a JSONL file of prompts.

Each JSONL line is ``{"prompt": "..."}`` or ``{"messages": [{"role": ..., "content": ...}, ...]}`` (an
optional ``"id"`` is echoed). Output: the text (one prompt) or one JSON object per line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

from agentloop.errors import ConfigError


def make_cli_policy(policy: str, model: str | None, adapter: str | None, kwargs_json: str | None) -> Any:
    """A registered policy from CLI options (``--model``/``--adapter`` become keyword arguments)."""
    from agentloop.registry import make_policy

    try:
        kwargs = json.loads(kwargs_json) if kwargs_json else {}
    except json.JSONDecodeError as e:
        raise ConfigError(f"--kwargs must be a JSON object, e.g. '{{\"max_batch_size\": 8}}' ({e}).") from e
    if not isinstance(kwargs, dict):
        raise ConfigError("--kwargs must be a JSON object, e.g. '{\"max_batch_size\": 8}'.")
    if model is not None:
        kwargs["model"] = model
    if adapter is not None:
        kwargs["adapter"] = adapter
    return make_policy(policy, **kwargs)


def _read_jsonl(path: Path, system_prompt: str | None) -> list[tuple[Any, list[Any]]]:
    from agentloop.types import Message, system, user

    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            if "messages" in obj:
                conv = [Message.model_validate(m) for m in obj["messages"]]
            else:
                conv = ([system(system_prompt)] if system_prompt else []) + [user(str(obj["prompt"]))]
        except (ValueError, KeyError, TypeError) as e:
            raise ConfigError(f"{path}:{n}: each line must be {{\"prompt\": ...}} or {{\"messages\": [...]}} ({e}).") from e
        rows.append((obj.get("id", len(rows)), conv))
    return rows


def register(app: typer.Typer) -> None:
    @app.command("generate")
    def generate(
        prompt: str = typer.Argument(None, help="The user prompt (omit when using --jsonl)."),
        jsonl: Path = typer.Option(None, "--jsonl", help="JSONL file of prompts: {\"prompt\": ...} or {\"messages\": [...]}."),
        output: Path = typer.Option(None, "--output", "-o", help="Write JSONL results here instead of stdout."),
        policy: str = typer.Option("hf", "--policy", "-p", help="Registered policy id: hf, openai, vllm, scripted, ..."),
        model: str = typer.Option(None, "--model", "-m", help="Model folder / hub id (hf, vllm) or model id (openai)."),
        adapter: str = typer.Option(None, "--adapter", help="LoRA adapter folder (hf, vllm)."),
        kwargs: str = typer.Option(None, "--kwargs", help="More policy arguments as JSON, e.g. '{\"base_url\": \"...\"}'."),
        system_prompt: str = typer.Option(None, "--system", help="System message before each prompt."),
        max_new_tokens: int = typer.Option(128, "--max-new-tokens"),
        temperature: float = typer.Option(0.0, "--temperature", help="0 = greedy."),
        top_p: float = typer.Option(1.0, "--top-p"),
        n: int = typer.Option(1, "--n", help="Samples per prompt."),
        stop: list[str] = typer.Option(None, "--stop", help="Stop string (repeatable)."),
        seed: int = typer.Option(None, "--seed"),
        as_json: bool = typer.Option(False, "--json", help="Print JSON records even for one prompt."),
    ) -> None:
        """Generate with a policy: one prompt, or every line of a JSONL file."""
        from agentloop.types import SamplingParams, system, user

        if (prompt is None) == (jsonl is None):
            raise typer.BadParameter("give either a PROMPT or --jsonl FILE")
        rows = _read_jsonl(jsonl, system_prompt) if jsonl else \
            [(0, ([system(system_prompt)] if system_prompt else []) + [user(prompt)])]
        sampling = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, n=n,
                                  stop=tuple(stop or ()), seed=seed)
        completions = make_cli_policy(policy, model, adapter, kwargs).generate([conv for _, conv in rows], sampling)
        if prompt is not None and not as_json and output is None:
            for c in completions:
                typer.echo(c.text)
            return
        lines = [json.dumps({"id": rid, "sample": j, "text": c.text, "finish_reason": c.finish_reason,
                             "warning": c.warning}) for i, (rid, _) in enumerate(rows)
                 for j, c in enumerate(completions[i * n:(i + 1) * n])]
        if output is not None:
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text("\n".join(lines) + "\n", encoding="utf-8")
            typer.echo(f"wrote {len(lines)} completions to {output}", err=True)
        else:
            sys.stdout.write("\n".join(lines) + "\n")
