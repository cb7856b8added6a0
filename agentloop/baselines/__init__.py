"""Baselines and shared held-out measurements for comparing methods (the efficacy benchmark).

* :mod:`agentloop.baselines.heldout`: the self-correction block every cell reports (Acc@t1, Acc@t2,
  delta(t1,t2), delta i->c, delta c->i with 95% intervals, before and after, per operation), and a
  held-out evaluation of a model folder through :func:`agentloop.evaluation.evaluate`.
* :mod:`agentloop.baselines.trl_grpo`: GRPO through TRL's ``GRPOTrainer`` with an agentloop
  environment's verifier as the reward function, evaluated by the same held-out code.

Nothing here is imported by ``import agentloop``; torch, transformers and trl load on first use.
"""
