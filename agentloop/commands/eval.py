"""``agentloop eval``: evaluate a policy on held-out environments or a suite, into a resumable run directory.

Settings come from (later wins) the defaults, ``--config FILE`` (YAML/TOML, fields of
:class:`~agentloop.evaluation.evaluate.EvalConfig`), the flags, and ``--set dotted.field=value``.
"""

from __future__ import annotations

from typing import Any

import typer


def _flags(policy: str | None, policy_args: list[str], checkpoint: str | None, envs: list[str], suite: str | None,
           suites_file: str | None, max_attempts: int | None, feedback: str | None, critic: str | None, n: int | None,
           seeds: str | None, limit: int | None, temperature: float | None, max_new_tokens: int | None,
           compare: bool | None, critique_all: bool | None = None, protocols: str | None = None,
           versus: list[str] | None = None) -> tuple[dict[str, Any], list[str]]:
    """The flags that were given, as a config mapping, plus policy kwargs as overrides."""
    data: dict[str, Any] = {}
    if policy is not None:
        data.setdefault("policy", {})["id"] = policy
    if checkpoint is not None:
        data.setdefault("policy", {})["checkpoint"] = checkpoint
    for key, value in (("envs", list(envs) or None), ("suite", suite), ("suites_file", suites_file),
                       ("max_attempts", max_attempts),
                       ("feedback", feedback), ("n", n), ("limit", limit), ("compare", compare),
                       ("critique_all", critique_all), ("protocols", protocols),
                       ("versus", list(versus or []) or None)):
        if value is not None:
            data[key] = value
    if critic is not None:
        data["critic"] = {"id": critic}
    if seeds is not None:
        try:
            data["seeds"] = [int(s) for s in seeds.split(",") if s.strip()]
        except ValueError as e:
            raise typer.BadParameter(f"--seeds must be comma-separated integers, got {seeds!r}") from e
    for key, value in (("temperature", temperature), ("max_new_tokens", max_new_tokens)):
        if value is not None:
            data.setdefault("sampling", {})[key] = value
    return data, [f"policy.kwargs.{a}" for a in policy_args]


