"""A custom environment, registered, checked, and evaluated with a model.

    python examples/custom_env.py [MODEL]     # MODEL: a model folder or hub id; default the embedded model

An installed package registers the same way through an entry point (docs/plugins.md):

    [project.entry-points."agentloop.environments"]
    my_envs = "my_envs:register"          # def register(register): register("mine/Reverse-v0", ...)
"""

import sys

import agentloop
from agentloop import EvalConfig, Task, TaskEnv, Verdict, evaluate
from agentloop.policies.scripted import ScriptedPolicy
from agentloop.types import user

WORDS = ["agent", "critic", "policy", "reward"]


class ReverseEnv(TaskEnv):
    """Reverse a word. Feedback says what is wrong without giving the answer; oracle feedback gives it."""

    def num_tasks(self) -> int:
        return len(WORDS)

    def get_task(self, index: int) -> Task:
        word = WORDS[index]
        return Task(id=word, messages=(user(f"Reverse the word '{word}'. Reply with the word only."),),
                    answer=word[::-1])

    def verify(self, task: Task, action: str) -> Verdict:
        ok = action.strip().lower() == task.answer
        return Verdict(reward=float(ok), success=ok,
                       feedback="" if ok else f"'{action.strip()}' is not '{task.id}' reversed.",
                       oracle_feedback=None if ok else f"The answer is '{task.answer}'.")


if __name__ == "__main__":
    model = sys.argv[1] if len(sys.argv) > 1 else None
    agentloop.register("mine/Reverse-v0", entry_point=ReverseEnv, max_attempts=2, feedback="env")
    agentloop.check_env(agentloop.make("mine/Reverse-v0"))  # the conformance check every environment passes

    # A scripted policy that is wrong first and right on the retry: the feedback drives the fix.
    episodes = agentloop.rollout([agentloop.Job(env="mine/Reverse-v0", options={"index": 0})],
                                 ScriptedPolicy(["agnet", "tnega"]))
    print("attempts:", episodes[0].attempt_success, "feedback:", episodes[0].turns[0].feedback.text)

    # The same environment as a held-out evaluation of a real model (two attempts, env feedback).
    result = evaluate(EvalConfig(envs=["mine/Reverse-v0"], max_attempts=2, feedback="env",
                                 policy={"id": "hf", "kwargs": {"model": model}}, sampling={"max_new_tokens": 8}),
                      out="runs/example-custom-env")
    print("Acc@t1, Acc@t2:", [round(a["value"], 2) for a in result.metrics["overall"]["acc_by_attempt"]])
