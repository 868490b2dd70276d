"""The README documents every setting, so a new knob cannot ship undocumented."""

from __future__ import annotations

from pathlib import Path

from sluice.config import Settings


def test_every_setting_is_in_the_readme(repo_root: Path) -> None:
    readme = (repo_root / "README.md").read_text()
    missing = [
        f"SLUICE_{name.upper()}"
        for name in Settings.model_fields
        if f"SLUICE_{name.upper()}" not in readme
    ]
    assert not missing, f"document these in README.md's Settings table: {missing}"
