"""GRPO through TRL's ``GRPOTrainer``, with an agentloop environment as the reward function: the baseline
a user would otherwise pick, measured by the same held-out code as our methods.

* :class:`EnvReward` is a TRL reward function (``reward(prompts, completions, task_index, **kw)``)
  that replays each completion through the environment: ``reset(options={"index": i})`` then
  ``step(completion)``; the reward is the environment's (its ``verify``). A completion the
  environment cannot take (an exception while stepping) scores 0 and is counted in ``errors``:
  a bad rollout is data, not a crash.
* :func:`run_grpo` evaluates the starting model on the held-out tasks, trains with
  ``GRPOTrainer`` on ``train_tasks`` prompts of the training split (prompts whose text occurs in
  the held-out split are skipped), saves the model and evaluates it again, both through
  :func:`agentloop.baselines.heldout.evaluate_model` (agentloop's evaluation, greedy, two attempts).

The objective is TRL's (group-normalised advantages over ``num_generations`` completions per
prompt, clipped ratio, optional KL to the reference with ``beta``); see TRL's documentation. Only the
first attempt is trained: GRPO here learns single-turn answers, and its Acc@t2 shows whether that
also changes self-correction.

Not covered: multi-turn environments (the reward replays one action from the task's reset); stop
strings during GRPO generation (completions run to ``max_completion_length`` or EOS).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agentloop.baselines.heldout import HeldOutTasks

__all__ = ["EnvReward", "GRPOBaselineConfig", "GRPOResult", "grpo_dataset", "run_grpo"]


class GRPOBaselineConfig(BaseModel):
    """One GRPO baseline run: training split, TRL settings, and the held-out evaluation."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    env: str = Field(description="Registered environment id whose verifier is the reward, e.g. math/arith-v0.")
    train_kwargs: dict[str, Any] = Field(default_factory=dict, description="make() kwargs of the training split.")
    train_tasks: int = Field(default=128, ge=1, description="Training prompts (each sampled num_generations times).")
    heldout: HeldOutTasks = Field(description="Held-out tasks and how they are evaluated (before and after).")
    model: str | None = Field(default=None, description="Model folder; None = the embedded SmolLM2-135M-Instruct.")
    num_generations: int = Field(default=4, ge=2, description="Completions per prompt (the GRPO group).")
    batch_size: int = Field(default=16, ge=1, description="Completions per optimiser step (TRL "
                            "per_device_train_batch_size); a multiple of num_generations.")
    epochs: float = Field(default=1.0, gt=0, description="Passes over the training prompts.")
    lr: float = Field(default=1e-5, gt=0)
    beta: float = Field(default=0.0, ge=0, description="KL coefficient to the reference model (TRL's default 0).")
    loss_type: Literal["grpo", "dapo", "dr_grpo", "bnpo"] = Field(default="dapo", description="TRL's loss_type.")
    max_completion_length: int = Field(default=32, ge=1, description="Generated tokens per completion.")
    temperature: float = Field(default=1.0, gt=0, description="Sampling temperature of the GRPO rollouts.")
    threads: int | None = Field(default=None, ge=1, description="torch CPU threads; None = leave torch's default.")
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> GRPOBaselineConfig:
        if self.batch_size % self.num_generations:
            raise ValueError(f"batch_size={self.batch_size} is not a multiple of "
                             f"num_generations={self.num_generations}: "
                             "TRL generates whole groups per batch; use e.g. batch_size="
                             f"{self.num_generations * max(1, self.batch_size // self.num_generations)}.")
        return self


class GRPOResult(BaseModel):
    """Held-out attempts before and after, plus what training did."""

    before: list[list[bool]]
    after: list[list[bool]]
    ops: list[str | None]
    train_steps: int
    reward_first: float | None = Field(description="Mean training reward of the first logged step.")
    reward_last: float | None = Field(description="Mean training reward of the last logged step.")
    reward_errors: int = Field(description="Completions the environment could not step (scored 0).")
    train_seconds: float
    model_dir: str


class EnvReward:
    """A TRL reward function scoring each completion with the environment's own verdict.

    Example::

        reward = EnvReward(lambda: agentloop.make("math/arith-v0", max_attempts=1))
        GRPOTrainer(model=..., reward_funcs=[reward], train_dataset=grpo_dataset(cfg))  # rows carry task_index
    """

    __name__ = "env_reward"  # TRL labels the reward in its logs by the function's name

    def __init__(self, make_env: Callable[[], Any]):
        self.make_env = make_env
        self._env: Any = None
        self.errors = 0
        self.calls = 0

    @staticmethod
    def _text(completion: Any) -> str:
        if isinstance(completion, str):
            return completion
        if isinstance(completion, Sequence) and completion and isinstance(completion[-1], dict):
            return str(completion[-1].get("content", ""))
        raise TypeError("EnvReward: a completion must be text or a list of chat messages, "
                        f"got {type(completion).__name__}.")

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], task_index: Sequence[int],
                 **_: Any) -> list[float]:
        if self._env is None:
            self._env = self.make_env()
        rewards = []
        for completion, index in zip(completions, task_index, strict=True):
            self.calls += 1
            try:
                self._env.reset(options={"index": int(index)})
                _, reward, *_ = self._env.step(self._text(completion))
                rewards.append(float(reward))
            except Exception:  # noqa: BLE001 - a completion the env cannot take is a zero reward, not a crash
                self.errors += 1
                rewards.append(0.0)
        return rewards


