"""The loss and advantage maths of every self-improvement method, as pure torch functions.

Everything here takes tensors and returns tensors: no models, tokenizers or configs, so each
function is unit-tested on hand-made inputs (tests/algorithms/test_losses.py).

Conventions:

* ``logp`` / ``ref_logp``: per-token log-probabilities of the *taken* tokens, shape ``[B, T]``.
* ``mask``: ``[B, T]``, 1 where a token carries loss (the method's trainable span), 0 elsewhere
  (prompt, feedback, earlier turns, padding).
* Losses are *minimised*; the token-level normalisation (divide by the number of trainable
  tokens in the batch) is the default because it keeps the step size independent of reply length
  and batch composition. ``reduction="sequence"`` averages per-sequence means instead.

Covered: SCoRe's Stage I/II rewards and shaping (METHODS.md section 1), leave-one-out (RLOO)
per-prompt baselines, the K1 and K3 per-token KL estimators, REINFORCE with a KL penalty,
RISE's reward-weighted regression weights exp(r / tau) (section 2), masked SFT / LM loss (LeTI,
FAFT, critique-loop, rejection sampling). Not covered: PPO-style ratio clipping (every method
here is on-policy REINFORCE or supervised).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

KLEstimator = Literal["k1", "k3"]
Reduction = Literal["token", "sequence"]

__all__ = [
    "kl_per_token", "masked_mean", "reinforce_loss", "rloo_advantages", "rwr_weights", "score_stage1_rewards",
    "score_stage2_rewards", "sft_loss", "token_logprobs", "weighted_sft_loss",
]


def token_logprobs(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """Log-probability of each next token: ``out[b, t] = log p(input_ids[b, t+1] | input_ids[b, :t+1])``.

    Returns ``[B, T-1]`` aligned with ``input_ids[:, 1:]`` (the usual causal-LM shift). Computed in
    float32 so bf16 logits do not lose the small differences the policy gradient needs.
    """
    logits = logits[:, :-1].float()
    targets = input_ids[:, 1:].unsqueeze(-1)
    return torch.gather(logits.log_softmax(-1), -1, targets).squeeze(-1)


def masked_mean(values: torch.Tensor, mask: torch.Tensor, reduction: Reduction = "token") -> torch.Tensor:
    """Mean of ``values`` where ``mask`` is 1: over all tokens, or per sequence then over sequences.

    Sequences (rows) with no trainable token contribute nothing; an all-zero mask gives 0 with a
    gradient path, so a batch with nothing to learn is a no-op rather than a NaN.
    """
    mask = mask.to(values.dtype)
    if reduction == "token":
        return (values * mask).sum() / mask.sum().clamp(min=1.0)
    per_seq_tokens = mask.sum(-1)
    per_seq = (values * mask).sum(-1) / per_seq_tokens.clamp(min=1.0)
    rows = (per_seq_tokens > 0).to(values.dtype)
    return (per_seq * rows).sum() / rows.sum().clamp(min=1.0)


def sft_loss(logp: torch.Tensor, mask: torch.Tensor, reduction: Reduction = "token") -> torch.Tensor:
    """Masked negative log-likelihood: the supervised loss of every SFT-style method."""
    return masked_mean(-logp, mask, reduction)


def weighted_sft_loss(logp: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Per-sequence weighted NLL: ``sum_b w_b * mean_t(-logp_bt) / B`` (RISE's weighted regression).

    Each sequence's NLL is its token mean, so the weight alone decides how much a sample counts
    (a long reply is not worth more than a short one).
    """
    mask = mask.to(logp.dtype)
    per_seq = (-logp * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)
    return (weights.to(logp.dtype) * per_seq).sum() / max(int(logp.shape[0]), 1)


def rwr_weights(rewards: torch.Tensor, tau: float = 0.4, normalize: bool = True) -> torch.Tensor:
    """Reward-weighted regression weights ``exp(r / tau)`` (RISE, tau = 0.4 in the paper).

    With ``normalize`` the weights are divided by their mean so the average weight is 1 and the
    learning rate keeps its meaning; relative weights, which are what RWR prescribes, are unchanged.
    Computed as a softmax times B for numerical safety with large r / tau.
    """
    if tau <= 0:
        raise ValueError(f"rwr_weights: tau must be > 0 (got {tau}); it is the temperature of exp(r / tau).")
    r = rewards.float()
    if not normalize:
        return torch.exp(r / tau)
    return torch.softmax(r / tau, dim=0) * r.numel()


