# examples/quickstart.py: environment -> rollout -> improve -> evaluate (python examples/quickstart.py [MODEL])
import sys

import agentloop
from agentloop import EvalConfig, ImproveConfig, evaluate, improve
from agentloop.policies.scripted import ScriptedPolicy

model = sys.argv[1] if len(sys.argv) > 1 else None  # None: the embedded SmolLM2-135M-Instruct

# 1. An environment: arithmetic, two attempts, the environment's feedback between them.
env = agentloop.make("math/arith-v0", difficulty=1, max_attempts=2, feedback="env")
obs, info = env.reset(seed=0)  # obs: the messages the policy sees
obs, reward, terminated, truncated, info = env.step("Answer: 7")
print(obs[-1].content)  # the feedback turn: "Your answer is incorrect. ..."

# 2. A rollout: many episodes at once, one batched generate() per turn, every turn recorded.
jobs = [agentloop.Job(env="math/arith-v0", seed=s, make_kwargs={"max_attempts": 2}) for s in range(4)]
episodes = agentloop.rollout(jobs, policy=ScriptedPolicy(["Answer: 1", "Answer: 2"]))
print([ep.attempt_success for ep in episodes])

# 3. Improve: collect -> train -> held-out evaluation, one iteration, in a run directory.
cfg = ImproveConfig.model_validate({
    "model": model, "iterations": 1, "threads": 1,
    "env": {"id": "math/arith-v0", "kwargs": {"difficulty": 1}, "train_kwargs": {"split": "train"},
            "eval_kwargs": {"split": "test"}, "train_tasks": 4, "eval_tasks": 4},
    "method": {"name": "rise", "max_attempts": 2, "samples_per_task": 2},
    "collect": {"max_new_tokens": 8}, "eval": {"max_new_tokens": 8},
})
result = improve(cfg, out="runs/quickstart")
print(f"held-out Acc@t1 {result.before:.2f} -> {result.after:.2f} (N = {result.n})")

# 4. Evaluate the trained checkpoint (the run's latest) on held-out problems.
ev = evaluate(EvalConfig(envs=["math/arith-v0"], limit=4, max_attempts=2, feedback="retry",
                         policy={"checkpoint": "runs/quickstart"}, sampling={"max_new_tokens": 8}),
              out="runs/quickstart-eval")
print("Acc@t1, Acc@t2:", [round(a["value"], 2) for a in ev.metrics["overall"]["acc_by_attempt"]])
