"""``agentloop sandbox``: which sandbox backends work here, and a quick containment smoke test."""

from __future__ import annotations

import typer

SMOKE = {
    "runs code": ("print(6 * 7)", lambda r: r.stdout == "42\n"),
    "no network": ("import socket\ntry:\n socket.create_connection(('1.1.1.1', 53), timeout=1); print('open')\n"
                   "except OSError:\n print('blocked')", lambda r: r.stdout == "blocked\n"),
    "timeout": ("while True: pass", lambda r: r.status == "timeout"),
    "memory limit": ("x = bytearray(8 * 1024**3)", lambda r: "MemoryError" in r.stderr),
    "repository hidden": ("import os; print(os.path.exists({repo!r}))", lambda r: r.stdout == "False\n"),
}


def register(app: typer.Typer) -> None:
    @app.command("sandbox")
    def sandbox_cmd(
        kind: str = typer.Option("auto", "--kind", "-k", help="auto | local | process | docker"),
    ) -> None:
        """Show which sandbox backends are available and run a containment smoke test on one."""
        import os
        from pathlib import Path

        from rich.console import Console

        from agentloop.errors import ConfigError, SandboxError
        from agentloop.sandbox import get_sandbox
        from agentloop.sandbox.docker import docker_status
        from agentloop.sandbox.local import HOW_TO_FIX, bwrap_status

        console = Console()
        for name, (ok, why) in (("local (bubblewrap)", bwrap_status()), ("docker", docker_status())):
            console.print(f"{name:20s} {'[green]available[/]' if ok else '[red]unavailable[/]: ' + why}")
        console.print(f"{'process':20s} limits only{' + uid drop' if os.geteuid() == 0 else ''}; never chosen by auto")
        from agentloop.sandbox.pool import fastest_interpreter, interpreter_timings

        timings = ", ".join(f"{p} {'incompatible' if t is None else f'{t * 1e3:.0f} ms'}"
                            for p, t in interpreter_timings().items())
        console.print(f"{'interpreter':20s} {fastest_interpreter()} (fastest compatible; probe: {timings})")
        try:
            sb = get_sandbox(kind, workers=1)
        except (ConfigError, SandboxError) as e:
            console.print(f"[red]{e}[/]")
            raise typer.Exit(1) from e
        repo = str(Path.cwd())
        failed = 0
        try:
            for check, (code, ok) in SMOKE.items():
                if check in ("no network", "repository hidden") and getattr(sb, "backend", "") == "process":
                    console.print(f"  {check:20s} [yellow]not isolated by the process backend[/]")
                    continue
                result = sb.run(code.format(repo=repo), timeout_s=2)
                good = ok(result)
                failed += not good
                console.print(f"  {check:20s} {'[green]ok[/]' if good else '[red]FAILED[/] ' + result.status}")
        finally:
            sb.close()
        if failed:
            console.print(f"[red]{failed} check(s) failed.[/] {HOW_TO_FIX}")
            raise typer.Exit(1)
