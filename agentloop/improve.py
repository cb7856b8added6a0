"""The main job: ``agentloop improve`` = iterations of collect -> train -> evaluate on held-out tasks -> checkpoint.

Iteration 0 evaluates the starting model. Iteration ``i >= 1`` collects training episodes with the
current model (fresh training tasks each iteration), builds the method's training examples, trains,
commits checkpoint ``iter-i`` and evaluates it on the held-out split. The held-out split is a
different task source (``env.eval_kwargs``, e.g. another generator seed or the MBPP test split);
training tasks whose prompt text also occurs in the held-out split are skipped, so no held-out
problem is ever trained on. The report compares the final model with the starting model on the
same held-out tasks: before, after, the gain and its paired-bootstrap 95% interval.

Everything goes to a :class:`~agentloop.runs.RunDir`: the resolved config, every episode (appended
as it finishes, keyed ``phase|iter|task|sample``), one metrics row per iteration
(``metrics.jsonl``), the summary (``metrics.json``) and the checkpoints. ``resume=True`` reloads the
last committed checkpoint and skips every recorded episode, so a run killed at any point (SIGKILL
included) finishes with exactly the episodes an uninterrupted run has.

Generation (``generation``): ``backend: hf`` generates with a bf16 copy of the in-training model,
refreshed in memory after each training phase (default). ``backend: vllm`` builds one vLLM engine from
the base model folder with LoRA enabled; after each training phase the adapter is saved to
``RUN/adapters`` and handed to the running engine (:class:`~agentloop.training.distributed.AdapterSync`,
no base-model reload), so it needs ``train.lora``; ``sync: adapter`` does the same with the hf policy.
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
need its own copy of the trained weights); the vllm backend is tested only where vLLM and a GPU exist.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agentloop.algorithms.critique_loop import CritiqueLoopConfig
from agentloop.algorithms.faft import FAFTConfig
from agentloop.algorithms.leti import LeTIConfig
from agentloop.algorithms.rise import RISEConfig
from agentloop.algorithms.rs_sft import RSSFTConfig
from agentloop.algorithms.score import SCoReConfig
from agentloop.distributed import DistributedConfig
from agentloop.errors import ConfigError
from agentloop.training.trainer import TrainConfig
from agentloop.types import Episode, FeedbackMode, SamplingParams

__all__ = ["AdapterSyncSettings", "CollectSettings", "EnvSettings", "EvalSettings", "GenerationSettings", "ImproveConfig",
           "ImproveResult", "improve"]

MethodSettings = Annotated[RSSFTConfig | RISEConfig | SCoReConfig | LeTIConfig | CritiqueLoopConfig | FAFTConfig,
                           Field(discriminator="name")]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EnvSettings(_Section):
    """Which environment, and which tasks train and which are held out."""

    id: str = Field(description="Registered environment id, e.g. math/arith-v0.")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Constructor kwargs shared by both splits.")
    train_kwargs: dict[str, Any] = Field(default_factory=dict, description="Kwargs of the training split (e.g. seed: 0).")
    eval_kwargs: dict[str, Any] = Field(default_factory=dict, description="Kwargs of the held-out split (e.g. seed: 1).")
    train_tasks: int = Field(default=128, ge=1, description="Fresh training tasks per iteration.")
    eval_tasks: int = Field(default=200, ge=1, description="Held-out tasks evaluated every iteration.")
    dedupe: bool = Field(default=True, description="Skip training tasks whose prompt occurs in the held-out split.")

    @model_validator(mode="after")
    def _held_out(self) -> EnvSettings:
        if {**self.kwargs, **self.train_kwargs} == {**self.kwargs, **self.eval_kwargs}:
            raise ValueError("env.train_kwargs and env.eval_kwargs select the same tasks: the held-out split must differ "
                             "from the training split (e.g. train_kwargs: {seed: 0}, eval_kwargs: {seed: 1}, or MBPP "
                             "split: train vs test).")
        return self


class CollectSettings(_Section):
    """Sampling of training episodes."""

    temperature: float = Field(default=1.0, ge=0.0, description="Sampling temperature (the methods use 1.0).")
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    max_new_tokens: int = Field(default=256, ge=1, description="Reply length cap: generation time grows with it.")
    stop: tuple[str, ...] = Field(default=(), description="Stop strings (cut the reply early: faster).")
    batch_size: int = Field(default=64, ge=1, description="Episodes generated together (rollout concurrency).")
    step_workers: int = Field(default=1, ge=1, description="Threads stepping environments (code sandboxes).")


class EvalSettings(_Section):
    """Held-out evaluation: greedy, every iteration."""

    attempts: int = Field(default=1, ge=1, le=8, description="Attempts per held-out task (>1: self-correction metrics).")
    feedback: FeedbackMode = Field(default="retry", description="Feedback between evaluation attempts.")
    max_new_tokens: int = Field(default=256, ge=1)
    stop: tuple[str, ...] = ()
    batch_size: int = Field(default=64, ge=1)
    metric: Literal["t1", "final"] = Field(default="t1", description="Which accuracy the gain is reported on: "
                                           "first attempt, or the last attempt (self-correction methods).")
    every: int = Field(default=1, ge=1, description="Evaluate every N iterations; the starting model and the last "
                       "iteration are always evaluated (a larger N saves evaluation time on CPU).")


class AdapterSyncSettings(_Section):
    """How the trained LoRA adapter reaches a separate generation engine (``generation.sync: adapter``)."""

    placement: Literal["shared", "separate"] = Field(
        default="shared", description="'shared': trainer and vLLM on one GPU (vLLM takes engine_memory_share of it); "
        "'separate': vLLM on the first visible GPU, the trainer on trainer_device.")
    engine_memory_share: float = Field(default=0.35, gt=0.0, lt=1.0,
                                       description="vLLM gpu_memory_utilization when it shares the GPU with training.")
    trainer_device: str = Field(default="cuda:1", description="Trainer device when placement='separate'.")
    keep_last: int = Field(default=2, ge=1, description="Adapter folders kept under RUN/adapters.")

    def sync_config(self, directory: str | Path) -> Any:
        from agentloop.training.distributed import AdapterSyncConfig

        return AdapterSyncConfig(directory=str(directory), **self.model_dump())


class GenerationSettings(_Section):
    """Which engine generates the rollouts (collection and held-out evaluation), and where it runs."""

    backend: Literal["hf", "vllm"] = Field(
        default="hf", description="'hf': transformers in this process; 'vllm': a vLLM engine built once from the base "
        "model folder with LoRA enabled (needs a CUDA GPU and train.lora).")
    sync: Literal["auto", "copy", "adapter"] = Field(
        default="auto", description="How trained weights reach generation after each training phase. 'copy': a "
        "generation copy of the in-training model is refreshed in memory (hf only); 'adapter': the LoRA adapter is "
        "saved to RUN/adapters and loaded by the engine (no base-model reload). auto = adapter for vllm, copy for hf.")
    adapters: AdapterSyncSettings = Field(default_factory=AdapterSyncSettings, description="Adapter sync settings.")
    vllm_kwargs: dict[str, Any] = Field(default_factory=dict, description="More VLLMPolicy arguments "
                                        "(max_model_len, engine_kwargs, ...).")
    distributed: DistributedConfig = Field(
        default_factory=DistributedConfig, description="Ray rollouts: address null = single process (default); with "
        "an address, environment workers run on Ray and this process generates for all of them (central).")

    @property
    def adapter_sync(self) -> bool:
        return self.sync == "adapter" or (self.sync == "auto" and self.backend == "vllm")

    @model_validator(mode="after")
    def _check(self) -> GenerationSettings:
        if self.backend == "vllm" and self.sync == "copy":
            raise ValueError("generation.backend=vllm with sync=copy: a running vLLM engine cannot take in-memory "
                             "weights; it receives LoRA adapters (sync: adapter or auto).")
        if self.distributed.generation == "per_node":
            raise ValueError("generation.distributed.generation=per_node is not possible in improve: each worker would "
                             "build its own model from the base weights and never see the trained ones (the hf "
                             "generation copy lives in this process; adapters are pushed to this process's engine). "
                             "Use generation: central (workers step environments, this process generates).")
        self.adapters.sync_config("adapters")  # AdapterSyncConfig's own rules (e.g. separate placement device)
        return self


class ImproveConfig(_Section):
    """The whole improve run. ``agentloop improve CONFIG key.sub=value ...`` builds this."""

    env: EnvSettings
    method: MethodSettings = Field(description="The self-improvement method; its name field selects it.")
    model: str | None = Field(default=None, description="Model folder or hub id; None = the embedded SmolLM2-135M.")
    iterations: int = Field(default=2, ge=0, description="Collect/train/evaluate iterations after the baseline.")
    collect: CollectSettings = Field(default_factory=CollectSettings)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalSettings = Field(default_factory=EvalSettings)
    generation: GenerationSettings = Field(default_factory=GenerationSettings,
                                           description="Generation backend, weight sync and Ray rollouts.")
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto", description="auto = cuda when available.")
    generation_dtype: Literal["auto", "bfloat16", "float32"] = Field(
        default="auto", description="Precision of the generation copy; auto = bf16 where supported.")
    threads: int | None = Field(
        default=None, ge=1, description="CPU threads for torch; None = auto: all cores, or 1 when the machine is "
        "already busy (load average >= cores), because OpenMP threads competing with other processes stall "
        "(measured on 2 shared cores: 64x24 tokens in 59 s with 1 thread, 250 s with 2).")
    seed: int = 0
    out: str | None = Field(default=None, description="Run directory; default runs/improve-<method>-<time>.")

    @model_validator(mode="after")
    def _conflicts(self) -> ImproveConfig:
        if self.method.name == "leti" and self.train.lora is not None:
            raise ValueError("method.name=leti with train.lora set: LeTI adds reward tokens whose new embeddings must be "
                             "trained, which a LoRA adapter does not do; use full fine-tuning (train.lora: null).")
        if self.method.name == "score" and self.eval.attempts < 2:
            raise ValueError("method.name=score trains a second attempt; evaluate it with eval.attempts >= 2 "
                             "(and eval.feedback: retry) so the report shows Acc@t2.")
        if self.eval.metric == "final" and self.eval.attempts < 2:
            raise ValueError("eval.metric=final needs eval.attempts >= 2 (with one attempt it equals t1).")
        return self

    @model_validator(mode="after")
    def _generation_rules(self) -> ImproveConfig:
        g = self.generation
        if g.adapter_sync and self.train.lora is None:
            raise ValueError(f"generation.backend={g.backend} with adapter sync needs train.lora: only the LoRA adapter "
                             "is handed to the generation engine after each training phase (full fine-tuning would "
                             "mean reloading the whole model); set train.lora: {r: 16}, or use backend hf, sync copy.")
        if g.backend == "vllm" and self.device == "cpu":
            raise ValueError("generation.backend=vllm needs a CUDA GPU; set device: auto or cuda, or use backend hf.")
        if g.backend == "vllm" and self.train.lora is not None and "max_lora_rank" in g.vllm_kwargs \
                and g.vllm_kwargs["max_lora_rank"] < self.train.lora.r:
            raise ValueError(f"generation.vllm_kwargs.max_lora_rank={g.vllm_kwargs['max_lora_rank']} is below "
                             f"train.lora.r={self.train.lora.r}: vLLM would refuse the trained adapter.")
        return self


class ImproveResult(BaseModel):
    """The summary printed at the end and written to metrics.json."""

    run_dir: str
    method: str
    env: str
    metric: str
    n: int
    before: float
    after: float
    gain: float
    gain_lo: float
    gain_hi: float
    excludes_zero: bool
    iterations: list[dict[str, Any]]
    wall_s: float
    threads: int = 0
    load_avg_start: float | None = Field(default=None, description="1-minute load average when the run started.")


# -- environments and tasks ---------------------------------------------------------------------------
def env_factory(cfg: EnvSettings, split: Literal["train", "eval"]) -> Callable[[], Any]:
    from agentloop.registry import make

    kwargs = {**cfg.kwargs, **(cfg.train_kwargs if split == "train" else cfg.eval_kwargs)}

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


class PhaseProgress:
    """A rich progress bar for one phase (collect / train / eval); silent without a console."""

    def __init__(self, label: str, console: Any = None):
        self.label, self.console = label, console
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> PhaseProgress:
        if self.console is not None:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TimeElapsedColumn(), TextColumn("{task.fields[info]}"), console=self.console)
            self._progress.start()
            self._task = self._progress.add_task(self.label, total=None, info="")
        return self

    def update(self, done: int, total: int) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=done, total=total)

    def update_loss(self, step: int, total: int, loss: float) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=step, total=total, info=f"loss {loss:.4f}")

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()


# -- the loop ------------------------------------------------------------------------------------------
class _Loop:
    """State of one improve run (model, trainer, generation copy, run dir)."""

    def __init__(self, cfg: ImproveConfig, out: Path, resume: bool, console: Any):
        import torch

        from agentloop.algorithms import build_algorithm
        from agentloop.runs import RunDir, key_of
        from agentloop.training.trainer import (
            Trainer,
            bf16_supported,
            load_model,
            seed_everything,
        )

        self.cfg, self.console, self.t0 = cfg, console, time.perf_counter()
        self.load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        torch.set_num_threads(cpu_threads(cfg.threads))
        self.run = RunDir.create(out, cfg, kind="improve", resume=resume, ignore=("out",))
        self.recorded: dict[str, Episode] = {key_of(e): e for e in self.run.episodes()}
        seed_everything(cfg.seed)
        device = "cuda" if cfg.device == "auto" and torch.cuda.is_available() else ("cpu" if cfg.device == "auto" else cfg.device)
        device = _trainer_device(cfg.generation, device)  # vllm: the trainer goes where the placement says
        self.algorithm = build_algorithm(cfg.method)
        self.model, self.tokenizer = load_model(cfg.model, device=device, lora=cfg.train.lora,
                                                gradient_checkpointing=cfg.train.gradient_checkpointing)
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
        self._build_generation(device, use_bf16)
        from agentloop.algorithms.base import ConditionedPolicy

        self.policy = ConditionedPolicy(self.gen_policy, self.algorithm.condition)
        self.eval_idx = eval_indices(cfg.env)
        eval_env = env_factory(cfg.env, "eval")()
        self.held_out = {_prompt_text(eval_env, i) for i in self.eval_idx}

    def _build_generation(self, device: str, use_bf16: bool) -> None:
        """The generation policy (hf copy, or an engine fed adapters), and the Ray engine when configured."""
        g, batch = self.cfg.generation, max(self.cfg.collect.batch_size, self.cfg.eval.batch_size)
        self.gen: Any = None
        self.adapter_sync: Any = None
        if not g.adapter_sync:
            import torch

            from agentloop.training.policy import GenerationModel

            self.gen = GenerationModel(self.model, self.tokenizer, torch.bfloat16 if use_bf16 else torch.float32,
                                       max_batch_size=batch)
            self.gen_policy = self.gen.policy
        else:
            from agentloop.training.distributed import AdapterSync

            self.gen_policy = _adapter_policy(self.cfg, device, use_bf16, batch)
            self.adapter_sync = AdapterSync(self.gen_policy, g.adapters.sync_config(self.run.path / "adapters"))
            if self.start > 1:  # resumed: the engine starts from the base model; give it the restored adapter
                self.adapter_sync.push(self.model, self.start - 1)
        self.ray_engine: Any = None
        if g.distributed.address is not None:
            from agentloop.distributed import RayRolloutEngine
            from agentloop.rollout import RolloutConfig

            # Built once (worker actors start once); each collection points it at its policy, critic and sampling.
            self.ray_engine = RayRolloutEngine(self.gen_policy, config=RolloutConfig(), distributed=g.distributed)

    def _engine(self, policy: Any, critic: Any, config: Any) -> Any:
        """The rollout engine of one collection: single-process, or the shared Ray engine set up for it."""
        if self.ray_engine is None:
            from agentloop.rollout import RolloutEngine

            return RolloutEngine(policy, critic, config)
        return self.ray_engine.using(policy, critic, config)

    def close(self) -> None:
        """Stop the Ray workers (and Ray, if the engine started it)."""
        if getattr(self, "ray_engine", None) is not None:
            self.ray_engine.close()
            self.ray_engine = None

    def _latest_checkpoint(self) -> tuple[int, Path] | None:
        found = [(int(p.name.split("-")[1]), p) for p in self.run.checkpoints() if p.name.startswith("iter-")]
        return max(found) if found else None

    def log(self, text: str) -> None:
        if self.console is not None:
            self.console.print(f"[{time.perf_counter() - self.t0:7.1f}s] {text}")

    def _progress(self, label: str) -> PhaseProgress:
        return PhaseProgress(label, console=self.console)

    # -- phases -------------------------------------------------------------------------------------
    def collect(self, specs: Sequence[Any], sampling: SamplingParams, batch: int, label: str, critic: Any = None,
                policy: Any = None) -> list[Episode]:
        from agentloop.algorithms.base import Collector

        with self._progress(label) as bar:
            collector = Collector(policy or self.policy, sampling, run=self.run, critic=critic, max_concurrency=batch,
                                  step_workers=self.cfg.collect.step_workers, progress=bar.update,
                                  engine_factory=self._engine)
            episodes = collector.collect(specs, self.recorded)
        for s, e in zip(specs, episodes):
            self.recorded[s.key] = e
        return episodes

    def evaluate(self, iteration: int) -> dict[str, Any]:
        from agentloop.algorithms.base import EpisodeSpec
        from agentloop.evaluation.metrics import (
            accuracy_at,
            delta_c_to_i,
            delta_i_to_c,
            pad_attempts,
        )
        from agentloop.wrappers import MultiAttempt

        c, make_env = self.cfg.eval, env_factory(self.cfg.env, "eval")
        env = make_env if c.attempts == 1 else (lambda: MultiAttempt(make_env(), k=c.attempts, feedback=c.feedback))
        specs = [EpisodeSpec(key=f"eval|iter={iteration}|task={i}", env=env, options={"index": i},
                             metadata={"phase": "eval", "iteration": iteration, "task_index": i})
                 for i in self.eval_idx]
        sampling = SamplingParams(temperature=0.0, max_new_tokens=c.max_new_tokens, stop=c.stop)
        eps = self.collect(specs, sampling, c.batch_size, f"eval   iter {iteration}")
        attempts = [pad_attempts(e.attempt_success, c.attempts) for e in eps]
        row: dict[str, Any] = {"iteration": iteration, "phase": "eval", "n": len(eps),
                               "acc@t1": accuracy_at(attempts, 1).value, "eval_errors": sum(e.error is not None for e in eps)}
        if c.attempts > 1:
            row[f"acc@t{c.attempts}"] = accuracy_at(attempts, c.attempts).value
            row["delta_i->c"] = delta_i_to_c(attempts, 1, c.attempts).value
            row["delta_c->i"] = delta_c_to_i(attempts, 1, c.attempts).value
        row["correct"] = [bool(a[0] if c.metric == "t1" else a[-1]) for a in attempts]
        return row

    def train_iteration(self, iteration: int) -> dict[str, Any]:
        from agentloop.algorithms.base import TaskSet

        cfg = self.cfg
        tasks = TaskSet(make_env=env_factory(cfg.env, "train"), indices=train_indices(cfg.env, iteration, self.held_out))
        sampling = SamplingParams(temperature=cfg.collect.temperature, top_p=cfg.collect.top_p,
                                  max_new_tokens=cfg.collect.max_new_tokens, stop=cfg.collect.stop,
                                  seed=cfg.seed * 1000 + iteration)
        specs = self.algorithm.specs(iteration, tasks)
        critic = self.algorithm.make_critic(self.gen_policy) if hasattr(self.algorithm, "make_critic") else None
        policy = self.algorithm.collection_policy(self.policy) if hasattr(self.algorithm, "collection_policy") else None
        episodes = self.collect(specs, sampling, cfg.collect.batch_size, f"collect iter {iteration}", critic, policy)
        if cfg.method.data == "union":
            episodes = [e for k, e in self.recorded.items() if k.startswith("collect|")
                        and int(e.metadata.get("iteration", 0)) <= iteration]
        examples = self.algorithm.examples(episodes, self.tokenizer)
        if cfg.method.restart_from_base and iteration > 1:
            self._reload_base()
        ckpt = self.run.checkpoints_path / f"iter-{iteration}"
        if cfg.train.distributed.num_processes > 1:
            # train.distributed: the phase runs in a DDP process group on the saved weights + examples;
            # its rank 0 writes the checkpoint, which is loaded back into self.model.
            from agentloop.training.distributed import fit_in_processes

            self.log(f"train  iter {iteration}: {cfg.train.distributed.num_processes} processes")
            stats = fit_in_processes(self.trainer, examples, self.algorithm.objective, ckpt, model=cfg.model,
                                     extra={"iteration": iteration})
        else:
            with self._progress(f"train  iter {iteration}") as bar:
                stats = self.trainer.fit(examples, self.algorithm.objective, progress=bar.update_loss)
            self.trainer.save(ckpt, extra={"iteration": iteration})
        self._refresh_generation(iteration)
        return {**self.algorithm.stats(episodes), "train_examples": len(examples), "train_steps": stats.steps,
                "train_loss_first": stats.loss_first, "train_loss_last": stats.loss_last,
                "train_seconds": round(stats.seconds, 1), "train_truncated": stats.truncated}

    def _refresh_generation(self, iteration: int) -> None:
        """Make generation use the freshly trained weights: refresh the hf copy, or push the adapter (no reload)."""
        if self.adapter_sync is not None:
            self.adapter_sync.push(self.model, iteration)
        else:
            self.gen.sync()

    def _reload_base(self) -> None:
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
        rows: list[dict[str, Any]] = []
        history = self.run.history()
        logged = {(r.get("iteration"), r.get("phase")) for r in history}
        last = self.cfg.iterations
        for it in range(last + 1):
            train_row: dict[str, Any] = {}
            if it >= self.start:
                train_row = self.train_iteration(it)
            elif it > 0:
                train_row = next((r for r in history if r.get("iteration") == it), {})
            if it in (0, last) or it % self.cfg.eval.every == 0:
                row = self.evaluate(it)  # for finished iterations every episode is recorded: metrics only
            else:
                row = {"iteration": it, "phase": "train"}
            row = {**{k: v for k, v in train_row.items() if k not in row}, **row,
                   "elapsed_s": round(time.perf_counter() - self.t0, 1)}
            if (it, row["phase"]) not in logged:
                self.run.log_metrics({k: v for k, v in row.items() if k != "correct"})
            rows.append(row)
            self.log(_row_text(row))
        return self._summary([r for r in rows if "correct" in r], rows)

    def _summary(self, evaluated: list[dict[str, Any]], rows: list[dict[str, Any]]) -> ImproveResult:
        from agentloop.evaluation.metrics import paired_difference

        before, after = evaluated[0]["correct"], evaluated[-1]["correct"]
        diff = paired_difference([float(x) for x in before], [float(x) for x in after], seed=self.cfg.seed)
        result = ImproveResult(
            run_dir=str(self.run.path), method=self.cfg.method.name, env=self.cfg.env.id,
            metric=f"acc@{self.cfg.eval.metric}", n=len(before), before=sum(before) / len(before),
            after=sum(after) / len(after), gain=float(diff.value or 0.0), gain_lo=float(diff.lo or 0.0),
            gain_hi=float(diff.hi or 0.0), excludes_zero=bool(diff.lo is not None and (diff.lo > 0 or (diff.hi or 0) < 0)),
            iterations=[{k: v for k, v in r.items() if k != "correct"} for r in rows],
            wall_s=round(time.perf_counter() - self.t0, 1), threads=__import__("torch").get_num_threads(),
            load_avg_start=self.load_start)
        self.run.write_metrics(result.model_dump(mode="json"))
        return result


def _row_text(row: dict[str, Any]) -> str:
    parts = [f"iteration {row['iteration']}:"]
    if row.get("acc@t1") is not None:
        parts.append(f"held-out acc@t1 {100 * row['acc@t1']:.1f}% (N={row['n']})")
    for k, v in row.items():
        if k.startswith("acc@t") and k != "acc@t1" and v is not None:
            parts.append(f"{k} {100 * v:.1f}%")
    if "train_success" in row:
        parts.append(f"train success {100 * row['train_success']:.1f}%, {row.get('train_examples')} examples, "
                     f"loss {row.get('train_loss_first')}->{row.get('train_loss_last')}")
    return " ".join(parts[:2]) + ("; " + "; ".join(parts[2:]) if len(parts) > 2 else "")


def _trainer_device(g: GenerationSettings, device: str) -> str:
    """The trainer's device: unchanged, except vllm with placement 'separate' (trainer on adapters.trainer_device)."""
    if g.backend != "vllm" or device == "cpu":
        return device
    from agentloop.training.distributed import engine_placement

    return engine_placement(g.adapters.sync_config("adapters"))[1]


