"""One short improve-like iteration on a GPU: generation tokens/s, samples/s, training steps, time split.

Run on the GPU machine (no network, 64 MiB may travel with the checkout)::

    python3 benchmarks/device/improve_gpu.py run --device cuda --out "$OUT"

with ``.cache/device`` carried (see benchmarks/device/README.md; ``prepare`` fills it here)::

    .venv/bin/python benchmarks/device/improve_gpu.py prepare

What one iteration does (the shape of ``agentloop improve``): roll out ``--episodes`` episodes of an
arithmetic task with the ``hf`` policy generating from the in-memory model being trained
(``HFPolicy.from_model``, through the rollout engine), turn every episode into a chat training example,
and run ``--train-steps`` LoRA steps of the project's :class:`~agentloop.training.trainer.Trainer`
(SFT objective, bf16 autocast where supported). Generation and training are timed separately, with
CUDA synchronised at each boundary. The first iteration includes warm-up; the summary reports the last.

IMPORTANT: the weights are a random initialisation of the *identical architecture* of the embedded
default model (SmolLM2-135M-Instruct: its config.json and tokenizer are carried, ~3.5 MB), because the
514 MB of trained weights cannot travel to the GPU machine. Throughput (tokens/s, samples/s, step
time) depends on the architecture, batch and lengths, not on the weight values, with one exception
made explicit here: random weights rarely emit an end-of-turn token, so every sample runs to
``--max-new-tokens`` (a worst case for length), and no answer is correct, so training uses every
episode instead of only the successful ones (rejection sampling would keep none).

vLLM is not installed on the GPU machine (hundreds of MB, cannot travel); with ``--policy vllm`` where
it is installed, generation runs on a vLLM engine loaded from the same random-init folder and the
trained LoRA adapter is handed to it after each iteration (AdapterSync, no base-model reload). That
path is not exercised where vllm is absent; ``--policy auto`` uses vllm when importable, else hf.

Dependencies the GPU machine lacks (pydantic, gymnasium and their small deps) are installed from the
wheels in ``.cache/device/whl`` by unpacking them into a private folder put first on ``sys.path``
(no pip, no network); ``agentloop`` itself is imported from this checkout without installation.
``--device cpu --tiny`` runs the whole path end to end on a CPU with a 2-layer model (for testing).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata as md
import json
import os
import re
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CARRY = ROOT / ".cache" / "device"
WHEELS = CARRY / "whl"
MODEL_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
               "chat_template.jinja", "special_tokens_map.json")

# (distribution, minimum version, pinned wheel) - pins match what the project is tested with.
DEPS = [
    ("typing_extensions", "4.14.1", "typing_extensions==4.16.0"),
    ("annotated_types", "0.6.0", "annotated-types==0.8.0"),
    ("typing_inspection", "0.4.2", "typing-inspection==0.4.5"),
    ("pydantic_core", None, "pydantic_core==2.50.5"),
    ("pydantic", "2.6", "pydantic==2.14.4"),
    ("cloudpickle", "1.2.0", "cloudpickle==3.1.3"),
    ("farama_notifications", "0.0.1", "farama-notifications==0.0.4"),
    ("gymnasium", "1.0", "gymnasium==1.4.0"),
]
COUPLED = {"pydantic", "pydantic_core"}  # pydantic checks for its exact pydantic_core: install both or neither


# -- preparation (on the development machine) ------------------------------------------------------
def prepare(python_version: str = "3.12") -> None:
    """Fill .cache/device with the wheels and the model's config + tokenizer (a few MB in all)."""
    import subprocess

    from agentloop.policies.default_model import default_model_path

    WHEELS.mkdir(parents=True, exist_ok=True)
    for _, _, pin in DEPS:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                        "--python-version", python_version, "--implementation", "cp",
                        "--platform", "manylinux_2_17_x86_64", "-d", str(WHEELS), pin], check=True)
    model_dir = CARRY / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    source = default_model_path()
    for name in MODEL_FILES:
        if (source / name).exists():
            shutil.copy2(source / name, model_dir / name)
    size = sum(p.stat().st_size for p in CARRY.rglob("*") if p.is_file())
    print(f"prepared {CARRY} ({size / 2**20:.1f} MiB): carry '.cache/device'")