def rloo_advantages(rewards: torch.Tensor, groups: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """Advantage ``r_i - mean(r_j for j != i in the same group)``: the leave-one-out per-prompt baseline.

    ``groups[i]`` names the prompt sample ``i`` was drawn for. A prompt with one sample has no
    baseline (advantage = reward), which is plain REINFORCE for it. SCoRe's paper does not state
    its baseline; this is the documented choice (METHODS.md section 1).
    """
    r = rewards.float()
    g = torch.as_tensor(groups, device=r.device).long()
    if g.shape != r.shape:
        raise ValueError(f"rloo_advantages: groups has shape {tuple(g.shape)}, rewards {tuple(r.shape)}; give one group id per reward.")
    _, inverse = torch.unique(g, return_inverse=True)
    n_groups = int(inverse.max().item()) + 1 if r.numel() else 0
    sums = torch.zeros(n_groups, dtype=r.dtype, device=r.device).index_add_(0, inverse, r)
    counts = torch.zeros(n_groups, dtype=r.dtype, device=r.device).index_add_(0, inverse, torch.ones_like(r))
    others = counts[inverse] - 1
    baseline = torch.where(others > 0, (sums[inverse] - r) / others.clamp(min=1), torch.zeros_like(r))
    return r - baseline


def kl_per_token(logp: torch.Tensor, ref_logp: torch.Tensor, estimator: KLEstimator = "k3") -> torch.Tensor:
    """Per-token estimate of KL(pi || pi_ref) from samples of pi.

    * ``k1``: ``log pi - log pi_ref`` (unbiased, can be negative, high variance);
    * ``k3``: ``exp(d) - d - 1`` with ``d = log pi_ref - log pi`` (unbiased, always >= 0, lower variance).
    """
    d = ref_logp.detach() - logp
    if estimator == "k1":
        return -d
    if estimator == "k3":
        return torch.exp(d) - d - 1.0
    raise ValueError(f"kl_per_token: estimator must be 'k1' or 'k3', got {estimator!r}.")


def reinforce_loss(logp: torch.Tensor, mask: torch.Tensor, advantages: torch.Tensor,
                   ref_logp: torch.Tensor | None = None, kl_coef: torch.Tensor | float = 0.0,
                   estimator: KLEstimator = "k3", reduction: Reduction = "token") -> torch.Tensor:
    """REINFORCE with a per-token KL penalty: minimise ``-(A_b) * log pi(y_bt) + beta_b * KL_bt`` over masked tokens.

    ``advantages`` is ``[B]`` (one per sequence, already baseline-subtracted) and is treated as a
    constant. ``kl_coef`` is a float or a ``[B]`` tensor, so SCoRe can pin attempt 1 with beta2 and
    attempt 2 with beta1 in one batch.
    """
    adv = advantages.detach().to(logp.dtype).unsqueeze(-1)
    per_token = -adv * logp
    if ref_logp is not None:
        beta = torch.as_tensor(kl_coef, dtype=logp.dtype, device=logp.device)
        beta = beta.unsqueeze(-1) if beta.dim() == 1 else beta
        per_token = per_token + beta * kl_per_token(logp, ref_logp, estimator)
    return masked_mean(per_token, mask, reduction)


def score_stage1_rewards(r1: torch.Tensor, r2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """SCoRe Stage I (Eq. 3): only the second attempt is rewarded; the first is held by the KL alone."""
    return torch.zeros_like(r1, dtype=torch.float32), r2.float()


def score_stage2_rewards(r1: torch.Tensor, r2: torch.Tensor, alpha: float = 10.0) -> tuple[torch.Tensor, torch.Tensor]:
    """SCoRe Stage II (Eq. 4): ``R1 = r1`` and ``R2 = r2 + alpha * (r2 - r1)``.

    With alpha = 10 and binary rewards: 0->1 gives 11, 1->1 gives 1, 1->0 gives -10, 0->0 gives 0.
    """
    r1, r2 = r1.float(), r2.float()
    return r1, r2 + alpha * (r2 - r1)