def _adapter_policy(cfg: ImproveConfig, device: str, use_bf16: bool, batch: int) -> Any:
    """A generation engine built once from the base model folder, fed LoRA adapters by AdapterSync."""
    if cfg.generation.backend == "vllm":
        from agentloop.policies.vllm import VLLMPolicy
        from agentloop.training.distributed import engine_placement

        placement, _ = engine_placement(cfg.generation.adapters.sync_config("adapters"))
        rank = cfg.train.lora.r if cfg.train.lora else 16
        kwargs = {"max_lora_rank": 1 << max(3, (rank - 1).bit_length()), "seed": cfg.seed,  # vLLM takes 8, 16, 32..
                  **placement, **cfg.generation.vllm_kwargs}
        return VLLMPolicy(model=cfg.model, enable_lora=True, **kwargs)
    from agentloop.policies.hf import HFPolicy

    # The base weights in the generation dtype; the adapter (float32 on disk) is applied unmerged by peft.
    return HFPolicy(model=cfg.model, dtype="bfloat16" if use_bf16 else "float32", device=device, max_batch_size=batch)


def cpu_threads(requested: int | None) -> int:
    """Threads for torch on CPU (see ImproveConfig.threads)."""
    if requested is not None:
        return requested
    cores = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0] >= cores
    except OSError:
        busy = False
    return 1 if busy else cores


