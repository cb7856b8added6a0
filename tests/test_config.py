"""Config loading: YAML/TOML files, dotted overrides, errors that name the field."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict, Field, field_validator

from agentloop.config import apply_overrides, load_config, parse_override
from agentloop.errors import ConfigError


class Inner(BaseModel):
    model_config = ConfigDict(extra="forbid")
    k: int = Field(default=1, ge=1, description="Attempts.")
    feedback: str = "env"
    kwargs: dict[str, object] = Field(default_factory=dict)

    @field_validator("feedback")
    @classmethod
    def _mode(cls, v: str) -> str:
        if v not in ("env", "binary"):
            raise ValueError("feedback must be env or binary")
        return v


class Outer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = "run"
    envs: list[str] = Field(default_factory=list)
    eval: Inner = Field(default_factory=Inner)
    opt: Inner | None = None


def test_yaml_file_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("name: a\neval:\n  k: 2\n  kwargs: {device: cpu}\n")
    cfg = load_config(Outer, p, ["eval.k=3", "envs=[x, y]", "eval.kwargs.dtype=bf16", "name='007'"])
    assert cfg.eval.k == 3 and cfg.envs == ["x", "y"] and cfg.name == "007"
    assert cfg.eval.kwargs == {"device": "cpu", "dtype": "bf16"}


def test_toml_file(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('name = "t"\n[eval]\nk = 4\n')
    assert load_config(Outer, p).eval.k == 4


def test_override_parsing():
    assert parse_override("a.b=3") == (["a", "b"], 3)
    assert parse_override("a=true") == (["a"], True)
    assert parse_override("a=") == (["a"], "")
    assert parse_override("a=x=y") == (["a"], "x=y")
    with pytest.raises(ConfigError, match="dotted.field=value"):
        parse_override("novalue")
    with pytest.raises(ConfigError, match="not a section"):
        apply_overrides({"name": "x"}, ["name.sub=1"])


def test_unknown_field_is_named_with_known_fields():
    with pytest.raises(ConfigError) as e:
        load_config(Outer, overrides=["eval.kk=3"])
    assert "eval.kk: unknown field" in str(e.value) and "k, feedback, kwargs" in str(e.value)
    with pytest.raises(ConfigError, match="opt.zz: unknown field; known fields here: k"):
        load_config(Outer, overrides=["opt.zz=1"])


def test_rule_violations_are_named():
    with pytest.raises(ConfigError, match=r"eval.k: Input should be greater than or equal to 1 \(got 0\)"):
        load_config(Outer, overrides=["eval.k=0"])
    with pytest.raises(ConfigError, match="eval.feedback: Value error, feedback must be env or binary"):
        load_config(Outer, overrides=["eval.feedback=oracle"])


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(Outer, tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(Outer, bad)
    (tmp_path / "c.ini").write_text("x")
    with pytest.raises(ConfigError, match="unknown format"):
        load_config(Outer, tmp_path / "c.ini")
    (tmp_path / "broken.toml").write_text("name = ")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(Outer, tmp_path / "broken.toml")
