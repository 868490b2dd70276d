"""sluice-endpoint stands alone: it imports nothing of the server, and installs and
imports in a fresh virtualenv that has nothing but its two dependencies."""

from __future__ import annotations

import ast
import importlib.metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

SDK = Path(__file__).resolve().parents[2] / "sdk"
SOURCE = SDK / "src" / "sluice_endpoint"
SERVER_PACKAGES = {"sluice", "api", "worker", "sfu", "examples", "bench", "tests"}
DEPENDENCIES = {"websockets", "httpx"}
# Extras (and the engines the examples can use if you install them): imported only inside
# the functions that need them.
OPTIONAL = {"numpy", "soxr", "pocketsphinx", "vosk", "faster_whisper"}


def imports(tree: ast.AST) -> list[tuple[str, ast.stmt]]:
    found: list[tuple[str, ast.stmt]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name.split(".")[0], node) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module.split(".")[0], node))
    return found


def module_level(tree: ast.Module) -> set[int]:
    """Ids of import statements that run on import (not in a function, not TYPE_CHECKING)."""
    ids: set[int] = set()
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            ids.add(id(node))
    return ids


def test_the_sdk_imports_only_the_stdlib_and_its_dependencies() -> None:
    allowed = set(sys.stdlib_module_names) | DEPENDENCIES | OPTIONAL | {"sluice_endpoint"}
    files = sorted(SOURCE.rglob("*.py"))
    assert len(files) > 10
    for path in files:
        tree = ast.parse(path.read_text(), str(path))
        eager = module_level(tree)
        for name, node in imports(tree):
            where = f"{path.relative_to(SDK)}:{node.lineno} imports {name}"
            assert name not in SERVER_PACKAGES, where
            assert name in allowed, where
            assert name not in OPTIONAL or id(node) not in eager, f"{where} at import time"


def top_level_names(dist: importlib.metadata.Distribution) -> set[str]:
    names = set()
    for file in dist.files or []:
        first = file.parts[0]
        if first.endswith((".dist-info", ".egg-info")) or first in ("..", "__pycache__"):
            continue
        names.add(first[:-3] if first.endswith(".py") else first)
    return names


def closure(names: set[str]) -> set[str]:
    """The distributions `names` need (no extras), as installed here."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for line in importlib.metadata.requires(name) or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return seen


def run(*args: str | Path, cwd: Path | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=120, cwd=cwd, env=env
    )
    assert done.returncode == 0, f"{args}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.timeout(180)
def test_pip_install_into_a_fresh_virtualenv_imports(tmp_path: Path) -> None:
    wheels, venv, deps = tmp_path / "wheels", tmp_path / "venv", tmp_path / "deps"
    source = tmp_path / "sdk"  # a copy: building writes egg-info beside the sources
    shutil.copytree(
        SDK, source, ignore=shutil.ignore_patterns("*.egg-info", "build", "__pycache__")
    )
    # Built offline with this environment's setuptools, installed by pip with no index.
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-index",
        "--no-build-isolation", "-w", wheels, source)  # fmt: skip
    (wheel,) = wheels.glob("sluice_endpoint-*.whl")
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    run(sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps",
        "--no-index", wheel)  # fmt: skip
    # The two dependencies (and theirs), as installed here, and nothing else.
    deps.mkdir()
    for name in closure(DEPENDENCIES):
        dist = importlib.metadata.distribution(name)
        for top in top_level_names(dist):
            source = Path(str(dist.locate_file(top)))
            source = source if source.exists() else source.with_suffix(".py")
            (deps / source.name).symlink_to(source)
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))").strip())
    (site / "deps.pth").write_text(f"{deps}\n")
    check = """
import importlib, pkgutil, sys
import sluice_endpoint
for module in pkgutil.walk_packages(sluice_endpoint.__path__, "sluice_endpoint."):
    importlib.import_module(module.name)
heavy = {"sluice", "api", "worker", "sfu", "aiortc", "av", "fastapi", "google", "redis", "rq",
         "numpy", "soxr", "pydantic"}
loaded = heavy & {name.split(".")[0] for name in sys.modules}
assert not loaded, loaded
for name in ("aiortc", "google.protobuf", "sluice", "numpy"):
    try:
        importlib.import_module(name)
    except ImportError:
        continue
    raise SystemExit(f"{name} is importable: the venv is not clean")
from importlib.resources import files
assert files("sluice_endpoint").joinpath("py.typed").is_file()
print(sluice_endpoint.__version__, sluice_endpoint.encode_packet(1, 960, b"x").hex())
"""
    # Run away from the checkout, whose folder would be on the path.
    assert run(python, "-c", check, cwd=tmp_path).split() == ["0.1.0", "080110c0072a0178"]
