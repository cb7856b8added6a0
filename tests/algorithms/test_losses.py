"""Unit tests of the pure loss maths (agentloop.algorithms.losses) on hand-made tensors."""

from __future__ import annotations

import math

import pytest
import torch

from agentloop.algorithms import losses as L


def test_score_shaping_table_alpha_10():
    r1 = torch.tensor([0.0, 1.0, 1.0, 0.0])
    r2 = torch.tensor([1.0, 1.0, 0.0, 0.0])
    R1, R2 = L.score_stage2_rewards(r1, r2, alpha=10.0)
    assert R2.tolist() == [11.0, 1.0, -10.0, 0.0]  # 0->1, 1->1, 1->0, 0->0
    assert R1.tolist() == r1.tolist()


def test_score_stage1_rewards_only_second_attempt():
    R1, R2 = L.score_stage1_rewards(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]))
    assert R1.tolist() == [0.0, 0.0] and R2.tolist() == [0.0, 1.0]


def test_rloo_leave_one_out_per_prompt():
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 5.0])
    groups = [0, 0, 0, 1, 1, 2]
    adv = L.rloo_advantages(rewards, groups)
    # prompt 0: baselines (0+0)/2, (1+0)/2, (1+0)/2 ; prompt 1: all equal -> 0 ; prompt 2 alone -> no baseline
    assert torch.allclose(adv, torch.tensor([1.0, -0.5, -0.5, 0.0, 0.0, 5.0]))
    # the advantages of a group with >1 sample sum to zero
    assert abs(float(adv[:3].sum())) < 1e-6
    with pytest.raises(ValueError, match="one group id per reward"):
        L.rloo_advantages(rewards, [0, 1])


def test_kl_estimators():
    logp = torch.log(torch.tensor([[0.5, 0.2]]))
    ref = torch.log(torch.tensor([[0.25, 0.2]]))
    k1 = L.kl_per_token(logp, ref, "k1")
    k3 = L.kl_per_token(logp, ref, "k3")
    assert torch.allclose(k1, torch.tensor([[math.log(2.0), 0.0]]))
    # k3 = ratio - log ratio - 1 with ratio = ref / pi = 0.5
    assert torch.allclose(k3, torch.tensor([[0.5 - math.log(0.5) - 1.0, 0.0]]))
    assert (L.kl_per_token(torch.randn(4, 5), torch.randn(4, 5), "k3") >= 0).all()
    assert torch.allclose(L.kl_per_token(logp, ref, "k2"), torch.tensor([[0.5 * math.log(2.0) ** 2, 0.0]]))
    with pytest.raises(ValueError, match="'k1', 'k2' or 'k3'"):
        L.kl_per_token(logp, ref, "k4")  # type: ignore[arg-type]


def test_kl_estimators_unbiased_on_a_categorical():
    torch.manual_seed(0)
    p = torch.tensor([0.6, 0.3, 0.1])
    q = torch.tensor([0.3, 0.3, 0.4])
    true_kl = float((p * (p / q).log()).sum())
    idx = torch.multinomial(p, 200_000, replacement=True)
    logp, logq = p.log()[idx], q.log()[idx]
    for est in ("k1", "k3"):
        assert abs(float(L.kl_per_token(logp, logq, est).mean()) - true_kl) < 0.01


def test_kl_gradient_points_towards_reference():
    logp = torch.tensor([[-0.1, -3.0]], requires_grad=True)
    ref = torch.tensor([[-1.0, -1.0]])
    L.kl_penalty(logp, ref, "k3").sum().backward()
    # too likely under pi (-0.1 > -1) -> lower it; too unlikely (-3 < -1) -> raise it
    assert logp.grad[0, 0] > 0 and logp.grad[0, 1] < 0


def test_masked_mean_reductions_and_empty_mask():
    v = torch.tensor([[1.0, 2.0, 3.0], [10.0, 0.0, 0.0]])
    m = torch.tensor([[1, 1, 1], [1, 0, 0]])
    assert float(L.masked_mean(v, m, "token")) == pytest.approx(16.0 / 4)
    assert float(L.masked_mean(v, m, "sequence")) == pytest.approx((2.0 + 10.0) / 2)
    assert float(L.masked_mean(v, torch.zeros_like(m))) == 0.0


