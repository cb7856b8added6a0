import pytest

from agentloop.rollout import Job, RolloutConfig, RolloutEngine, rollout
from agentloop.types import Completion, Critique, SamplingParams
from agentloop.wrappers import MultiAttempt
from agentloop.policies.scripted import ScriptedPolicy
from tests.helpers import EchoEnv, SwappableEnv, answer_of


class CountingPolicy(ScriptedPolicy):
    def __init__(self, script):
        super().__init__(script)
        self.batch_sizes = []

    def generate(self, conversations, sampling):
        self.batch_sizes.append(len(conversations))
        return super().generate(conversations, sampling)


def test_batches_turn_by_turn_and_keeps_job_order():
    policy = CountingPolicy(lambda conv: "wrong" if sum(m.role == "assistant" for m in conv) == 0 else answer_of(conv))
    jobs = [Job(env=lambda: MultiAttempt(EchoEnv(n_tasks=20), max_attempts=2, feedback="binary"), seed=s) for s in range(10)]
    episodes = rollout(jobs, policy)
    assert policy.batch_sizes == [10, 10]  # one batched call per turn across all episodes
    assert [e.seed for e in episodes] == list(range(10))
    assert all(e.attempt_success == (False, True) and e.error is None for e in episodes)


def test_bounded_concurrency():
    policy = CountingPolicy(["x"])
    rollout([Job(env=EchoEnv, seed=s) for s in range(7)], policy, max_concurrency=3)
    assert max(policy.batch_sizes) == 3 and sum(policy.batch_sizes) == 7


def test_registered_env_ids_and_make_kwargs(echo_env_id):
    episodes = rollout([Job(env=echo_env_id, seed=1, make_kwargs={"max_attempts": 2, "feedback": "env"})],
                       ScriptedPolicy(["no", "nope"]))
    ep = episodes[0]
    assert ep.env_id == echo_env_id and len(ep.turns) == 2 and ep.task_id is not None
    assert ep.turns[0].feedback.text.startswith("Your answer is incorrect")


def test_failures_are_recorded_per_episode_and_the_batch_finishes():
    def boom_step(env, action):
        raise ValueError("step exploded")

    def boom_reset(env):
        raise RuntimeError("reset exploded")

    jobs = [Job(env=EchoEnv, seed=0), Job(env=lambda: SwappableEnv(step_fn=boom_step), seed=1),
            Job(env=lambda: SwappableEnv(reset_fn=boom_reset), seed=2), Job(env="nope/Missing-v0", seed=3),
            Job(env=EchoEnv, seed=4)]
    episodes = rollout(jobs, ScriptedPolicy(["x"]))
    assert len(episodes) == 5
    ok, step_err, reset_err, missing, ok2 = episodes
    assert ok.error is None and ok2.error is None and len(ok.turns) == 1
    assert step_err.error.stage == "step" and step_err.error.type == "ValueError" and step_err.error.turn == 0
    assert "step exploded" in step_err.error.message and "Traceback" in step_err.error.traceback
    assert reset_err.error.stage == "reset" and missing.error.stage == "reset"
    assert "No environment registered" in missing.error.message


class FlakyPolicy(ScriptedPolicy):
    """Fails for any batch containing a prompt with 'word2'; works for the rest."""

    def generate(self, conversations, sampling):
        if any("word2" in m.content for conv in conversations for m in conv):
            raise RuntimeError("cannot generate for word2")
        return super().generate(conversations, sampling)


def test_policy_failure_isolated_to_its_episode():
    episodes = rollout([Job(env=EchoEnv, seed=None, options={"index": i}) for i in range(4)], FlakyPolicy(["x"]))
    errors = [e.error.stage if e.error else None for e in episodes]
    assert errors == [None, None, "policy", None]


def test_unparseable_action_is_recorded_on_the_turn():
    from agentloop_countdown.env import CountdownEnv

    ep = rollout([Job(env=CountdownEnv, seed=0)], ScriptedPolicy(["I have no idea"]))[0]
    assert ep.error is None and ep.turns[0].parse_error.startswith("No arithmetic expression")


class BatchCritic:
    def __init__(self):
        self.calls = []

    def critique(self, requests):
        self.calls.append(len(requests))
        return [Critique(text=f"'{r.answer}' is not it.") for r in requests]


def test_deferred_critiques_are_batched_by_the_engine():
    critic = BatchCritic()
    jobs = [Job(env=lambda: MultiAttempt(EchoEnv(), max_attempts=2, feedback="critic"), seed=s) for s in range(6)]
    episodes = rollout(jobs, ScriptedPolicy(["first", "second"]), critic=critic)
    assert critic.calls == [6]
    for ep in episodes:
        assert ep.error is None and len(ep.turns) == 2
        assert ep.turns[0].critique.text == "'first' is not it."
        assert ep.turns[0].feedback.mode == "critic"
        assert ep.messages[2].content.startswith("Here is a critique")


