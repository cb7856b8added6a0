"""docs/results.md is generated from benchmarks/results/*.json: the committed page is what the JSON gives."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("results_pages", ROOT / "benchmarks" / "results_pages.py")
pages = importlib.util.module_from_spec(_spec)
sys.modules["results_pages"] = pages
_spec.loader.exec_module(pages)


def test_committed_results_page_matches_the_results_json():
    assert (ROOT / "docs" / "results.md").read_text() == pages.render(), \
        "docs/results.md is stale: run python benchmarks/results_pages.py"
    readme = (ROOT / "README.md").read_text()
    assert pages.update_readme(readme, pages.readme_blocks()) == readme, \
        "the README's generated figures are stale: run python benchmarks/results_pages.py"
    assert pages.main(["--check"]) == 0


def test_readme_blocks_come_from_the_json(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(ROOT / "benchmarks" / "results", results)
    quiet = json.loads((results / "improve_profile_quiet.json").read_text())
    (results / "improve_profile_quiet.json").write_text(json.dumps({**quiet, "wall_s": 999.0}))
    blocks = pages.readme_blocks(results)
    assert "**999 s**" in blocks["make-run"]
    text = "a\n<!-- generated:make-run -->\nold figure\n<!-- /generated -->\nb\n"
    assert pages.update_readme(text, blocks) == f"a\n<!-- generated:make-run -->\n{blocks['make-run']}\n<!-- /generated -->\nb\n"
    with pytest.raises(KeyError, match="bogus"):
        pages.update_readme("<!-- generated:bogus -->\n<!-- /generated -->", blocks)


def test_the_page_follows_the_json(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(ROOT / "benchmarks" / "results", results)
    path = results / "efficacy.json"
    data = json.loads(path.read_text())
    cell = data["cells"][pages.DEFAULT_CELL]
    cell["after"]["acc_t1"].update(value=0.556, lo=0.5, hi=0.6)
    cell["wall_s"] = 4321.0
    path.write_text(json.dumps(data))
    text = pages.render(results)
    assert "55.6 [50.0, 60.0]" in text and "4321 s" in text
    assert pages.render(results) != pages.render()
    (results / "efficacy.json").unlink()
    assert "no results yet" in pages.render(results)  # a missing file says how to make it


def test_check_reports_a_stale_page(tmp_path, capsys):
    stale = tmp_path / "results.md"
    stale.write_text("# Results\n\nhand-edited\n")
    assert pages.main(["--check", "--out", str(stale)]) == 1
    assert "stale" in capsys.readouterr().err
