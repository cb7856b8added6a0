import sys
import textwrap
import warnings

import pytest

import agentloop
from agentloop.errors import ConfigError, RegistryError
from agentloop.registry import EnvRegistry, envs
from agentloop.wrappers import MultiAttempt, TurnLimit
from tests.helpers import EchoEnv


def test_register_make_spec_and_list(echo_env_id):
    assert echo_env_id in agentloop.list_envs()
    spec = agentloop.spec(echo_env_id)
    assert spec.description == "test echo env"
    env = agentloop.make(echo_env_id, n_tasks=3)
    assert isinstance(env.unwrapped, EchoEnv) and env.unwrapped.n_tasks == 3
    assert env.spec.id == echo_env_id and env.spec.kwargs["n_tasks"] == 3  # Gymnasium's EnvSpec on env.spec
    assert env.spec.additional_wrappers == ()


def test_make_stacks_wrappers_from_spec_and_overrides():
    with envs.registered("test/Multi-v1", EchoEnv, max_attempts=3, feedback="binary", max_turns=5):
        env = agentloop.make("test/Multi-v1")
        assert isinstance(env, TurnLimit) and isinstance(env.env, MultiAttempt)
        assert env.env.config.max_attempts == 3 and env.env.config.feedback == "binary"
        # the stacked wrappers are recorded on the spec, with their settings, as Gymnasium does
        names = [w.name for w in env.spec.additional_wrappers]
        assert names == ["MultiAttempt", "TurnLimit"] and env.spec.id == "test/Multi-v1"
        assert env.spec.additional_wrappers[0].kwargs["max_attempts"] == 3
        assert env.spec.additional_wrappers[1].kwargs == {"max_turns": 5}
        single = agentloop.make("test/Multi-v1", max_attempts=1, max_turns=None)
        assert isinstance(single, TurnLimit)  # max_turns=None keeps the spec's limit
        assert not isinstance(single.env, MultiAttempt)


def test_feedback_without_attempts_is_an_error(echo_env_id):
    with pytest.raises(ConfigError, match="max_attempts > 1"):
        agentloop.make(echo_env_id, feedback="binary")


def test_unknown_id_lists_near_matches(echo_env_id):
    with pytest.raises(RegistryError) as e:
        agentloop.make("test/Ecko-v0")
    msg = str(e.value)
    assert "test/Echo-v0" in msg and "agentloop envs list" in msg


def test_bad_ids_and_duplicates_are_rejected(echo_env_id):
    with pytest.raises(RegistryError, match="namespace/Name-vN"):
        agentloop.register("NoNamespace", EchoEnv)
    with pytest.raises(RegistryError, match="already registered"):
        agentloop.register(echo_env_id, EchoEnv)


def test_wrong_kwargs_name_the_field(echo_env_id):
    with pytest.raises(ConfigError, match="'n_taks'.*did you mean 'n_tasks'"):
        agentloop.make(echo_env_id, n_taks=3)
    with pytest.raises(ConfigError, match="field 'n_tasks'"):
        agentloop.make(echo_env_id, n_tasks="many")


def test_string_entry_point_import_errors_are_explained():
    with envs.registered("test/Missing-v0", "not_a_real_module_xyz:Env"):
        with pytest.raises(RegistryError, match="cannot import 'not_a_real_module_xyz'"):
            agentloop.make("test/Missing-v0")


def test_example_plugin_is_discovered_through_its_entry_point():
    infos = [p for p in envs.plugins if p.distribution == "agentloop-countdown"]
    assert infos and infos[0].status == "loaded"
    assert "countdown/Countdown-v0" in infos[0].registered
    assert agentloop.spec("countdown/Countdown-v0").source == "agentloop-countdown"


def _fake_distribution(tmp_path, name: str, module: str, source: str) -> None:
    """A real installed distribution on sys.path: a module plus a .dist-info with entry points."""
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
    info = tmp_path / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[agentloop.environments]\n{name} = {module}:register\n")


@pytest.fixture
def plugin_path(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path


def test_broken_plugin_warns_and_others_still_load(plugin_path, monkeypatch):
    _fake_distribution(plugin_path, "broken-plugin", "broken_plugin_mod", "raise RuntimeError('kaboom')\n")
    _fake_distribution(plugin_path, "good-plugin", "good_plugin_mod", """
        def register(register):
            register("good/Thing-v0", entry_point="tests.helpers:EchoEnv")
    """)
    reg = EnvRegistry()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        infos = {p.distribution: p for p in reg.load_plugins()}
    assert infos["broken-plugin"].status == "failed" and "kaboom" in infos["broken-plugin"].error
    assert any("broken-plugin" in str(w.message) and "kaboom" in str(w.message) for w in caught)
    assert infos["good-plugin"].status == "loaded"
    assert "good/Thing-v0" in reg.ids() and "countdown/Countdown-v0" in reg.ids()
    with pytest.raises(RegistryError, match="failed to load"):
        reg.spec("good/Thingy-v0")


def test_agentloop_plugins_env_var_limits_third_party_plugins(plugin_path, monkeypatch):
    _fake_distribution(plugin_path, "good-plugin", "good_plugin_mod2", """
        def register(register):
            register("good/Other-v0", entry_point="tests.helpers:EchoEnv")
    """)
    monkeypatch.setenv("AGENTLOOP_PLUGINS", "good-plugin")
    reg = EnvRegistry()
    status = {p.distribution: p.status for p in reg.load_plugins()}
    assert status["good-plugin"] == "loaded"
    assert status["agentloop-countdown"] == "skipped"
    assert status["agentloop"] == "loaded"  # built-ins always load
    assert "good/Other-v0" in reg.ids() and "countdown/Countdown-v0" not in reg.ids()


def test_plugins_load_lazily_not_at_import():
    import subprocess

    code = ("import agentloop.registry as r, sys; assert not r.envs._loaded; "
            "heavy=[m for m in ('torch','transformers','vllm','ray') if m in sys.modules]; assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_policy_and_critic_registries_share_the_shape():
    from agentloop.registry import policies

    assert "scripted" in policies.ids()
    pol = agentloop.make_policy("scripted", replies=["hi"])
    assert pol.generate([[agentloop.Message(role="user", content="x")]], agentloop.SamplingParams())[0].text == "hi"


def test_make_routes_every_multiattempt_setting_to_the_wrapper(echo_env_id):
    env = agentloop.make(echo_env_id, max_attempts=2, feedback="env", env_template="Again: {feedback}",
                         stop_on_success=None, n_tasks=4)
    assert env.config.env_template == "Again: {feedback}" and env.config.stops_on_success is True  # the env mode reveals the verdict
    assert env.unwrapped.n_tasks == 4 and env.spec.kwargs == {"n_tasks": 4}
    assert env.spec.additional_wrappers[0].kwargs["env_template"] == "Again: {feedback}"


@pytest.mark.parametrize(("feedback", "stops"), [("none", False), ("retry", False), ("binary", True), ("env", True)])
def test_make_keeps_the_feedback_modes_stop_rule_unless_asked(echo_env_id, feedback, stops):
    # none/retry must play every attempt (no oracle): a spec default may not turn the verifier into one.
    env = agentloop.make(echo_env_id, max_attempts=2, feedback=feedback)
    assert env.config.stops_on_success is stops
    assert agentloop.make(echo_env_id, max_attempts=2, feedback=feedback, stop_on_success=True).config.stops_on_success