def test_missing_critic_is_an_episode_error_not_a_crash():
    jobs = [Job(env=lambda: MultiAttempt(EchoEnv(), max_attempts=2, feedback="critic"), seed=0)]
    ep = rollout(jobs, ScriptedPolicy(["x"]))[0]
    assert ep.error.stage == "critic" and "no critic" in ep.error.message


def test_token_ids_and_logprobs_are_kept():
    class LogprobPolicy:
        def generate(self, conversations, sampling):
            return [Completion(text="x", token_ids=(5, 6), logprobs=(-0.1, -0.2)) for _ in conversations]

    ep = rollout([Job(env=EchoEnv, seed=0)], LogprobPolicy())[0]
    assert ep.turns[0].token_ids == (5, 6) and ep.turns[0].logprobs == (-0.1, -0.2)


def test_threaded_steps_give_the_same_episodes():
    jobs = [Job(env=lambda: MultiAttempt(EchoEnv(n_tasks=30), max_attempts=3, feedback="env"), seed=s) for s in range(12)]
    policy = ScriptedPolicy(["a", "b", "c"])
    one = RolloutEngine(policy, config=RolloutConfig(step_workers=1)).run(jobs)
    two = RolloutEngine(policy, config=RolloutConfig(step_workers=4)).run(jobs)
    strip = lambda eps: [e.model_dump(exclude={"id"}) for e in eps]  # noqa: E731
    assert strip(one) == strip(two)


def test_engine_turn_cap_truncates_endless_episodes():
    def never_ends(env, action):
        return [*env.task.messages], 0.0, False, False, {"feedback": "", "success": False}

    ep = RolloutEngine(ScriptedPolicy(["x"]), config=RolloutConfig(max_turns=4)).run(
        [Job(env=lambda: SwappableEnv(step_fn=never_ends), seed=0)])[0]
    assert len(ep.turns) == 4 and ep.turns[-1].truncated


def test_n_must_be_one():
    with pytest.raises(ValueError, match="n must be 1"):
        RolloutConfig(sampling=SamplingParams(n=2))
    on_episode = []
    rollout([Job(env=EchoEnv, seed=0)], ScriptedPolicy(["x"]), on_episode=on_episode.append)
    assert len(on_episode) == 1


def test_per_episode_api_drives_episodes_by_hand():
    """start / act / step / critique / finish: what the Ray workers call, usable on its own."""
    from agentloop.rollout import RolloutEngine
    from agentloop.types import Completion, Critique

    engine = RolloutEngine(ScriptedPolicy(["nope", "word0"]))
    state = engine.start(0, Job(env=lambda: MultiAttempt(EchoEnv(), max_attempts=2, feedback="binary"), seed=0,
                                options={"index": 0}))
    assert state.waiting_action and not state.waiting_critique and state.tools is None
    engine.act([state])  # the policy answers "nope": a second attempt follows
    assert not state.done and len(state.turns) == 1
    engine.step(state, Completion(text="word0"))  # an action computed elsewhere (the Ray driver)
    assert state.done
    assert engine.finish(state).attempt_success == (False, True)

    critic_env = Job(env=lambda: MultiAttempt(EchoEnv(), max_attempts=2, feedback="critic"), seed=0, options={"index": 0})
    state = engine.start(1, critic_env)
    engine.step(state, Completion(text="nope"))
    assert state.waiting_critique
    engine.critique([state], [Critique(text="Check the word.", final_correct=False, critic="test")])
    assert state.waiting_action and "Check the word." in state.obs[-1].content
    failed = engine.start(2, Job(env="test/Nope-v0"))
    assert failed.done and failed.error.stage == "reset"
    assert engine.finish(failed).error.type == "RegistryError"


def test_replayed_completions_are_stepped_not_generated():
    """Job.replay: the engine plays the recorded completions first (token ids kept), the environment judges them
    as live, and the policy only answers the turns after them."""
    seen = []

    def reply(conversation):
        seen.append(len(conversation))
        return answer_of(conversation)

    recorded = Completion(text="nope", token_ids=(7, 8), logprobs=(-0.1, -0.2))
    jobs = [Job(env=MultiAttempt(EchoEnv(n_tasks=3), max_attempts=2, feedback="binary"), options={"index": i},
                replay=(recorded,)) for i in range(3)]
    eps = rollout(jobs, ScriptedPolicy(reply))
    assert seen == [3, 3, 3]  # only the second attempts were generated (prompt, recorded answer, feedback)
    for ep in eps:
        assert ep.turns[0].action == "nope" and ep.turns[0].token_ids == (7, 8) and ep.turns[0].success is False
        assert ep.turns[1].feedback is None and ep.attempt_success == (False, True)
    assert jobs[0].replayed(0) is recorded and jobs[0].replayed(1) is None
