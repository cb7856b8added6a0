"""The documentation stays inside the repository: every relative link resolves, nothing points outside."""

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
        if target.startswith(("http://", "https://", "mailto:", "#")):
            continue
        path = (page.parent / target.split("#")[0]).resolve()
        assert path.exists(), f"{page.relative_to(ROOT)} links to {target}, which does not exist"
        assert ROOT in path.parents or path == ROOT, f"{page.relative_to(ROOT)} links outside the repository: {target}"


def test_nothing_refers_to_documents_outside_the_repository():
    tracked = subprocess.run(["git", "ls-files", "*.py", "*.md", "*.yaml", "*.toml"], cwd=ROOT, capture_output=True,
                             text=True, check=False)
    files = tracked.stdout.split() if tracked.returncode == 0 else [
        str(p.relative_to(ROOT)) for ext in ("py", "md", "yaml", "toml") for p in ROOT.rglob(f"*.{ext}")
        if ".venv" not in p.parts]
    # spelled in pieces so that this file does not match itself
    outside = re.compile("|".join([r"shared" + "/docs", r"METHODS" + r"\.md", r"\.\./shared" + "/"]))
    hits = [f"{f}:{i}" for f in files if (ROOT / f).is_file()
            for i, line in enumerate((ROOT / f).read_text(errors="replace").splitlines(), 1) if outside.search(line)]
    assert not hits, f"references to files outside the repository (use docs/methods.md, docs/architecture.md): {hits}"