def test_reinforce_loss_masks_and_signs():
    logp = torch.tensor([[-1.0, -2.0, -5.0], [-1.0, -1.0, -1.0]], requires_grad=True)
    mask = torch.tensor([[1, 1, 0], [0, 1, 1]])
    adv = torch.tensor([2.0, -1.0])
    loss = L.reinforce_loss(logp, mask, adv)
    # on-policy (ratio 1): token mean of -A * ratio over 4 masked tokens: (-2 - 2 + 1 + 1) / 4
    assert loss.item() == pytest.approx((-2 - 2 + 1 + 1) / 4)
    loss.backward()
    assert logp.grad[0, 2] == 0 and logp.grad[1, 0] == 0  # masked tokens get no gradient
    assert logp.grad[0, 0] < 0  # positive advantage: descent raises log-prob
    assert logp.grad[1, 1] > 0  # negative advantage: descent lowers it


def test_reinforce_loss_per_sequence_kl_coefficients():
    logp = torch.zeros(2, 2)
    ref = torch.full((2, 2), -1.0)
    mask = torch.ones(2, 2)
    no_adv = torch.zeros(2)
    k3 = math.exp(-1.0) + 1.0 - 1.0
    loss = L.reinforce_loss(logp, mask, no_adv, ref_logp=ref, kl_coef=torch.tensor([0.0, 1.0]), estimator="k3")
    assert float(loss) == pytest.approx(k3 * 2 / 4)


def test_rwr_weights():
    r = torch.tensor([0.0, 1.0, 1.0, 0.5])
    w = L.rwr_weights(r, tau=0.4)
    raw = torch.exp(r / 0.4)
    assert torch.allclose(w, raw / raw.mean())
    assert float(w.mean()) == pytest.approx(1.0)
    assert torch.allclose(L.rwr_weights(r, 0.4, normalize=False), raw)
    assert torch.isfinite(L.rwr_weights(torch.tensor([1000.0, 0.0]), tau=0.01)).all()
    with pytest.raises(ValueError, match="tau must be > 0"):
        L.rwr_weights(r, tau=0.0)


def test_sft_and_weighted_sft():
    logp = torch.tensor([[-1.0, -3.0], [-2.0, -9.0]])
    mask = torch.tensor([[1, 1], [1, 0]])
    assert float(L.sft_loss(logp, mask)) == pytest.approx(6.0 / 3)
    w = torch.tensor([1.0, 3.0])
    # per-sequence means 2 and 2 -> (1*2 + 3*2) / 2
    assert float(L.weighted_sft_loss(logp, mask, w)) == pytest.approx(4.0)


def test_token_logprobs_shift():
    logits = torch.zeros(1, 3, 4)
    logits[0, 0, 2] = 10.0  # position 0 predicts token 2
    ids = torch.tensor([[1, 2, 3]])
    lp = L.token_logprobs(logits, ids)
    assert lp.shape == (1, 2)
    assert float(lp[0, 0]) > -0.01 and float(lp[0, 1]) == pytest.approx(math.log(0.25))


def _expected_penalty_grad(theta: torch.Tensor, ref_logq: torch.Tensor, estimator: str,
                           behaviour: torch.Tensor | None = None) -> torch.Tensor:
    """Exact E_{y ~ mu}[grad of the per-token KL term at sample y], by enumerating the outcomes.

    ``mu`` is the sampling (behaviour) distribution: pi itself (on-policy) unless ``behaviour`` is
    given; then the term gets the behaviour logprob of the sample, as after optimiser steps.
    """
    logpi = theta.log_softmax(-1)
    mu = logpi.detach().exp() if behaviour is None else behaviour
    total = torch.zeros_like(theta)
    for y in range(theta.numel()):
        lp = logpi[y].view(1, 1)
        old = None if behaviour is None else behaviour.log()[y].view(1, 1)
        term = L.reinforce_loss(lp, torch.ones(1, 1), torch.zeros(1), ref_logp=ref_logq[y].view(1, 1), kl_coef=1.0,
                                estimator=estimator, old_logp=old)  # type: ignore[arg-type]
        (g,) = torch.autograd.grad(term, theta, retain_graph=True)
        total += mu[y] * g
    return total


