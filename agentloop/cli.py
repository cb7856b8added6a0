"""The ``agentloop`` command line (Typer + rich).

Core commands live here (``envs``, ``plugins``); every other command lives in a module of
``agentloop.commands`` that defines ``register(app)``, so subsystems add commands without touching
this file. Heavy imports happen inside commands: ``agentloop --help`` starts fast.
"""

from __future__ import annotations

import importlib
import json
import pkgutil

import typer
from rich.console import Console
from rich.markup import escape

from agentloop import commands
from agentloop.commands import print_table
from agentloop.errors import AgentLoopError

app = typer.Typer(help="agentloop: language-model agents that improve from their environments' feedback.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
envs_app = typer.Typer(help="List, inspect and check registered environments.", no_args_is_help=True)
app.add_typer(envs_app, name="envs")
console = Console()
err_console = Console(stderr=True)


@envs_app.command("list")
def envs_list(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """Every registered environment (built-ins and plugins)."""
    from agentloop.registry import envs

    specs = envs.list()
    records = [{"id": s.id, "max_attempts": s.max_attempts, "feedback": s.feedback if s.max_attempts > 1 else None,
                "source": s.source, "description": s.description} for s in specs]
    if as_json:
        _print_json(records)
        return
    print_table(f"{len(specs)} environments", ("id", "attempts", "feedback", "source", "description"),
                [(r["id"], str(r["max_attempts"]), r["feedback"] or "-", r["source"] or "code", r["description"])
                 for r in records], console)


def _print_json(data: object) -> None:
    """JSON on stdout: indented on a terminal, plain (no colour codes) through a pipe."""
    if console.is_terminal:
        console.print_json(json.dumps(data))
    else:
        print(json.dumps(data, indent=2))


@envs_app.command("show")
def envs_show(env_id: str) -> None:
    """The registration of one environment and the first observation of seed 0."""
    from agentloop.registry import envs, make

    s = envs.spec(env_id)
    console.print_json(s.model_dump_json(exclude={"entry_point"}) if callable(s.entry_point) else s.model_dump_json())
    env = make(env_id)
    obs, info = env.reset(seed=0)
    console.rule("reset(seed=0)")
    for m in obs:
        console.print(f"[bold]{m.role}[/bold]: {m.content}")
    console.print(f"info: {info}")
    env.close()


@envs_app.command("check")
def envs_check(env_id: str = typer.Argument(None, help="Environment id; omit with --all."),
               env_args: list[str] = typer.Argument(None, help="Constructor arguments key=value, e.g. path=tasks.jsonl."),
               all_: bool = typer.Option(False, "--all", help="Check every registered environment.")) -> None:
    """Run the conformance check (agentloop.check_env) on one or all environments.

    ``agentloop envs check code/humaneval-format-v0 path=HumanEval.jsonl`` checks a format on your file.
    """
    from agentloop.checker import check_env
    from agentloop.commands.gold import parse_kwargs
    from agentloop.registry import envs, make

    if not env_id and not all_:
        raise typer.BadParameter("give an environment id or --all")
    if all_ and env_args:
        raise typer.BadParameter("key=value arguments apply to one environment id, not --all")
    try:
        kwargs = parse_kwargs(env_args or [])
    except ValueError as e:
        raise typer.BadParameter(str(e)) from e
    ids = envs.ids() if all_ else [env_id]
    failed = 0
    for i in ids:
        try:
            check_env(make(i, **kwargs))
            console.print(f"[green]ok[/green]   {i}")
        except Exception as e:
            failed += 1
            console.print(f"[red]FAIL[/red] {i}: {type(e).__name__}: {e}")
    if failed:
        raise typer.Exit(1)


@app.command("plugins")
def plugins(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """Which plugins loaded, from which distribution, and what failed and why.

    The table gives each plugin's number of registered ids; the ids follow it, one plugin per line.
    """
    from rich.text import Text

    from agentloop.registry import all_plugins

    infos = all_plugins()
    if as_json:
        _print_json([p.model_dump() for p in infos])
        return
    styles = {"loaded": "green", "failed": "red"}
    rows = []
    for p in infos:
        detail = str(len(p.registered)) if p.status == "loaded" else p.error.splitlines()[0] if p.error else ""
        rows.append((p.group.split(".")[-1], p.name, p.distribution, p.version,
                     Text(p.status, style=styles.get(p.status, "")), detail))
    print_table("plugins", ("group", "name", "distribution", "version", "status", "ids / error"), rows, console)
    listed = [p for p in infos if p.status == "loaded" and p.registered]
    if listed:
        console.print()
    for p in listed:
        line = f"{p.group.split('.')[-1]} {p.name} ({p.distribution}): {', '.join(p.registered)}"
        if console.is_terminal:
            console.print(Text(line), soft_wrap=False)  # wrapped at the terminal's width, nothing cut
        else:
            print(line)


COMMANDS_GROUP = "agentloop.commands"


def _register_command_modules() -> None:
    for mod in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{mod.name}")
        module.register(app)


def _register_plugin_commands() -> None:
    """Commands from plugins: entry points in the group ``agentloop.commands`` naming a ``register(app)`` callable.

    ``AGENTLOOP_PLUGINS`` limits them like the other plugin groups; a plugin that fails to load is
    reported with a warning and the other commands still work.
    """
    import importlib.metadata as md
    import os
    import warnings

    from agentloop.registry import PLUGINS_ENV_VAR

    allowed = os.environ.get(PLUGINS_ENV_VAR)
    allow = None if allowed is None else {a.strip() for a in allowed.split(",") if a.strip()}
    for ep in md.entry_points(group=COMMANDS_GROUP):
        dist = ep.dist.name if ep.dist is not None else ""
        if allow is not None and ep.name not in allow and dist not in allow:
            continue
        try:
            ep.load()(app)
        except Exception as e:  # a broken plugin must not take the CLI down
            warnings.warn(f"agentloop: command plugin {ep.name!r} from {dist or 'unknown'!r} failed to load: "
                          f"{type(e).__name__}: {e}", RuntimeWarning, stacklevel=2)


_register_command_modules()
_register_plugin_commands()


def configure_logging(level: int | str | None = None) -> None:
    """Route the library's ``logging`` records (logger ``agentloop``) to a rich handler on stderr.

    The level comes from ``level``, else ``AGENTLOOP_LOG_LEVEL``, else INFO. Libraries calling
    agentloop configure logging themselves; nothing is printed unless they do.
    """
    import logging
    import os

    from rich.logging import RichHandler

    logger = logging.getLogger("agentloop")
    if any(isinstance(h, RichHandler) for h in logger.handlers):
        return
    handler = RichHandler(console=err_console, show_path=False, rich_tracebacks=False, log_time_format="[%X]")
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level or os.environ.get("AGENTLOOP_LOG_LEVEL", "INFO").upper())
    logger.propagate = False


QUIET_WARNINGS = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)


def quiet_library_warnings() -> None:
    """Hide other libraries' deprecation notices (transformers, peft, torch...) from command output.

    They are addressed to agentloop's developers, not to its users, and printed on every run. Not done
    when the user chose warning filters (``python -W``, ``PYTHONWARNINGS``); processes the command
    starts (training under accelerate, Ray workers) inherit the same filters through ``PYTHONWARNINGS``.
    """
    import os
    import sys
    import warnings

    if sys.warnoptions or os.environ.get("PYTHONWARNINGS"):
        return
    for category in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", category=category)
    warnings.filterwarnings("default", category=DeprecationWarning, module=r"agentloop(\.|$)")  # ours: for users
    os.environ["PYTHONWARNINGS"] = ",".join(f"ignore::{c.__name__}" for c in QUIET_WARNINGS)


def main() -> None:
    quiet_library_warnings()
    configure_logging()
    try:
        app()
    except AgentLoopError as e:
        err_console.print(f"[red]error:[/red] {escape(str(e))}")  # messages quote "agentloop[vllm]" etc.
        raise SystemExit(2) from e


if __name__ == "__main__":
    main()