# -- dependencies on the GPU machine ---------------------------------------------------------------
def _version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", v)[:3])


def _installed(dist: str, minimum: str | None) -> bool:
    try:
        have = md.version(dist)
    except md.PackageNotFoundError:
        return False
    return minimum is None or _version_tuple(have) >= _version_tuple(minimum)


def _wheel_for(dist: str, wheel_dir: Path) -> Path:
    stem = dist.lower().replace("-", "_")
    found = [w for w in wheel_dir.glob("*.whl") if w.name.lower().split("-")[0] == stem]
    if not found:
        raise SystemExit(f"{dist} is missing here and no wheel for it is in {wheel_dir}: run "
                         f"'python benchmarks/device/improve_gpu.py prepare' on a machine with a network and carry "
                         f"'.cache/device'.")
    return sorted(found)[-1]


def ensure_deps(wheel_dir: Path = WHEELS, site: Path | None = None, force: bool = False) -> list[str]:
    """Unpack the wheels of missing (or too old) dependencies into ``site`` and put it first on sys.path."""
    missing = {dist for dist, minimum, _ in DEPS if force or not _installed(dist, minimum)}
    if missing & COUPLED:
        missing |= COUPLED
    if not missing:
        return []
    if site is None:
        import atexit

        site = Path(tempfile.mkdtemp(prefix="agentloop-site-"))
        atexit.register(shutil.rmtree, site, True)
    for dist, _, _ in DEPS:
        if dist in missing:
            with zipfile.ZipFile(_wheel_for(dist, wheel_dir)) as z:  # a wheel is a zip of an installed tree
                z.extractall(site)
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    return sorted(missing)


