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

Covered: SCoRe's Stage I/II rewards and shaping (docs/methods.md section 1), leave-one-out (RLOO)
per-prompt baselines, the K1/K2/K3 per-token KL estimators and a KL penalty whose gradient is the
gradient of KL(pi || pi_ref) (:func:`kl_penalty`), REINFORCE with a clipped importance ratio
(PPO/GRPO-style, so one batch of samples can serve several optimiser steps) and the KL penalty,
RISE's reward-weighted regression weights exp(r / tau) (section 2), masked SFT / LM loss (LeTI,
FAFT, critique-loop, rejection sampling).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

KLEstimator = Literal["k1", "k2", "k3"]
Reduction = Literal["token", "sequence"]

__all__ = [
    "kl_penalty", "kl_per_token", "masked_mean", "reinforce_loss", "rloo_advantages", "rwr_weights", "score_stage1_rewards",
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
    its baseline; this is the documented choice (docs/methods.md section 1).
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
    """Per-token *value* estimate of KL(pi || pi_ref) from samples of pi (Schulman's k1/k2/k3).

    With ``d = log pi - log pi_ref``:

    * ``k1``: ``d`` (unbiased, can be negative, high variance);
    * ``k2``: ``d**2 / 2`` (biased, always >= 0, low variance);
    * ``k3``: ``exp(-d) + d - 1`` (unbiased, always >= 0, lower variance than k1).

    These are estimates of the KL's *value*; differentiated as they stand, their gradients are
    not the gradient of KL(pi || pi_ref) (k1's expected gradient is 0, k3's is the gradient of
    KL(pi_ref || pi)). Use :func:`kl_penalty` in a loss.
    """
    d = logp - ref_logp.detach()
    if estimator == "k1":
        return d
    if estimator == "k2":
        return 0.5 * d * d
    if estimator == "k3":
        return torch.exp(-d) + d - 1.0
    raise ValueError(f"kl_per_token: estimator must be 'k1', 'k2' or 'k3', got {estimator!r}.")


def kl_penalty(logp: torch.Tensor, ref_logp: torch.Tensor, estimator: KLEstimator = "k3",
               weight: torch.Tensor | float = 1.0) -> torch.Tensor:
    """Per-token KL penalty: value ``kl_per_token(estimator)``, gradient that of KL(pi || pi_ref).

    The gradient is always the k2 one, ``weight * (log pi - log pi_ref) * grad log pi``. For a
    token sampled from pi its expectation is exactly the gradient of the per-position
    KL(pi(.|prefix) || pi_ref(.|prefix)): ``E_pi[(log pi - log pi_ref) grad log pi] =
    sum_y grad pi (log pi - log pi_ref) = grad KL`` (the missing ``sum_y pi grad log pi`` term is
    ``grad sum_y pi = 0``). For tokens sampled from an older behaviour policy mu, pass
    ``weight = pi / mu`` (detached): the importance weight makes the expectation under mu the same
    gradient. The value (for logging) is the named estimator; it does not affect the gradient.
    Why not differentiate k1 or k3 directly: k1's expected gradient is ``E_pi[grad log pi] = 0``
    (no regularisation) and k3's is the gradient of KL(pi_ref || pi), the other direction. Prefix
    effects (a token changing the KL of later positions) are not included: the penalty is the
    per-token KL at the sampled prefixes, the usual choice for RL fine-tuning of LMs.
    """
    value = kl_per_token(logp, ref_logp, estimator).detach()
    d = logp - ref_logp.detach()
    surrogate = 0.5 * d * d
    w = weight.detach() if isinstance(weight, torch.Tensor) else weight
    return value + w * (surrogate - surrogate.detach())


def reinforce_loss(logp: torch.Tensor, mask: torch.Tensor, advantages: torch.Tensor,
                   ref_logp: torch.Tensor | None = None, kl_coef: torch.Tensor | float = 0.0,
                   estimator: KLEstimator = "k3", reduction: Reduction = "token",
                   old_logp: torch.Tensor | None = None, clip_eps: float = 0.2) -> torch.Tensor:
    """Clipped policy gradient with a per-token KL penalty over masked tokens.

    Per token: ``-min(r * A_b, clip(r, 1 - eps, 1 + eps) * A_b) + beta_b * KL_bt`` with the
    importance ratio ``r = exp(log pi - old_logp)`` (PPO/GRPO's clipped surrogate). ``old_logp`` is
    the behaviour policy's log-probability of each sampled token (the model that collected the
    samples); with None the samples are taken to be on-policy (``old_logp = logp`` detached, r = 1),
    and the gradient is exactly REINFORCE's ``-A * grad log pi``. The ratio lets one batch of
    samples serve several optimiser steps without the bias of treating stale samples as fresh;
    the clip stops a step from moving a token's probability further than ``1 +- eps`` times the
    behaviour policy's in the advantage's direction.

    ``advantages`` is ``[B]`` (one per sequence, already baseline-subtracted) and is treated as a
    constant. ``kl_coef`` is a float or a ``[B]`` tensor, so SCoRe can pin attempt 1 with beta2 and
    attempt 2 with beta1 in one batch. The KL term is :func:`kl_penalty`, weighted by the detached
    ratio so its expected gradient is that of KL(pi || pi_ref) for stale samples too.
    """
    if clip_eps <= 0:
        raise ValueError(f"reinforce_loss: clip_eps must be > 0 (got {clip_eps}); 0.2 is PPO's usual value.")
    adv = advantages.detach().to(logp.dtype).unsqueeze(-1)
    old = logp.detach() if old_logp is None else old_logp.detach().to(logp.dtype)
    ratio = torch.exp(logp - old)
    per_token = -torch.min(ratio * adv, ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps) * adv)
    if ref_logp is not None:
        beta = torch.as_tensor(kl_coef, dtype=logp.dtype, device=logp.device)
        beta = beta.unsqueeze(-1) if beta.dim() == 1 else beta
        per_token = per_token + beta * kl_penalty(logp, ref_logp, estimator, weight=ratio.detach())
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
