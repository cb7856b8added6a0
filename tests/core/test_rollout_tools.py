"""Native tool rendering: the engine hands tool schemas to policies whose generate takes ``tools``."""

from agentloop.rollout import Job, rollout
from agentloop.types import user
from agentloop.policies.scripted import ScriptedPolicy
from tests.helpers import TOOL_SCHEMA, EchoEnv, RecordingPolicy, ToolsEnv

SCHEMA = TOOL_SCHEMA


def test_tools_go_to_policies_that_take_them_only_for_envs_that_ask():
    policy = RecordingPolicy()
    episodes = rollout([Job(env=ToolsEnv, seed=0), Job(env=EchoEnv, seed=1)], policy)
    assert all(e.error is None for e in episodes)
    assert policy.tools == [[[SCHEMA], None]]
    plain = RecordingPolicy()
    rollout([Job(env=EchoEnv, seed=1)], plain)
    assert plain.tools == [None]  # no tools anywhere: called without the argument


def test_policy_without_tools_argument_fails_only_the_native_episodes():
    episodes = rollout([Job(env=ToolsEnv, seed=0), Job(env=EchoEnv, seed=1)], ScriptedPolicy(["x"]))
    native, plain = episodes
    assert native.error.stage == "policy" and "render its tools natively" in native.error.message
    assert plain.error is None and len(plain.turns) == 1


def test_text_fallback_form_is_shared():
    from agentloop.toolprompt import with_tools_in_system

    msgs = with_tools_in_system([user("hi")], [SCHEMA])
    assert msgs[0].role == "system" and "<tools>" in msgs[0].content and '"add"' in msgs[0].content
    merged = with_tools_in_system([msgs[0].model_copy(update={"content": "Be brief."}), user("hi")], [SCHEMA])
    assert merged[0].content.startswith("Be brief.") and len(merged) == 2


def test_policy_wrappers_pass_tools_through():
    """improve wraps every policy (ConditionedPolicy); the tools must still reach the wrapped policy."""
    from agentloop.algorithms.base import ConditionedPolicy
    from agentloop.types import Message

    inner = RecordingPolicy()
    seen = []

    def condition(conv):
        seen.append(conv)
        return [*conv, Message(role="user", content="conditioned")]

    episodes = rollout([Job(env=ToolsEnv, seed=0)], ConditionedPolicy(inner, condition))
    assert episodes[0].error is None and inner.tools == [[[SCHEMA]]] and seen


def test_policy_wrapper_over_a_toolless_policy_errors_only_native_episodes():
    from agentloop.wrappers import PolicyWrapper

    native, plain = rollout([Job(env=ToolsEnv, seed=0), Job(env=EchoEnv, seed=1)], PolicyWrapper(ScriptedPolicy(["x"])))
    assert native.error.stage == "policy" and "render its tools natively" in native.error.message
    assert plain.error is None
