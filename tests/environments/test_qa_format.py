"""math/qa-format-v0 over JSONL, CSV, parquet and a Hugging Face datasets folder, checked with math-verify."""

from __future__ import annotations

from pathlib import Path

import pytest

import agentloop
from agentloop.errors import ConfigError

FIX = Path(__file__).parent / "fixtures" / "formats"


def answer(env, index, reply):
    env.reset(options={"index": index})
    _, reward, _, _, info = env.step(reply)
    return reward, info


def test_jsonl_with_field_mapping_and_math_verify():
    env = agentloop.make("math/qa-format-v0", path=str(FIX / "qa.jsonl"), question_field="problem",
                         answer_field="solution", id_field="id")
    agentloop.check_env(env)
    obs, info = env.reset(options={"index": 1})
    assert info["task_id"] == "b" and "Half of one?" in obs[0].content
    assert answer(env, 1, "So it is 0.5.\nAnswer: 0.5")[0] == 1.0  # 0.5 == \frac{1}{2}
    reward, info = answer(env, 0, "Answer: 41")
    assert reward == 0.0 and "41 is incorrect" in info["feedback"] and "42" not in info["feedback"]
    assert "42" in info["oracle_feedback"]


def test_csv_and_gsm8k_style_answers():
    env = agentloop.make("math/qa-format-v0", path=str(FIX / "qa.csv"), question_field="q", answer_field="a")
    assert env.unwrapped.num_tasks() == 2
    assert answer(env, 0, "Answer: 1,234")[0] == 1.0 and answer(env, 1, "Answer: -2")[0] == 1.0
    gsm = agentloop.make("math/qa-format-v0", path=str(FIX / "qa_gsm8k_style.jsonl"), answer_delimiter="####")
    assert gsm.unwrapped.get_task(0).answer == "7" and answer(gsm, 0, "Answer: 7")[0] == 1.0


def test_parquet_and_datasets_folder(tmp_path):
    datasets = pytest.importorskip("datasets", reason="the formats extra (datasets, pyarrow) is not installed")
    rows = {"question": ["What is 2 + 2?", "What is 10 / 4?"], "answer": ["4", "5/2"]}
    ds = datasets.Dataset.from_dict(rows)
    ds.to_parquet(str(tmp_path / "qa.parquet"))
    env = agentloop.make("math/qa-format-v0", path=str(tmp_path / "qa.parquet"))
    agentloop.check_env(env)
    assert answer(env, 1, "Answer: 2.5")[0] == 1.0
    datasets.DatasetDict({"train": ds, "test": ds.select([0])}).save_to_disk(str(tmp_path / "dd"))
    assert agentloop.make("math/qa-format-v0", path=str(tmp_path / "dd")).unwrapped.num_tasks() == 1  # test split
    assert agentloop.make("math/qa-format-v0", path=str(tmp_path / "dd"), split="train").unwrapped.num_tasks() == 2
    with pytest.raises(ConfigError, match="splits"):
        agentloop.make("math/qa-format-v0", path=str(tmp_path / "dd"), split="dev")
    ds.save_to_disk(str(tmp_path / "plain"))
    assert agentloop.make("math/qa-format-v0", path=str(tmp_path / "plain")).unwrapped.num_tasks() == 2


def test_errors_name_the_fields_to_set(tmp_path):
    with pytest.raises(ConfigError, match="question_field= and answer_field="):
        agentloop.make("math/qa-format-v0", path=str(FIX / "qa.jsonl"))
    with pytest.raises(ConfigError, match="does not exist"):
        agentloop.make("math/qa-format-v0", path=str(tmp_path / "missing.jsonl"))
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(ConfigError, match="unknown file type"):
        agentloop.make("math/qa-format-v0", path=str(tmp_path / "x.txt"))


def test_gold_answers_pass_check_gold():
    from agentloop.commands.gold import check_gold

    env = agentloop.make("math/qa-format-v0", path=str(FIX / "qa.jsonl"), question_field="problem", answer_field="solution")
    assert all(r.passed for r in check_gold(env))
    assert all(r.passed for r in check_gold(agentloop.make("math/qa-format-v0")))  # the shipped example
