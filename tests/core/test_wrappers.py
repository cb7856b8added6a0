import pytest

from agentloop.errors import ConfigError, EnvError
from agentloop.types import Critique, CritiqueRequest
from agentloop.wrappers import (
    SCORE_RETRY_INSTRUCTION,
    Branch,
    CritiqueInTheLoop,
    MultiAttempt,
    RecordEpisode,
    TurnLimit,
)
from tests.helpers import EchoEnv


def play(env, actions, seed=0):
    obs, info = env.reset(seed=seed)
    steps = []
    for a in actions:
        obs, r, term, trunc, info = env.step(a)
        steps.append((obs, r, term, trunc, info))
        if term or trunc:
            break
    return steps


def task_word(env, seed=0):
    env.reset(seed=seed)
    return env.unwrapped.task.answer


@pytest.mark.parametrize("mode,expected", [
    ("none", "Please answer the question again."),
    ("binary", "Your answer is incorrect. Please try again."),
    ("retry", SCORE_RETRY_INSTRUCTION),
    ("env", "Wrong: the reply should have 5 characters."),
    ("oracle", "The expected reply is word"),
])
def test_feedback_modes_after_a_wrong_attempt(mode, expected):
    env = MultiAttempt(EchoEnv(), max_attempts=2, feedback=mode)
    steps = play(env, ["nope", "still wrong"])
    obs, r, term, trunc, info = steps[0]
    assert not term and r == 0.0 and info["attempt"] == 0
    assert obs[-2].role == "assistant" and obs[-2].content == "nope"
    assert obs[-1].role == "user" and expected in obs[-1].content
    assert info["feedback_given"]["mode"] == mode
    # the answer leaks only in oracle mode
    answer = env.unwrapped.task.answer
    assert (answer in obs[-1].content) == (mode == "oracle")
    assert steps[1][2] is True and steps[1][4]["attempt"] == 1


def test_same_task_on_every_attempt_and_success_stops():
    env = MultiAttempt(EchoEnv(n_tasks=50), max_attempts=3, feedback="env")
    word = task_word(env, seed=7)
    steps = play(env, ["x", word, "never used"], seed=7)
    assert len(steps) == 2 and steps[1][2] and steps[1][4]["success"]
    conversation = steps[1][0]
    assert [m.role for m in conversation] == ["user", "assistant", "user", "assistant"]
    assert conversation[0].content.endswith(word)


def test_retry_and_none_modes_do_not_stop_on_success_by_default():
    env = MultiAttempt(EchoEnv(), max_attempts=2, feedback="retry")
    word = task_word(env)
    steps = play(env, [word, word])
    assert len(steps) == 2  # the second attempt is played although the first was right
    stop = MultiAttempt(EchoEnv(), max_attempts=2, feedback="retry", stop_on_success=True)
    assert len(play(stop, [word, word])) == 1


def test_env_retry_instruction_overrides_the_default():
    class Custom(EchoEnv):
        retry_instruction = "Only output the final correct Python program!"

    steps = play(MultiAttempt(Custom(), max_attempts=2, feedback="retry"), ["a", "b"])
    assert steps[0][0][-1].content == "Only output the final correct Python program!"


class FixedCritic:
    def __init__(self, verdict=False):
        self.requests = []
        self.verdict = verdict

    def critique(self, requests):
        self.requests.extend(requests)
        return [Critique(text=f"Step 1 is wrong in '{r.answer}'.", final_correct=self.verdict) for r in requests]


def test_critic_mode_with_a_critic_object():
    critic = FixedCritic()
    env = MultiAttempt(EchoEnv(), max_attempts=2, feedback="critic", critic=critic)
    steps = play(env, ["bad", "also bad"])
    assert "Step 1 is wrong in 'bad'" in steps[0][0][-1].content
    assert steps[0][4]["critique"]["text"].startswith("Step 1")
    assert critic.requests[0].env_feedback.startswith("Wrong")


