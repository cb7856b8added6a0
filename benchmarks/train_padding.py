"""Padding computed by training on a run's own examples: length grouping off vs on (no training, collation only).

Rebuilds the training examples the run's method makes from its recorded collection episodes
(``<run>/config.json`` names the method and model) and counts the token positions the training
forward passes would compute (``TrainStats.padded_tokens``) for one epoch in the run's batch order,
with ``group_by_length`` off, on (default) and with ``length_window`` 4.

    .venv/bin/python benchmarks/train_padding.py runs/profile [--micro-batch-size 4]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--micro-batch-size", type=int, default=None, help="default: the run's train.micro_batch_size")
    args = parser.parse_args(argv)

    import torch
    from transformers import AutoTokenizer

    from agentloop.registry import make_algorithm
    from agentloop.improve import ImproveConfig
    from agentloop.policies.default_model import default_model_path
    from agentloop.training.trainer import Trainer
    from agentloop.types import Episode

    cfg = ImproveConfig.model_validate(json.loads((args.run / "config.json").read_text()))
    tokenizer = AutoTokenizer.from_pretrained(cfg.model or str(default_model_path()))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    episodes = [Episode.model_validate_json(line) for line in (args.run / "episodes.jsonl").read_text().splitlines()]
    episodes = [e for e in episodes if e.metadata.get("phase") == "collect"]
    examples = make_algorithm(cfg.method).examples(episodes, tokenizer)
    micro = args.micro_batch_size or cfg.train.micro_batch_size
    dummy = torch.nn.Linear(1, 1)  # collation needs only a device
    print(f"{len(examples)} examples, batch {cfg.train.batch_size}, micro-batch {micro}")
    base = None
    for name, extra in [("off", {"group_by_length": False}), ("group_by_length", {}),
                        ("group_by_length + length_window=4", {"length_window": 4})]:
        train = cfg.train.model_copy(update={"micro_batch_size": micro, **extra})
        trainer = Trainer(dummy, tokenizer, train)
        order = torch.Generator().manual_seed(train.seed + 1)
        computed = real = 0
        for batch in trainer._epoch_batches(examples, order):
            for rows in trainer._micro_batches(batch, micro or train.batch_size):
                attn = trainer.collate(rows)["attention_mask"]
                computed, real = computed + attn.numel(), real + int(attn.sum())
        base = base or computed
        print(f"{name:36s} padded_tokens {computed:7d}  real tokens {real:7d}  ratio to off {computed / base:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
