"""The README's quick start, executed: every block, in order, in one shell, as written.

The only change made to the text is the API's address (a free port instead of 8080, so
a `make run` on this machine does not collide). The shell runs in a scratch folder that
links the repository's `.venv` and `examples`, as the repository's folder would hold them;
files the README says to save are saved there.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.helpers import Stack, start_stack

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
README_API = "http://127.0.0.1:8080"
ENDPOINT_PORTS = (9000, 9100)  # the quick start's own endpoints


def quick_start_blocks(readme: str) -> list[tuple[str, str]]:
    """(language, code) of each fenced block of the "Quick start" section, in order."""
    section = readme.split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^```(\w+)\n(.*?)^```$", section, flags=re.S | re.M)


def shell_script(blocks: list[tuple[str, str]], folder: Path) -> str:
    """The shell blocks joined into one script; Python blocks saved under their names."""
    lines = ["set -euo pipefail"]
    for language, code in blocks:
        if language == "python":
            name = code.splitlines()[0].removeprefix("# ").strip()
            assert name.endswith(".py"), f"a Python block says its file name first: {name!r}"
            (folder / name).write_text(code)
        else:
            assert language == "sh", f"unexpected block language {language!r}"
            lines.append(code)
    return "\n".join(lines)


def test_the_quick_start_is_parsed_into_what_it_shows() -> None:
    blocks = quick_start_blocks((ROOT / "README.md").read_text())
    assert [lang for lang, _ in blocks] == ["sh", "python", "sh", "sh"]
    assert all(README_API in code for lang, code in blocks if "curl" in code)


@pytest.fixture
def stack(clean_redis: str, tmp_path: Path) -> Iterator[Stack]:
    for port in ENDPOINT_PORTS:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                pytest.fail(f"port {port}, which the README's endpoints use, is taken")
    running = start_stack(clean_redis, 2, tmp_path, apps="demo:demo")
    yield running
    running.stop()


def test_every_quick_start_block_runs_as_written(stack: Stack, tmp_path: Path) -> None:
    folder = tmp_path / "repo"
    folder.mkdir()
    (folder / ".venv").symlink_to(Path(sys.executable).parent.parent)
    (folder / "examples").symlink_to(ROOT / "examples")
    readme = (ROOT / "README.md").read_text().replace(README_API, stack.base_url)
    script = shell_script(quick_start_blocks(readme), folder)
    shell = subprocess.Popen(
        ["bash", "-c", script],
        cwd=folder,
        env={k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # the endpoint it starts in the background goes with it
    )
    try:
        output, _ = shell.communicate(timeout=90)
    finally:
        if shell.poll() is None:
            shell.kill()
        with contextlib.suppress(ProcessLookupError):  # the group is gone already
            os.killpg(shell.pid, signal.SIGTERM)
    print(output)
    assert shell.returncode == 0, output
    assert re.search(r'"sessionId":"\w+"', output)  # step 1's create answered
    assert '"state":"active","direction":"ingest"' in output
    packets = re.findall(r"^(\d+) (\d+) 3840$", output, flags=re.M)
    assert [int(seq) for seq, _ in packets[:50]] == list(range(50))  # a second of PCM
    assert output.count("'status': 'closed'") == 1  # listen.py closed its egress adapter
    assert output.count('"status":"closed"') == 1  # step 3 closed the ingest adapter