@pytest.mark.parametrize("estimator", ["k1", "k2", "k3"])
def test_kl_penalty_expected_gradient_is_the_gradient_of_kl_pi_ref(estimator):
    # A categorical pi = softmax(theta) over 4 outcomes and a fixed reference q.
    theta = torch.tensor([0.5, -1.0, 2.0, 0.1], requires_grad=True)
    ref_logq = torch.tensor([0.1, 0.4, 0.2, 0.3]).log()
    logpi = theta.log_softmax(-1)
    exact_kl = (logpi.exp() * (logpi - ref_logq)).sum()  # KL(pi || q)
    (exact,) = torch.autograd.grad(exact_kl, theta, retain_graph=True)
    got = _expected_penalty_grad(theta, ref_logq, estimator)
    assert torch.allclose(got, exact, atol=1e-6), (estimator, got, exact)
    # and not the reverse direction KL(q || pi), which the old k3 term's gradient was
    reverse = (ref_logq.exp() * (ref_logq - logpi)).sum()
    (wrong,) = torch.autograd.grad(reverse, theta)
    assert not torch.allclose(got, wrong, atol=1e-3)


def test_kl_penalty_gradient_is_importance_weighted_off_policy():
    # Samples drawn from an older policy mu: the ratio pi/mu reweights them back to pi.
    theta = torch.tensor([0.3, 1.2, -0.7], requires_grad=True)
    ref_logq = torch.tensor([0.5, 0.25, 0.25]).log()
    mu = torch.tensor([0.2, 0.5, 0.3])
    logpi = theta.log_softmax(-1)
    (exact,) = torch.autograd.grad((logpi.exp() * (logpi - ref_logq)).sum(), theta)
    got = _expected_penalty_grad(theta, ref_logq, "k3", behaviour=mu)
    assert torch.allclose(got, exact, atol=1e-6)


def test_kl_penalty_value_is_the_named_estimator():
    logp = torch.log(torch.tensor([[0.5, 0.2]]))
    ref = torch.log(torch.tensor([[0.25, 0.2]]))
    for est in ("k1", "k2", "k3"):
        assert torch.allclose(L.kl_penalty(logp, ref, est), L.kl_per_token(logp, ref, est))  # type: ignore[arg-type]


def test_reinforce_expected_gradient_is_the_policy_gradient():
    # On-policy: E_y~pi[grad of the surrogate] = grad E_pi[A(y)] for a fixed advantage per outcome.
    theta = torch.tensor([0.2, -0.4, 1.0], requires_grad=True)
    adv = torch.tensor([1.0, -2.0, 0.5])
    logpi = theta.log_softmax(-1)
    (exact,) = torch.autograd.grad(-(logpi.exp() * adv).sum(), theta, retain_graph=True)
    total = torch.zeros(3)
    for y in range(3):
        (g,) = torch.autograd.grad(L.reinforce_loss(logpi[y].view(1, 1), torch.ones(1, 1), adv[y].view(1)), theta,
                                   retain_graph=True)
        total += logpi[y].detach().exp() * g
    assert torch.allclose(total, exact, atol=1e-6)


def test_reinforce_importance_ratio_and_clipping():
    # old_logp is what the behaviour policy gave the sampled tokens; the ratio pi/old corrects for reuse.
    old = torch.log(torch.tensor([[0.5, 0.5, 0.5]]))
    logp = torch.log(torch.tensor([[0.55, 0.9, 0.2]])).requires_grad_(True)  # ratios 1.1, 1.8, 0.4
    mask = torch.ones(1, 3)
    loss = L.reinforce_loss(logp, mask, torch.tensor([1.0]), old_logp=old, clip_eps=0.2)
    # -min(r A, clip(r) A) with A = 1: -[1.1, 1.2, 0.4] averaged over 3 tokens
    assert float(loss) == pytest.approx(-(1.1 + 1.2 + 0.4) / 3, rel=1e-5)
    loss.backward()
    # token 0 inside the clip range: d/dlogp = -r A / 3; token 1 clipped (r > 1 + eps, A > 0): no gradient;
    # token 2 (r < 1 - eps but A > 0: the min keeps the unclipped term) still pushed up.
    assert logp.grad[0, 0] == pytest.approx(-1.1 / 3, rel=1e-5)
    assert logp.grad[0, 1] == 0.0
    assert logp.grad[0, 2] == pytest.approx(-0.4 / 3, rel=1e-5)
    # negative advantage: the ratio below 1 - eps is the clipped side
    logp2 = torch.log(torch.tensor([[0.2]])).requires_grad_(True)
    L.reinforce_loss(logp2, torch.ones(1, 1), torch.tensor([-1.0]), old_logp=old[:, :1], clip_eps=0.2).backward()
    assert logp2.grad[0, 0] == 0.0
