"""Package list for the project's layout.

`environments/`, `critics/` and `policies/` live at the repository root but install as
`agentloop.environments`, `agentloop.critics` and `agentloop.policies` (see `package-dir` in
pyproject.toml); setuptools' automatic discovery cannot remap names, so the list is built here.
"""

from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).parent
MAPPED = {"agentloop": "agentloop", "agentloop.environments": "environments",
          "agentloop.critics": "critics", "agentloop.policies": "policies"}


def _packages() -> list[str]:
    names = []
    for name, folder in MAPPED.items():
        base = ROOT / folder
        for init in sorted(base.rglob("__init__.py")):
            rel = init.parent.relative_to(base)
            if any(part.startswith((".", "_")) or part == "tests" for part in rel.parts):
                continue
            names.append(".".join([name, *rel.parts]) if rel.parts else name)
    return names


setup(packages=_packages())
