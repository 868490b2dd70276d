"""constraints.txt (`make lock`) pins every declared dependency inside its declared range.

The Makefile and deploy/Dockerfile install with `pip -c constraints.txt`; a bound changed in
pyproject.toml without re-locking, or a lock edited by hand past a bound, fails here.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


def pins(repo_root: Path) -> dict[str, str]:
    found = {}
    for line in (repo_root / "constraints.txt").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, version = line.partition("==")
        assert sep and version, f"constraints.txt: {line!r} is not name==version"
        found[canonicalize_name(name)] = version
    return found


def declared(repo_root: Path) -> list[Requirement]:
    project = tomllib.loads((repo_root / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        specs += extra
    return [Requirement(spec) for spec in specs]


def test_every_dependency_is_pinned_within_its_range(repo_root: Path) -> None:
    locked = pins(repo_root)
    for requirement in declared(repo_root):
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{name} is not in constraints.txt: run `make lock`"
        assert requirement.specifier.contains(locked[name], prereleases=True), (
            f"constraints.txt pins {name}=={locked[name]}, outside {requirement}: run `make lock`"
        )


def test_sluice_itself_is_not_pinned(repo_root: Path) -> None:
    assert "sluice" not in pins(repo_root)