def _prompt_text(env: Any, index: int) -> str:
    obs, _ = env.reset(options={"index": index})
    return "\n".join(m.content for m in obs if m.role == "user")


def grpo_dataset(cfg: GRPOBaselineConfig) -> Any:
    """The training prompts as a ``datasets.Dataset`` (conversational ``prompt`` + ``task_index``)."""
    from datasets import Dataset

    from agentloop.errors import ConfigError
    from agentloop.registry import make

    train = make(cfg.env, max_attempts=1, **cfg.train_kwargs)
    held: set[str] = set()
    if cfg.heldout.env == cfg.env:
        heldout_env = make(cfg.env, max_attempts=1, **cfg.heldout.kwargs)
        held = {_prompt_text(heldout_env, i) for i in range(cfg.heldout.tasks)}
    n = int(train.unwrapped.num_tasks())
    rows: list[dict[str, Any]] = []
    for i in range(n):
        if len(rows) == cfg.train_tasks:
            break
        obs, _ = train.reset(options={"index": i})
        if "\n".join(m.content for m in obs if m.role == "user") in held:
            continue
        rows.append({"prompt": [{"role": m.role, "content": m.content} for m in obs], "task_index": i})
    if len(rows) < cfg.train_tasks:
        raise ConfigError(f"the training split of {cfg.env} {cfg.train_kwargs} has only {len(rows)} usable prompts "
                          f"(held-out prompts skipped); lower train_tasks to {len(rows)} or choose other train_kwargs.")
    return Dataset.from_list(rows)


def _trl_args(cfg: GRPOBaselineConfig, out: Path) -> Any:
    import torch
    from trl import GRPOConfig

    return GRPOConfig(
        output_dir=str(out / "trl"), per_device_train_batch_size=cfg.batch_size, num_generations=cfg.num_generations,
        num_train_epochs=cfg.epochs, learning_rate=cfg.lr, beta=cfg.beta, loss_type=cfg.loss_type,
        max_completion_length=cfg.max_completion_length, temperature=cfg.temperature, seed=cfg.seed,
        use_cpu=not torch.cuda.is_available(), bf16=False, logging_steps=1, save_strategy="no", report_to="none",
        disable_tqdm=True)


def run_grpo(cfg: GRPOBaselineConfig, out: str | Path) -> GRPOResult:
    """Evaluate, train with TRL's GRPOTrainer on the environment's rewards, save, evaluate again (module docstring).

    Resumable: finished evaluations are reused, and a saved model (``out/model`` with its ``train_stats.json``)
    is not trained again.
    """
    import json

    import torch

    from agentloop.baselines.heldout import attempts_of, evaluate_model, ops_of

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    before_eps = evaluate_model(cfg.model, cfg.heldout, out / "eval-before", seed=cfg.seed)
    model_dir, stats_file = out / "model", out / "model" / "train_stats.json"
    if not stats_file.exists():
        stats = _train(cfg, out, model_dir)
        stats_file.write_text(json.dumps(stats, indent=1) + "\n")  # written last: marks the model complete
    stats = json.loads(stats_file.read_text())
    after_eps = evaluate_model(str(model_dir), cfg.heldout, out / "eval-after", seed=cfg.seed)
    k, head = cfg.heldout.max_attempts, cfg.heldout.protocols[0].name  # the first protocol's episodes
    return GRPOResult(before=attempts_of(before_eps[head], k), after=attempts_of(after_eps[head], k),
                      ops=ops_of(before_eps[head]),
                      model_dir=str(model_dir), **stats)


def _train(cfg: GRPOBaselineConfig, out: Path, model_dir: Path) -> dict[str, Any]:
    """Train with TRL's GRPOTrainer and save model + tokenizer to ``model_dir``; returns the training stats."""
    import torch
    from trl import GRPOTrainer

    from agentloop.registry import make
    from agentloop.training.trainer import load_model, seed_everything

    seed_everything(cfg.seed)
    model, tokenizer = load_model(cfg.model, device="cuda" if torch.cuda.is_available() else "cpu")
    reward = EnvReward(lambda: make(cfg.env, max_attempts=1, **cfg.train_kwargs))
    t0 = time.perf_counter()
    trainer = GRPOTrainer(model=model, reward_funcs=[reward], args=_trl_args(cfg, out), train_dataset=grpo_dataset(cfg),
                          processing_class=tokenizer)
    trainer.train()
    seconds = time.perf_counter() - t0
    trainer.model.save_pretrained(str(model_dir))
    tokenizer.save_pretrained(str(model_dir))
    logged = [float(r["reward"]) for r in trainer.state.log_history if "reward" in r]
    return {"train_steps": int(trainer.state.global_step), "reward_first": logged[0] if logged else None,
            "reward_last": logged[-1] if logged else None, "reward_errors": reward.errors,
            "train_seconds": round(seconds, 1)}