def default_out(cfg: ImproveConfig) -> Path:
    return Path(cfg.out) if cfg.out else Path("runs") / f"improve-{cfg.method.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def improve(cfg: ImproveConfig, *, out: str | Path | None = None, resume: bool = False, console: Any = None) -> ImproveResult:
    """Run (or resume) an improve job; see the module docstring. Returns the summary."""
    path = Path(out) if out is not None else default_out(cfg)
    loop = _Loop(cfg, path, resume, console)
    try:
        result = loop.run_all()
    finally:
        loop.close()
    (path / "result.json").write_text(json.dumps(result.model_dump(mode="json"), indent=2) + "\n")
    os.sync() if hasattr(os, "sync") else None
    return result


def format_result(r: ImproveResult) -> str:
    """The lines printed at the end of a run."""
    verdict = "excludes zero" if r.excludes_zero else "includes zero"
    return (f"held-out {r.metric} on {r.n} tasks ({r.env}, method {r.method}):\n"
            f"  before {100 * r.before:.1f}%  after {100 * r.after:.1f}%  gain {100 * r.gain:+.1f} points\n"
            f"  paired-bootstrap 95% interval of the gain [{100 * r.gain_lo:+.1f}, {100 * r.gain_hi:+.1f}] ({verdict})\n"
            f"  wall time {r.wall_s:.0f} s; run directory {r.run_dir}")