class EnvBars:
    """Rich progress bars of ``agentloop eval``: one per environment, fed by ``evaluate``'s progress callback."""

    def __init__(self, console: Any):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
            TimeRemainingColumn

        self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TextColumn("ok {task.fields[ok]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                             console=console)
        self._ids: dict[str, Any] = {}
        self._bar.start()

    def __call__(self, label: str, done: int, total: int, ok: int) -> None:
        if label not in self._ids:
            self._ids[label] = self._bar.add_task(label, total=total, ok=0)
        self._bar.update(self._ids[label], completed=done, total=total, ok=ok)

    def close(self) -> None:
        self._bar.stop()


def register(app: typer.Typer) -> None:
    @app.command("eval")
    def eval_cmd(
        config: str = typer.Option(None, "--config", "-c", help="YAML/TOML file of EvalConfig fields."),
        policy: str = typer.Option(None, "--policy", help="Policy backend id (hf, vllm, openai, scripted, plugin)."),
        policy_arg: list[str] = typer.Option([], "--policy-arg", "-p", help="Policy kwarg, key=value (repeatable)."),
        checkpoint: str = typer.Option(None, "--checkpoint", help="Checkpoint folder or run directory to evaluate."),
        env: list[str] = typer.Option([], "--env", "-e", help="Environment id, with kwargs as in reports: "
                                      "math/arith-v0[difficulty=6,split=test] (repeatable)."),
        suite: str = typer.Option(None, "--suite", "-s", help="Named suite (see `agentloop suites`)."),
        suites_file: str = typer.Option(None, "--suites-file", help="YAML/TOML file with user-defined suites."),
        max_attempts: int = typer.Option(None, "--max-attempts", "-k", help="Attempts per episode (default 2)."),
        feedback: str = typer.Option(None, "--feedback", help="none|binary|retry|env|oracle|critic (default env): "
                                     "the one protocol, when --protocols is not given."),
        protocols: str = typer.Option(None, "--protocols", help="Comma-separated protocols evaluated from one shared "
                                      "first attempt, e.g. retry,binary,env,critic:verifier (binary, env and critic "
                                      "stop at a success: oracle-stopped)."),
        versus: list[str] = typer.Option([], "--versus", help="Run directory of an earlier evaluation of the same "
                                         "problems (base model, control): paired gains per protocol (repeatable)."),
        critic: str = typer.Option(None, "--critic", help="Critic id for --feedback critic (llm, verifier)."),
        critique_all: bool = typer.Option(None, "--critique-all/--no-critique-all", help="With --feedback critic: "
                                          "critique every answer (no oracle) and stop when the critic approves."),
        n: int = typer.Option(None, "--n", help="Samples per task (default 1)."),
        seeds: str = typer.Option(None, "--seeds", help="Comma-separated environment seeds (default 0)."),
        limit: int = typer.Option(None, "--limit", help="At most this many tasks per environment."),
        temperature: float = typer.Option(None, "--temperature", help="Sampling temperature (default 0: greedy)."),
        max_new_tokens: int = typer.Option(None, "--max-new-tokens", help="Tokens per answer (default 256)."),
        compare: bool = typer.Option(None, "--compare/--no-compare", help="Also run K parallel samples per task "
                                     "(compute-matched comparison; needs --temperature > 0)."),
        set_: list[str] = typer.Option([], "--set", help="Override any field: dotted.field=value (repeatable)."),
        out: str = typer.Option(..., "--out", "-o", help="Run directory to write (or resume)."),
        resume: bool = typer.Option(False, "--resume", help="Continue the run in --out, skipping finished episodes."),
        report: bool = typer.Option(True, "--report/--no-report", help="Write OUT/report/ when done."),
        quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
        as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON on stdout instead of a table "
                                     "(paths go to stderr)."),
    ) -> None:
        """Evaluate a policy: K attempts with feedback, n samples, seeds; writes episodes, metrics and a report."""
        from rich.console import Console

        from agentloop.config import load_config, merge, read_config_file
        from agentloop.evaluation.evaluate import EvalConfig, evaluate

        data, policy_overrides = _flags(policy, policy_arg, checkpoint, env, suite, suites_file, max_attempts, feedback, critic,
                                        n, seeds, limit, temperature, max_new_tokens, compare, critique_all,
                                        protocols, versus)
        base = read_config_file(config) if config else {}
        cfg = load_config(EvalConfig, None, [*policy_overrides, *set_], base=merge(base, data))
        console = Console(stderr=as_json)
        bars = None if quiet else EnvBars(console)
        try:
            result = evaluate(cfg, out, resume=resume, progress=bars)
        finally:
            if bars is not None:
                bars.close()
        if as_json:
            import json

            print(json.dumps(result.metrics, indent=2, default=str))
        else:
            _print_summary(console, result.metrics)
        console.print(f"run directory: {result.run.path} ({result.new_episodes} new episodes)")
        if report:
            from agentloop.evaluation.report import build_report

            _, page = build_report([result.run.path])
            console.print(f"report: {page}")

    @app.command("suites")
    def suites_cmd(suites_file: str = typer.Option(None, "--suites-file", help="Also load suites from this file."),
                   as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
        """List the named evaluation suites."""
        import json

        from agentloop.commands import print_table
        from agentloop.evaluation.suites import load_suites

        suites = sorted(load_suites(suites_file).items())
        if as_json:
            print(json.dumps([{"name": name, **s.model_dump(mode="json")} for name, s in suites], indent=2))
            return
        rows = [(name, ", ".join(e.label + (f" (first {e.limit})" if e.limit else "") for e in s.envs), s.description)
                for name, s in suites]
        print_table("evaluation suites", ("name", "environments", "description"), rows)


def _print_summary(console: Any, metrics: dict[str, Any]) -> None:
    """One table per protocol (Acc@t1..tK and the t1 -> t2 transitions), then the paired gains over --versus runs."""
    from agentloop.commands import print_table
    from agentloop.evaluation.metrics import Estimate

    k = int(metrics.get("max_attempts", 1))
    protocols = metrics.get("protocols") or {"": metrics}
    for name, m in protocols.items():
        stop = " (oracle-stopped: stops at the first success)" if m.get("oracle_stopped") else \
            (" (no oracle: every attempt played)" if name else "")
        title = f"accuracy by attempt (%, 95% interval, N){' under ' + name if name else ''}{stop}"
        columns = ["environment"] + [f"Acc@t{t}" for t in range(1, k + 1)] + \
            (["delta(t1,t2)", "i->c", "c->i"] if k > 1 else [])
        rows = []
        for label, b in list(m.get("per_env", {}).items()) + [("overall", m.get("overall", {}))]:
            cells = [Estimate.model_validate(a).fmt() for a in b.get("acc_by_attempt", [])]
            if k > 1 and "delta_i_to_c" in b:
                cells += [Estimate.model_validate(b[key]).fmt()
                          for key in ("delta_t1_t2", "delta_i_to_c", "delta_c_to_i")]
            rows.append((label, *cells))
        if not console.is_terminal:  # plain tables have no title: say which protocol this one is
            console.print(f"# {title}", markup=False, highlight=False, soft_wrap=True)
        print_table(title, columns, rows, console)
    for other, per in metrics.get("versus", {}).items():
        for name, g in per.items():
            parts = [f"{label} {Estimate.model_validate(g[key]).fmt()}" for key, label in
                     (("gain_acc_t1", "Acc@t1"), ("gain_acc_t2", "Acc@t2"), ("gain_delta", "delta(t1,t2)")) if key in g]
            console.print(f"this run - {other} under {name} (paired, {g['n']} problems): " + ", ".join(parts))
