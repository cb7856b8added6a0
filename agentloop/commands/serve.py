"""``agentloop serve``: expose any registered policy as an OpenAI-compatible endpoint (see agentloop.serve)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve(
        policy: str = typer.Option("hf", "--policy", "-p", help="Registered policy id: hf, vllm, scripted, openai, ..."),
        model: str = typer.Option(None, "--model", "-m", help="Model folder or hub id; omit for the embedded default model."),
        adapter: str = typer.Option(None, "--adapter", help="LoRA adapter folder, e.g. a checkpoint of a run."),
        kwargs: str = typer.Option(None, "--kwargs", help="More policy arguments as JSON."),
        host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (0.0.0.0 exposes it to the network)."),
        port: int = typer.Option(8000, "--port"),
        name: str = typer.Option(None, "--name", help="Model id reported by /v1/models (default: from --model)."),
        max_batch_size: int = typer.Option(32, "--max-batch-size", help="Most conversations merged into one generate call."),
        batch_wait_s: float = typer.Option(0.01, "--batch-wait", help="Seconds to wait for more requests to batch."),
        log_level: str = typer.Option("info", "--log-level"),
    ) -> None:
        """Serve a policy at http://HOST:PORT/v1 (chat completions and models)."""
        from pathlib import Path

        from agentloop.commands.generate import build_policy
        from agentloop.serve import ServeConfig
        from agentloop.serve import serve as run_server

        served = name or (Path(model).name if model else "agentloop-default" if policy == "hf" else policy)
        config = ServeConfig(model_name=served, host=host, port=port, max_batch_size=max_batch_size,
                             batch_wait_s=batch_wait_s)
        pol = build_policy(policy, model, adapter, kwargs)
        typer.echo(f"serving {policy} policy as {served!r} at http://{host}:{port}/v1", err=True)
        run_server(pol, config, log_level=log_level)
