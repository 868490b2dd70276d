"""Every `*.env.example` is read alike by systemd and docker compose and gives valid Settings.

systemd's `EnvironmentFile=` keeps a trailing `# comment` as part of the value, where
compose's `env_file:` strips it: a sample that puts one there starts under one and not
the other. Placeholders a sample leaves for the operator to replace must parse too.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from dotenv import dotenv_values

from sluice.config import Settings

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = sorted(
    p.relative_to(ROOT)
    for p in ROOT.rglob("*.env.example")
    if not {".venv", ".git", "node_modules"} & set(p.relative_to(ROOT).parts)
)


def systemd_environment_file(text: str) -> dict[str, str]:
    """Assignments as systemd.exec(5) reads an `EnvironmentFile=`.

    Lines starting with `#` or `;`, empty ones and ones without `=` are ignored; a
    trailing backslash joins the next line; leading and trailing whitespace goes;
    everything else after `=` is the value, `#` included. Quoted values lose their quotes
    (one line only here: a sample needs no more).
    """
    values: dict[str, str] = {}
    for line in text.replace("\\\n", "").splitlines():
        line = line.strip(" \t\r")
        if not line or line[0] in "#;" or "=" not in line:
            continue
        key, value = line.split("=", 1)
        value = value.lstrip(" \t")
        if value[:1] in ("'", '"'):
            value, rest = _quoted(value)
            if rest.strip():
                raise ValueError(f"{key}: text after the closing quote: {rest!r}")
        else:
            value, _ = _unescaped(value, stop=None)
        values[key.strip()] = value
    return values


def _quoted(value: str) -> tuple[str, str]:
    """A quoted value and what follows its closing quote; `\\` escapes only in `"`."""
    if value[0] == "'":
        closing = value.index("'", 1)  # ValueError: unterminated
        return value[1:closing], value[closing + 1 :]
    return _unescaped(value[1:], stop='"')


def _unescaped(value: str, stop: str | None) -> tuple[str, str]:
    """`value` up to an unescaped `stop` (or its end), with `\\x` read as `x`."""
    out: list[str] = []
    index = 0
    while index < len(value):
        char = value[index]
        if char == stop:
            return "".join(out), value[index + 1 :]
        if char == "\\" and index + 1 < len(value):
            index += 1
            char = value[index]
        out.append(char)
        index += 1
    if stop is not None:
        raise ValueError(f"unterminated {stop}-quoted value")
    return "".join(out), ""


def compose_env_file(path: Path) -> dict[str, str]:
    """Assignments as docker compose's `env_file:` reads them (dotenv rules)."""
    return {k: v or "" for k, v in dotenv_values(path, interpolate=False).items()}


def test_there_are_samples_to_check() -> None:
    assert Path("deploy/systemd/sluice.env.example") in SAMPLES


@pytest.mark.parametrize("sample", SAMPLES, ids=str)
def test_sample_reads_alike_and_makes_valid_settings(
    sample: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    systemd = systemd_environment_file((ROOT / sample).read_text())
    known = {f"SLUICE_{name.upper()}" for name in Settings.model_fields}
    assert set(systemd) <= known, f"not Sluice settings: {sorted(set(systemd) - known)}"
    for name in known:
        monkeypatch.delenv(name, raising=False)
    for name, value in systemd.items():
        monkeypatch.setenv(name, value)
    Settings()  # raises, naming the setting, on a value it refuses
    compose = compose_env_file(ROOT / sample)
    assert systemd == compose, "systemd and compose read this sample differently"


def test_the_systemd_reader_follows_its_rules() -> None:
    text = (
        "# a comment\n; another\n\nno assignment here\n"
        "A=1  # not a comment to systemd\n"
        "  B = two words  \n"
        "C='single # kept'\n"
        'D="say \\"hi\\""\n'
        "E=back\\\\slash\n"
        "F=con\\\ntinued\n"
    )
    assert systemd_environment_file(text) == {
        "A": "1  # not a comment to systemd",
        "B": "two words",
        "C": "single # kept",
        "D": 'say "hi"',
        "E": "back\\slash",
        "F": "continued",
    }
