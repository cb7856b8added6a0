"""SCoRe: multi-turn RL for self-correction (Kumar et al. 2024; docs/methods.md section 1).

Two attempts per task: ``MultiAttempt(max_attempts=2, feedback="retry")`` appends the fixed self-correction
instruction (the environment's own, else the paper's MATH text) that never reveals the verdict.
Each episode gives two training sequences: attempt 1 (prompt -> y1) and attempt 2
(prompt, y1, instruction -> y2), each training only its own reply: the ids the policy sampled, after
the prompt ids it was given (:func:`~agentloop.training.data.turn_example`; rendered text only for
turns recorded without ids).

* Stage I (``stage1_iterations`` iterations): R1 = 0, R2 = r(y2); attempt 1 is held near the
  reference by the strong KL ``beta2``, attempt 2 by ``beta1``:
  loss = -A2 log pi(y2|.) + beta2 KL_1 + beta1 KL_2.
* Stage II (later iterations): R1 = r(y1), R2 = r(y2) + alpha (r(y2) - r(y1)), KL ``beta1`` on both.

Gradient: REINFORCE with the leave-one-out per-prompt baseline over ``samples_per_task`` samples
(:func:`~agentloop.algorithms.losses.rloo_advantages`; the paper does not state its baseline) and a
per-token KL penalty against the frozen starting policy whose gradient is that of KL(pi || pi_ref)
(:func:`~agentloop.algorithms.losses.kl_penalty`; ``train.kl_estimator`` picks the reported value).
Off-policy reuse: one iteration's samples serve every optimizer step of its training phase
(``len(examples) / batch_size * epochs`` steps), so the trainer weights each token by the clipped
importance ratio pi / pi_behaviour (PPO/GRPO-style, ``train.clip_eps``), the behaviour policy being
the weights that collected the samples (those at the start of the phase); the first step is plain
on-policy REINFORCE.
Simplification: each attempt's return is its own turn reward (the shaped R2 for attempt 2), not
the sum of later rewards: with shaping, a return-to-go would reward a wrong first attempt
(G1 = (1 - alpha) r1 + ...), which is not the paper's intent. Not covered: selecting the
checkpoint with the best training reward (the loop reports the last one).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field

from agentloop.algorithms.base import Algorithm, EnvFactory, MethodConfig
from agentloop.training.data import TrainExample, turn_example
from agentloop.types import Episode

__all__ = ["SCoRe", "SCoReConfig", "score_examples"]


class SCoReConfig(MethodConfig):
    """SCoRe settings (paper: alpha 10, beta1 0.01, beta2 0.1 MATH / 0.25 MBPP)."""

    name: Literal["score"] = "score"
    stage1_iterations: int = Field(default=1, ge=0, description="Iterations of Stage I before Stage II.")
    alpha: float = Field(default=10.0, gt=1.0, description="Shaping bonus factor on turn 2 (paper: alpha > 1).")
    beta1: float = Field(default=0.01, ge=0.0, description="KL coefficient on turns trained for reward.")
    beta2: float = Field(default=0.1, ge=0.0, description="Stage I KL coefficient pinning attempt 1 to the reference.")
    retry_instruction: str | None = Field(default=None, description="Override of the self-correction instruction.")

    def check(self, improve_config: Any) -> None:
        if improve_config.eval.max_attempts < 2:
            raise ValueError("method.name=score trains a second attempt; evaluate it with eval.max_attempts >= 2 "
                             "(and eval.feedback: retry) so the report shows Acc@t2.")


def _rewards(ep: Episode) -> tuple[float, float] | None:
    if len(ep.turns) < 2 or ep.error is not None:
        return None
    return float(ep.turns[0].reward), float(ep.turns[1].reward)


def score_examples(episodes: Sequence[Episode], tokenizer: Any, config: SCoReConfig, stage: int) -> list[TrainExample]:
    """Two examples per complete episode with RLOO advantages of the stage's rewards and the stage's KL coefs."""
    import torch

    from agentloop.algorithms.losses import (
        rloo_advantages,
        score_stage1_rewards,
        score_stage2_rewards,
    )

    kept = [(ep, r) for ep in episodes if (r := _rewards(ep)) is not None]
    if not kept:
        return []
    r1 = torch.tensor([r[0] for _, r in kept])
    r2 = torch.tensor([r[1] for _, r in kept])
    R1, R2 = score_stage1_rewards(r1, r2) if stage == 1 else score_stage2_rewards(r1, r2, config.alpha)
    ids: dict[str, int] = {}
    groups = [ids.setdefault(str(ep.task_id), len(ids)) for ep, _ in kept]
    a1, a2 = rloo_advantages(R1, groups), rloo_advantages(R2, groups)
    kl1 = config.beta2 if stage == 1 else config.beta1
    out = []
    for k, (ep, _) in enumerate(kept):
        t1, t2 = ep.turns[0], ep.turns[1]
        # Policy gradient: each attempt's example is its sampled ids in its generation-time context.
        out.append(turn_example(tokenizer, t1, weight=float(a1[k]), kl_coef=kl1, group=ep.task_id, attempt=1))
        out.append(turn_example(tokenizer, t2, weight=float(a2[k]), kl_coef=config.beta1, group=ep.task_id, attempt=2))
    return out


class SCoRe(Algorithm):
    """See the module docstring."""

    objective = "reinforce"

    def train_env(self, make_env: Any) -> EnvFactory:
        from agentloop.wrappers import MultiAttempt

        instruction = self.config.retry_instruction

        def factory() -> Any:
            return MultiAttempt(make_env(), max_attempts=2, feedback="retry", stop_on_success=False,
                                retry_instruction=instruction)
        return factory

    def stage(self, iteration: int) -> int:
        """1 (Stage I) for the first ``stage1_iterations`` iterations, then 2."""
        return 1 if iteration <= self.config.stage1_iterations else 2

    def episodes_stage(self, episodes: Sequence[Episode]) -> int:
        """The stage of the iteration ``episodes`` were collected for: the latest ``metadata["iteration"]``
        (with ``data: union`` older iterations' episodes are trained under the current stage too)."""
        return self.stage(max((int(ep.metadata.get("iteration", 1)) for ep in episodes), default=1))

    def examples(self, episodes: Sequence[Episode], tokenizer: Any) -> list[TrainExample]:
        return score_examples(episodes, tokenizer, self.config, self.episodes_stage(episodes))

    def stats(self, episodes: Sequence[Episode]) -> dict[str, float]:
        pairs = [r for ep in episodes if (r := _rewards(ep)) is not None]
        base = super().stats(episodes)
        if pairs:
            base.update(train_acc_t1=sum(a for a, _ in pairs) / len(pairs), train_acc_t2=sum(b for _, b in pairs) / len(pairs),
                        stage=float(self.episodes_stage(episodes)))
        return base
