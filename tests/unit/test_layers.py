"""The layer rules, read from the imports of every module (README, "How it works").

- `api` (the control plane) imports neither the SFU nor the media layer, nor the workers;
- `sfu` does not import the workers or the API; `worker` does not import the API or
  the SFU (pipelines are ordinary Calls clients through `sluice.media.calls_client`);
- the shared layers (`sluice.*`) import none of them; only the process wiring
  (`sluice.cli`) sees everything;
- the demo (`sluice.demo`) is mounted by the wiring, never by a service.

Imports inside functions and under `TYPE_CHECKING` count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WIRING = "sluice.cli"
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "api": ("sfu", "worker", "sluice.media", "sluice.demo", WIRING),
    "sfu": ("api", "worker", "sluice.demo", WIRING),
    "worker": ("api", "sfu", "sluice.demo", WIRING),
    "sluice": ("api", "worker", "sfu", WIRING),
}


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def layer_of(module: str) -> str | None:
    """The layer whose rules bind `module`; None for the wiring, which may import all."""
    if _within(module, WIRING):
        return None
    return module.split(".")[0] if module.split(".")[0] in FORBIDDEN else None


def imported_modules(module: str, source: str) -> list[str]:
    """Every module `source` (the text of `module`) imports, relative imports resolved."""
    package = module.split(".")
    imports: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imports += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            imports.append(target)
            # `from sluice import cli` imports the module `sluice.cli`.
            imports += [f"{target}.{alias.name}" for alias in node.names]
    return imports


def violations(module: str, source: str) -> list[str]:
    """The imports of `module` that break its layer's rule, as readable lines."""
    layer = layer_of(module)
    if layer is None:
        return []
    return [
        f"{module} imports {target} ({layer} must not import {banned})"
        for target in imported_modules(module, source)
        for banned in FORBIDDEN[layer]
        if _within(target, banned) and not _within(module, banned)
    ]


def project_modules() -> dict[str, Path]:
    modules: dict[str, Path] = {}
    for top in FORBIDDEN:
        for path in (ROOT / top).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def test_every_module_keeps_to_its_layer() -> None:
    modules = project_modules()
    assert len(modules) > 80  # the walk found the project, not an empty folder
    found = [line for name, path in modules.items() for line in violations(name, path.read_text())]
    assert found == []


def test_the_check_catches_each_kind_of_violation() -> None:
    # A rule that cannot fail proves nothing: each forbidden edge, written the ways
    # Python allows, must be reported.
    cases = {
        "api.service": "from sfu.registry import lookup_track",
        "api.routes.x": "import sluice.media.frames",
        "api.main": "def f():\n    from sluice.demo import viewer",
        "sfu.manager": "from worker.pool import run_pool",
        "worker.pipelines.egress": "from sfu.client import SessionsClient",
        "worker.runner": "from api import service",
        "sluice.state.store": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n import api",
        "sluice.media.frames": "from sluice import cli",
        "sluice.demo.viewer": "from ...sfu import app",  # relative, resolved
    }
    for module, source in cases.items():
        assert violations(module, source), module


def test_allowed_imports_are_not_reported() -> None:
    allowed = {
        "sluice.cli.main": "import api.main\nimport worker.pool\nimport sfu.app",
        "sfu.session": "from sluice.media.types import EncodedFrame",
        "worker.pipelines.egress": "from sluice.media.calls_client import SessionsClient",
        "api.service": "from sluice.state.track_registry import lookup_track",
        "sluice.state.store": "from sluice.state import keys",
    }
    for module, source in allowed.items():
        assert violations(module, source) == [], module