def import_agentloop() -> Any:
    """Import agentloop from this checkout; without an install, map agentloop.{policies,...} to the root folders."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import agentloop

    try:
        importlib.import_module("agentloop.policies")
    except ImportError:
        # pyproject's package-dir maps environments/, policies/, critics/ under agentloop; do the same here.
        agentloop.__path__.append(str(ROOT))
    return agentloop


# -- the iteration ---------------------------------------------------------------------------------
def _sum_env_class() -> type:
    from agentloop.env import Task, TaskEnv, Verdict
    from agentloop.types import user

    class SumEnv(TaskEnv):
        """'What is a + b?' with the answer checked as the last integer in the reply."""

        def num_tasks(self) -> int:
            return 10_000

        def get_task(self, index: int) -> Task:
            a, b = (index * 7919) % 900 + 100, (index * 104729) % 900 + 100
            return Task(id=str(index), answer=a + b,
                        messages=(user(f"What is {a} + {b}? Reply with the number only."),))

        def verify(self, task: Task, action: str) -> Verdict:
            nums = re.findall(r"-?\d+", action)
            ok = bool(nums) and int(nums[-1]) == task.answer
            return Verdict(reward=float(ok), success=ok, feedback="correct" if ok else "incorrect")

    return SumEnv


def build_model(model_dir: Path, tiny: bool, seed: int, workdir: Path) -> Path:
    """Save a random-init model of the architecture in ``model_dir`` (plus its tokenizer) to ``workdir``."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    config = AutoConfig.from_pretrained(str(model_dir))
    if tiny:
        config.update({"num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 128,
                       "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16})
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    out = workdir / "random-init"
    model.save_pretrained(str(out), safe_serialization=True)
    AutoTokenizer.from_pretrained(str(model_dir)).save_pretrained(str(out))
    return out


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def make_policy(kind: str, model: Any, tokenizer: Any, model_path: Path, args: argparse.Namespace) -> tuple[Any, Any]:
    """(policy, adapter sync or None) for --policy hf|vllm."""
    if kind == "hf":
        from agentloop.policies.hf import HFPolicy

        return HFPolicy.from_model(model, tokenizer, max_batch_size=args.gen_batch), None
    from agentloop.policies.vllm import VLLMPolicy
    from agentloop.generation.adapters import AdapterSync, AdapterSyncConfig, engine_placement

    sync_config = AdapterSyncConfig(directory=str(model_path.parent / "adapters"))
    engine_kwargs, _ = engine_placement(sync_config)
    policy = VLLMPolicy(model=str(model_path), max_lora_rank=args.lora_r, **engine_kwargs)
    return policy, AdapterSync(policy, sync_config)


def iteration(i: int, env_cls: type, policy: Any, trainer: Any, sync: Any, args: argparse.Namespace) -> dict[str, Any]:
    from agentloop.rollout import Job, RolloutConfig, RolloutEngine
    from agentloop.training.data import chat_example
    from agentloop.types import SamplingParams

    sampling = SamplingParams(temperature=1.0, max_new_tokens=args.max_new_tokens, seed=args.seed + i,
                              return_logprobs=True)
    engine = RolloutEngine(policy, config=RolloutConfig(sampling=sampling, max_concurrency=args.episodes))
    jobs = [Job(env=env_cls, seed=i * args.episodes + k, options={"index": i * args.episodes + k})
            for k in range(args.episodes)]
    _sync(args.device)
    t0 = time.perf_counter()
    episodes = engine.run(jobs)
    _sync(args.device)
    gen_s = time.perf_counter() - t0
    errors = [ep.error.message for ep in episodes if ep.error is not None]
    gen_tokens = sum(len(t.token_ids or ()) for ep in episodes for t in ep.turns)
    samples = sum(len(ep.turns) for ep in episodes)
    # Random weights solve nothing, so every episode is trained on (rejection sampling would keep none).
    examples = [chat_example(trainer.tokenizer, ep.messages) for ep in episodes if ep.error is None and ep.turns]
    _sync(args.device)
    t1 = time.perf_counter()
    stats = trainer.fit(examples, objective="sft")
    _sync(args.device)
    train_s = time.perf_counter() - t1
    sync_s = 0.0
    if sync is not None:
        t2 = time.perf_counter()
        sync.push(trainer.model, i)
        sync_s = time.perf_counter() - t2
    total = gen_s + train_s + sync_s
    return {
        "iteration": i, "episodes": len(episodes), "episode_errors": len(errors), "first_error": errors[:1],
        "success_rate": sum(ep.success for ep in episodes) / max(1, len(episodes)),
        "samples": samples, "generated_tokens": gen_tokens, "generation_s": round(gen_s, 3),
        "generation_tokens_per_s": round(gen_tokens / gen_s, 1), "samples_per_s": round(samples / gen_s, 2),
        "train_steps": stats.steps, "train_examples": stats.examples, "train_tokens": stats.tokens,
        "train_s": round(train_s, 3), "train_s_per_step": round(train_s / max(1, stats.steps), 3),
        "train_tokens_per_s": round(stats.tokens / train_s, 1) if train_s else None,
        "loss_first": stats.loss_first, "loss_last": stats.loss_last, "adapter_sync_s": round(sync_s, 3),
        "generation_share": round(gen_s / total, 3), "training_share": round(train_s / total, 3),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    installed = ensure_deps(Path(args.wheels_dir), force=args.force_wheels)
    import_agentloop()
    import torch
    import transformers

    from agentloop.training.trainer import LoraSettings, TrainConfig, Trainer, load_model

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda but torch sees no GPU; use --device cpu --tiny to test the path on a CPU.")
    kind = args.policy
    vllm_ok = importlib.util.find_spec("vllm") is not None
    if kind == "auto":
        kind = "vllm" if vllm_ok and args.device.startswith("cuda") else "hf"
    model_dir = Path(args.model_dir) if args.model_dir else CARRY / "model"
    if not (model_dir / "config.json").exists():
        from agentloop.policies.default_model import default_model_path

        model_dir = default_model_path()  # development machine: the cached default model's folder
    workdir = Path(tempfile.mkdtemp(prefix="improve-gpu-"))
    try:
        model_path = build_model(model_dir, args.tiny, args.seed, workdir)
        lora = LoraSettings(r=args.lora_r, alpha=2 * args.lora_r)
        model, tokenizer = load_model(model_path, device=args.device, lora=lora)
        trainer = Trainer(model, tokenizer, TrainConfig(lr=1e-4, batch_size=args.train_batch, max_len=args.max_len,
                                                        max_steps=args.train_steps, lora=lora, seed=args.seed))
        policy, sync = make_policy(kind, model, tokenizer, model_path, args)
        env_cls = _sum_env_class()
        rows = [iteration(i, env_cls, policy, trainer, sync, args) for i in range(args.iterations)]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    params = sum(p.numel() for p in model.parameters())
    result = {
        "benchmark": "improve_gpu", "device": args.device,
        "gpu": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None,
        "weights": "random init of the identical SmolLM2-135M-Instruct architecture (trained weights cannot travel)"
                   + (" - TINY 2-layer variant" if args.tiny else ""),
        "parameters": params, "policy": kind, "vllm_importable": vllm_ok,
        "generation_dtype": str(next(model.parameters()).dtype), "train_autocast": str(trainer.autocast_dtype),
        "torch": torch.__version__, "transformers": transformers.__version__, "python": sys.version.split()[0],
        "deps_from_wheels": installed,
        "dep_files": {m: sys.modules[m].__file__ for m in ("pydantic", "pydantic_core", "gymnasium") if m in sys.modules},
        "settings": {k: getattr(args, k) for k in ("episodes", "max_new_tokens", "gen_batch", "train_steps",
                                                   "train_batch", "max_len", "lora_r", "iterations", "seed")},
        "iterations": rows, "summary": rows[-1], "wall_s": round(time.perf_counter() - started, 1),
    }
    if args.device.startswith("cuda"):
        result["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return result


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command")
    p = sub.add_parser("prepare", help="Download the wheels and copy config + tokenizer into .cache/device.")
    p.add_argument("--python-version", default="3.12")
    r = sub.add_parser("run", help="Run the benchmark.")
    r.add_argument("--device", default="cuda")
    r.add_argument("--tiny", action="store_true", help="2-layer model and small sizes: a CPU test of the whole path.")
    r.add_argument("--policy", choices=["auto", "hf", "vllm"], default="auto")
    r.add_argument("--model-dir", default=None, help="config.json + tokenizer folder (default .cache/device/model).")
    r.add_argument("--episodes", type=int, default=None)
    r.add_argument("--max-new-tokens", type=int, default=None)
    r.add_argument("--gen-batch", type=int, default=None)
    r.add_argument("--train-steps", type=int, default=None)
    r.add_argument("--train-batch", type=int, default=16)
    r.add_argument("--max-len", type=int, default=384)
    r.add_argument("--lora-r", type=int, default=16)
    r.add_argument("--iterations", type=int, default=2)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--wheels-dir", default=str(WHEELS), help="Wheels of the missing dependencies.")
    r.add_argument("--force-wheels", action="store_true",
                   help="Use the carried wheels even where the packages are installed (tests the installer).")
    r.add_argument("--out", default=os.environ.get("OUT"), help="Folder for improve_gpu.json (default $OUT).")
    args = ap.parse_args(argv)
    if args.command == "prepare":
        prepare(args.python_version)
        return
    if args.command is None:
        args = ap.parse_args(["run", *(argv if argv is not None else sys.argv[1:])])
    small = args.tiny
    args.episodes = args.episodes or (8 if small else 128)
    args.max_new_tokens = args.max_new_tokens or (8 if small else 128)
    args.gen_batch = args.gen_batch or (8 if small else 128)
    args.train_steps = args.train_steps or (2 if small else 8)
    if small:
        args.train_batch = min(args.train_batch, 4)
    result = run(args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "improve_gpu.json").write_text(text + "\n")


if __name__ == "__main__":
    main()