def test_critic_mode_without_critic_defers_to_the_driver():
    env = MultiAttempt(EchoEnv(), max_attempts=2, feedback="critic")
    env.reset(seed=0)
    obs, r, term, trunc, info = env.step("bad")
    assert not term and "critique_request" in info
    req = CritiqueRequest.model_validate(info["critique_request"])
    assert req.answer == "bad"
    with pytest.raises(EnvError, match="apply_critique"):
        env.step("too early")
    obs, terminated, extra = env.apply_critique(Critique(text="Try harder."))
    assert not terminated and "Try harder." in obs[-1].content


def test_critique_in_the_loop_without_oracle_stops_when_the_critic_approves():
    env = CritiqueInTheLoop(EchoEnv(), critic=FixedCritic(verdict=True), max_attempts=4, oracle=False)
    steps = play(env, ["whatever", "more"])
    assert len(steps) == 1 and steps[0][2] is True  # the critic said correct: no refinement
    env = CritiqueInTheLoop(EchoEnv(), critic=FixedCritic(verdict=False), max_attempts=3, oracle=False)
    assert len(play(env, ["a", "b", "c", "d"])) == 3


def test_config_conflicts_are_explained():
    with pytest.raises(ConfigError, match="critique_all"):
        MultiAttempt(EchoEnv(), max_attempts=2, feedback="env", critique_all=True)
    with pytest.raises(ConfigError, match="max_attempts"):
        MultiAttempt(EchoEnv(), max_attempts=0)


def test_old_attempt_names_are_refused_with_the_new_spelling():
    with pytest.raises(ConfigError, match="write max_attempts=3"):
        MultiAttempt(EchoEnv(), k=3)
    with pytest.raises(ConfigError, match=r"write max_attempts=R \+ 1"):
        CritiqueInTheLoop(EchoEnv(), rounds=2)


def test_turn_limit_truncates():
    class Forever(EchoEnv):
        def step(self, action):
            obs, r, term, trunc, info = super().step(action)
            self._done = False
            return obs, r, False, False, info

    env = TurnLimit(Forever(), max_turns=3)
    steps = play(env, ["a"] * 10)
    assert len(steps) == 3 and steps[-1][3] is True and steps[-1][4]["truncated_by"] == "TurnLimit"


def test_record_episode_writes_jsonl(tmp_path):
    path = tmp_path / "eps.jsonl"
    env = RecordEpisode(MultiAttempt(EchoEnv(), max_attempts=2, feedback="binary"), path=path, env_id="test/Echo-v0")
    word = task_word(env, seed=1)
    play(env, ["x", word], seed=1)
    ep = env.episode
    assert ep.attempt_success == (False, True) and ep.success
    assert ep.turns[0].feedback.mode == "binary"
    from agentloop.types import Episode

    lines = path.read_text().splitlines()
    assert len(lines) == 1 and Episode.model_validate_json(lines[0]) == ep


def test_branch_replays_the_recorded_attempts_then_plays_one_step():
    """Branch starts where a recorded episode was after its prefix (same observation, feedback included) and
    ends after one more action: truncated where the inner episode would go on, terminated where it ends."""
    live = MultiAttempt(EchoEnv(n_tasks=50), max_attempts=3, feedback="env")
    word = task_word(live, seed=3)
    live_steps = play(live, ["x", "y", word], seed=3)
    after_two = live_steps[1][0]
    env = Branch(MultiAttempt(EchoEnv(n_tasks=50), max_attempts=3, feedback="env"))
    obs, info = env.reset(seed=3, options={"prefix": ["x", "y"]})
    assert obs == after_two and info["prefix_len"] == 2
    _, r, term, trunc, _ = env.step(word)
    assert (r, term, trunc) == (1.0, True, False)
    obs, _ = env.reset(seed=3, options={"prefix": ["x"]})
    assert obs == live_steps[0][0]
    _, r, term, trunc, info = env.step("still wrong")  # a third attempt would follow: the branch stops here
    assert (r, term, trunc, info["truncated_by"]) == (0.0, False, True, "Branch")
    with pytest.raises(EnvError, match="prefix ended the episode"):
        env.reset(seed=3, options={"prefix": ["x", "y", "z"]})
