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
        api_key: str = typer.Option(None, "--api-key", envvar="AGENTLOOP_API_KEY", show_default=False,
                                    help="Require 'Authorization: Bearer KEY' on every request but /health "
                                    "(or set AGENTLOOP_API_KEY)."),
        alias: list[str] = typer.Option([], "--alias", help="Another model name to accept (repeatable)."),
        accept_any_model: bool = typer.Option(False, "--accept-any-model",
                                              help="Accept any 'model' in requests (else 404 for unknown names)."),
        max_n: int = typer.Option(16, "--max-n", help="Largest n (choices) per request."),
        max_tokens_limit: int = typer.Option(8192, "--max-tokens-limit", help="Largest max_tokens per request."),
        max_body_bytes: int = typer.Option(4 * 2**20, "--max-body-bytes", help="Largest request body (413 above)."),
    ) -> None:
        """Serve a policy at http://HOST:PORT/v1 (chat completions and models)."""
        from pathlib import Path

        from agentloop.commands.generate import make_cli_policy
        from agentloop.serve import ServeConfig
        from agentloop.serve import serve as run_server

        served = name or (Path(model).name if model else "agentloop-default" if policy == "hf" else policy)
        config = ServeConfig(model_name=served, host=host, port=port, max_batch_size=max_batch_size,
                             batch_wait_s=batch_wait_s, api_key=api_key or None, model_aliases=tuple(alias),
                             accept_any_model=accept_any_model, max_n=max_n, max_tokens_limit=max_tokens_limit,
                             max_body_bytes=max_body_bytes)
        pol = make_cli_policy(policy, model, adapter, kwargs)
        key_note = " (API key required)" if config.api_key else ""
        typer.echo(f"serving {policy} policy as {served!r} at http://{host}:{port}/v1{key_note}", err=True)
        run_server(pol, config, log_level=log_level)
