"""Package list for the project's layout.

`environments/`, `critics/` and `policies/` live at the repository root but install as
`agentloop.environments`, `agentloop.critics` and `agentloop.policies` (see `package-dir` in
pyproject.toml); setuptools' automatic discovery cannot remap names, so the list is built here.
`configs/` (YAML and its data files, no Python) installs as `agentloop/configs/`, every folder of it
listed as a data-only package so that its files travel as package data.
"""

from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).parent
MAPPED = {"agentloop": "agentloop", "agentloop.environments": "environments",
          "agentloop.critics": "critics", "agentloop.policies": "policies"}
DATA = {"agentloop.configs": "configs"}


def _packages() -> list[str]:
    names = []
    for name, folder in MAPPED.items():
        base = ROOT / folder
        for init in sorted(base.rglob("__init__.py")):
            rel = init.parent.relative_to(base)
            if any(part.startswith((".", "_")) or part == "tests" for part in rel.parts):
                continue
            names.append(".".join([name, *rel.parts]) if rel.parts else name)
    for name, folder in DATA.items():
        base = ROOT / folder
        for sub in sorted(p for p in [base, *base.rglob("*")] if p.is_dir()):
            rel = sub.relative_to(base)
            if not any(part.startswith((".", "_")) for part in rel.parts):
                names.append(".".join([name, *rel.parts]))
    return names


setup(packages=_packages())
