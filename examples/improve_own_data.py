"""``improve`` on your own question/answer data (JSONL; CSV, JSON, parquet and ``datasets`` folders work too).

    python examples/improve_own_data.py [MODEL]     # MODEL: a model folder or hub id; default the embedded model

Each line is ``{"question": ..., "answer": ...}`` (other field names: ``question_field``/``answer_field``).
Answers are checked with math-verify; the feedback never shows the answer. The training and held-out
files are two environments of the same id with different ``path``; before training,
``agentloop envs check-gold math/qa-format-v0 path=FILE`` checks every reference answer.
The same run from the CLI: ``agentloop improve CONFIG`` with the ``env`` section below in CONFIG.
"""

import json
import random
import sys
from pathlib import Path

from agentloop import ImproveConfig, improve


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


if __name__ == "__main__":
    model = sys.argv[1] if len(sys.argv) > 1 else None
    rng = random.Random(0)
    pairs = [(a, b) for a in range(2, 10) for b in range(2, 10)]
    rng.shuffle(pairs)
    rows = [{"question": f"A box holds {a} rows of {b} eggs. How many eggs are in it?", "answer": str(a * b)}
            for a, b in pairs]
    train = write_jsonl(Path("runs/my-data/train.jsonl"), rows[:48])
    test = write_jsonl(Path("runs/my-data/test.jsonl"), rows[48:])  # held out: never trained on

    cfg = ImproveConfig.model_validate({
        "model": model, "iterations": 1, "threads": 1,
        "env": {"id": "math/qa-format-v0", "train_kwargs": {"path": train}, "eval_kwargs": {"path": test},
                "train_tasks": 4, "eval_tasks": 4},
        "method": {"name": "rs_sft", "samples_per_task": 2},
        "collect": {"max_new_tokens": 8}, "eval": {"max_new_tokens": 8},
    })
    result = improve(cfg, out="runs/example-own-data")
    print(f"{result.env}: held-out Acc@t1 {result.before:.2f} -> {result.after:.2f} (N = {result.n}); "
          f"checkpoints in {result.run_dir}/checkpoints")
