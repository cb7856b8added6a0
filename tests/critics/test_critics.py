"""LLMCritic and VerifierCritic, alone and inside MultiAttempt(feedback="critic") / the rollout engine."""

from __future__ import annotations

import pytest

from agentloop.critics.llm import LLMCritic
from agentloop.critics.verifier import VerifierCritic
from agentloop.errors import ConfigError, CriticError, PolicyError
from agentloop.policies.scripted import ScriptedPolicy
from agentloop.registry import make_critic
from agentloop.rollout import Job, rollout
from agentloop.types import CritiqueRequest, SamplingParams
from agentloop.wrappers import MultiAttempt
from tests.helpers import EchoEnv, answer_of

CRITIQUE = """Step sentence: wrong
Correctness of the step: Wrong
Explanation: that is not the requested word
Correctness of the final answer: Wrong
Explanation: reply with the exact word"""


def actor() -> ScriptedPolicy:
    """Answers 'wrong' first; after a critique, answers correctly."""
    return ScriptedPolicy(lambda conv: answer_of(conv) if any(m.role == "assistant" for m in conv) else "wrong")


def request(**kw) -> CritiqueRequest:
    return CritiqueRequest(question="Reply with exactly: word0", answer="wrong", **kw)


def test_llm_critic_prompt_hides_the_verdict_and_parses_the_reply() -> None:
    critic = LLMCritic(policy=ScriptedPolicy([CRITIQUE]))
    msgs = critic.messages(request(env_feedback="SECRET-FEEDBACK", success=False))
    prompt = msgs[-1].content
    assert "Reply with exactly: word0" in prompt and "wrong" in prompt and "Step sentence:" in prompt
    assert "SECRET-FEEDBACK" not in prompt and "False" not in prompt
    shown = LLMCritic(policy=ScriptedPolicy([CRITIQUE]), show_env_feedback=True).messages(request(env_feedback="SECRET-FEEDBACK"))
    assert "SECRET-FEEDBACK" in shown[-1].content
    [c] = critic.critique([request()])
    assert (c.final_correct, c.first_wrong_step, c.critic, c.parse_error) == (False, 0, "llm", None)


def test_llm_critic_by_registry_id_and_config_errors() -> None:
    critic = make_critic("llm", policy="scripted", policy_kwargs={"replies": ["gibberish"]})
    [c] = critic.critique([request()])
    assert c.parse_error and c.final_correct is None and c.text == "gibberish"
    with pytest.raises(ConfigError, match="n must be 1"):
        LLMCritic(policy=ScriptedPolicy(["x"]), sampling=SamplingParams(n=2))
    with pytest.raises(ConfigError, match="must contain"):
        LLMCritic(policy=ScriptedPolicy(["x"]), instructions="no placeholders")


def test_llm_critic_wraps_policy_failures() -> None:
    critic = LLMCritic(policy=ScriptedPolicy({"never": "x"}))  # no default: generate raises PolicyError
    with pytest.raises(CriticError, match="failed to generate") as info:
        critic.critique([request()])
    assert isinstance(info.value.__cause__, PolicyError)


def test_verifier_critic_texts_round_trip_through_the_parser() -> None:
    from agentloop.critics.llm import parse_critique

    critic = make_critic("verifier")
    wrong, right, unknown, empty = critic.critique([
        request(env_feedback="expected 5 characters", success=False), request(success=True),
        request(env_feedback="a traceback"), request()])
    assert wrong.final_correct is False and "expected 5 characters" in wrong.text
    assert parse_critique(wrong.text).final_correct is False
    assert right.final_correct is True and parse_critique(right.text).final_correct is True
    assert unknown.final_correct is None and unknown.parse_error is None and "a traceback" in unknown.text
    assert empty.parse_error and empty.final_correct is None


@pytest.mark.parametrize("make", [lambda: LLMCritic(policy=ScriptedPolicy([CRITIQUE])), VerifierCritic])
def test_critics_drive_multiattempt_inline(make) -> None:
    critic = make()
    env = MultiAttempt(EchoEnv(), max_attempts=3, feedback="critic", critic=critic)
    [ep] = rollout([Job(env=env, seed=1)], actor())
    assert ep.error is None and ep.attempt_success == (False, True)
    first = ep.turns[0]
    assert first.critique is not None and first.critique.final_correct is False
    assert first.critique.text in ep.turns[1].observation[-1].content  # the actor saw the critique


@pytest.mark.parametrize("make", [lambda: LLMCritic(policy=ScriptedPolicy([CRITIQUE])), VerifierCritic])
def test_critics_work_on_the_engines_deferred_path(make) -> None:
    jobs = [Job(env=lambda: MultiAttempt(EchoEnv(), max_attempts=2, feedback="critic"), seed=s) for s in range(4)]
    episodes = rollout(jobs, actor(), critic=make())
    for ep in episodes:
        assert ep.error is None and ep.success and ep.attempt_success == (False, True)
        assert ep.turns[0].critique is not None and ep.turns[0].critique.final_correct is False


def test_verifier_critic_without_oracle_shows_feedback_only() -> None:
    env = MultiAttempt(EchoEnv(), max_attempts=2, feedback="critic", critique_all=True)
    [ep] = rollout([Job(env=env, seed=0)], actor(), critic=VerifierCritic())
    crit = ep.turns[0].critique
    assert crit is not None and crit.final_correct is None and "characters" in crit.text


def test_malformed_critique_is_recorded_and_the_episode_goes_on() -> None:
    env = MultiAttempt(EchoEnv(), max_attempts=2, feedback="critic")
    [ep] = rollout([Job(env=env, seed=0)], actor(), critic=LLMCritic(policy=ScriptedPolicy(["no idea"])))
    assert ep.error is None and ep.turns[0].critique.parse_error and len(ep.turns) == 2


def test_failing_critic_is_an_episode_error_not_a_crash() -> None:
    critic = LLMCritic(policy=ScriptedPolicy({"never": "x"}))
    jobs = [Job(env=lambda: MultiAttempt(EchoEnv(), max_attempts=2, feedback="critic"), seed=s) for s in range(2)]
    episodes = rollout(jobs, actor(), critic=critic)
    assert all(ep.error is not None and ep.error.stage == "critic" for ep in episodes)


class _PolicyCritic:
    """A plugin critic that critiques with a policy (like llm)."""

    def __init__(self, policy=None, strict: bool = False):
        self.policy = policy

    def critique(self, requests):
        return []


def test_a_critic_taking_a_policy_critiques_with_the_actor_whatever_its_id():
    from agentloop.config import ComponentRef
    from agentloop.registry import critics

    actor = ScriptedPolicy(["x"])
    with critics.registered("test_policy_critic", _PolicyCritic):
        assert ComponentRef(id="test_policy_critic").make_critic(actor).policy is actor  # no id special case
        own = ScriptedPolicy(["y"])
        assert ComponentRef(id="test_policy_critic", kwargs={"policy": own}).make_critic(actor).policy is own
    assert ComponentRef(id="llm").critiques_with_actor()
    assert not ComponentRef(id="llm", kwargs={"policy": "scripted"}).critiques_with_actor()
    assert not ComponentRef(id="verifier").critiques_with_actor()  # takes no policy: none is forced on it
