"""CLI command modules. Each module here defines ``register(app: typer.Typer)`` and is picked up by
``agentloop.cli``; modules must import heavy libraries inside their command functions, not at the top."""
