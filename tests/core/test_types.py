from agentloop.types import Critique, Episode, EpisodeError, Feedback, Message, StepVerdict, ToolCall, Turn


def test_records_round_trip_through_json():
    turn = Turn(index=0, attempt=1, observation=(Message(role="user", content="q"),), action="a", reward=1.0,
                success=True, feedback=Feedback(mode="env", text="ok", success=True),
                critique=Critique(text="c", steps=(StepVerdict(step="s", correct=False),), first_wrong_step=0,
                                  final_correct=False),
                token_ids=(1, 2), logprobs=(-0.5, -0.1), info={"fraction": 0.5, "nested": {"a": [1, 2]}})
    ep = Episode(env_id="x/y-v0", seed=3, turns=(turn,),
                 messages=(Message(role="assistant", content="a",
                                   tool_calls=(ToolCall(id="1", name="f", arguments={"x": 1}),)),),
                 error=EpisodeError(stage="step", type="ValueError", message="boom", turn=0))
    again = Episode.model_validate_json(ep.model_dump_json())
    assert again == ep
    assert again.turns[0].critique.steps[0].correct is False


def test_records_are_frozen_and_strict():
    import pydantic
    import pytest

    m = Message(role="user", content="hi")
    with pytest.raises(pydantic.ValidationError):
        m.content = "changed"
    with pytest.raises(pydantic.ValidationError):
        Message(role="narrator", content="x")
    with pytest.raises(pydantic.ValidationError):
        Message(role="user", content="x", colour="red")


def test_episode_success_and_attempts():
    def t(i, attempt, ok):
        return Turn(index=i, attempt=attempt, observation=(Message(role="user", content="q"),), action="a", success=ok)

    ep = Episode(env_id="x/y-v0", turns=(t(0, 0, False), t(1, 1, True)))
    assert ep.attempt_success == (False, True)
    assert ep.success
    errored = ep.model_copy(update={"error": EpisodeError(stage="step", type="E", message="m")})
    assert not errored.success


def test_message_to_openai_drops_empty_fields():
    msg = Message(role="tool", content="3", name="calc", tool_call_id="c1")
    assert msg.to_openai() == {"role": "tool", "content": "3", "name": "calc", "tool_call_id": "c1"}
