"""Training step time of the default 135M model: bf16 autocast vs float32, interleaved rounds in one process.

One forward + backward of the SFT loss on a batch of 4 sequences of ~55 tokens per timed step (the
first step of each round is a warm-up and not counted); prints the medians and their ratio.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/train_dtype.py [--threads 1] [--steps 3] [--rounds 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)

    import torch

    from agentloop.training.data import Segment, TrainExample
    from agentloop.training.trainer import TrainConfig, Trainer, bf16_supported, load_model

    torch.set_num_threads(args.threads)
    model, tok = load_model(None)
    prompt = "Q: what is 12 + 7? Answer briefly and show the sum. " * 2
    examples = [TrainExample(segments=(Segment(text=prompt), Segment(text=" 12 + 7 = 19. The answer is 19.",
                                                                     train=True)))] * 4
    times: dict[str, list[float]] = {"float32": [], "bfloat16": []}
    for rnd in range(args.rounds):
        for dtype in times:
            trainer = Trainer(model, tok, TrainConfig(batch_size=4, dtype=dtype, max_len=64))
            batch = trainer.collate(examples)
            for step in range(args.steps):
                t = time.perf_counter()
                trainer.loss(batch, "sft").backward()
                model.zero_grad(set_to_none=True)
                if step:
                    times[dtype].append(time.perf_counter() - t)
            print(f"round {rnd} {dtype}: batch {tuple(batch['input_ids'].shape)}, "
                  f"{[round(x, 2) for x in times[dtype][-(args.steps - 1):]]} s", flush=True)
    f32, bf16 = statistics.median(times["float32"]), statistics.median(times["bfloat16"])
    print(f"median s/step: float32 {f32:.3f}, bf16 autocast {bf16:.3f}; bf16 / float32 time {bf16 / f32:.2f}; "
          f"bf16_supported (train.dtype auto picks bf16): {bf16_supported(torch.device('cpu'))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
