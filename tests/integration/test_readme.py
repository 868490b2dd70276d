"""The README, executed: the quick start's blocks and the Operating section's commands.

Quick start: every block, in order, in one shell, as written; the answers its comments
show (`# → ...`) must come out. Operating: every `$` line of its `console` blocks runs
against a stack with one egress adapter, and prints what the README shows, up to the
values (ids, counts, times). The only change made to the text is the services' addresses
(free ports instead of 8080 and 8082, so a `make run` on this machine does not collide).
The quick start's shell runs in a scratch folder that links the repository's `.venv` and
`examples`, as the repository's folder would hold them; files the README says to save
are saved there.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sluice.config import Settings
from sluice.media.calls_client import SessionsClient
from sluice.media.ice import rtc_configuration
from tests.integration.audio import StereoToneTrack
from tests.integration.helpers import Stack, egress_item, endpoint, start_stack

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
README_API = "http://127.0.0.1:8080"
README_WORKER_HEALTH = "127.0.0.1:8082"
ENDPOINT_PORTS = (9000, 9100)  # the quick start's own endpoints
DEV_APP, DEV_SECRET = "demo", "demo"


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


def shown_answers(blocks: list[tuple[str, str]]) -> list[str]:
    """What the shell blocks say comes out: each `# → ...` line and the `#   ...` under it."""
    shown: list[str] = []
    for language, code in blocks:
        showing = False
        for line in code.splitlines() if language == "sh" else ():
            if line.startswith("# → "):
                showing = True
                shown.append(line.removeprefix("# → "))
            elif showing and line.startswith("#   "):
                shown.append(line.removeprefix("#   "))
            else:
                showing = False
    return shown


def as_pattern(shown: str) -> re.Pattern[str]:
    """`…` in a shown answer stands for anything (an id, more fields, more lines)."""
    return re.compile(".*?".join(re.escape(part.strip()) for part in shown.split("…")), flags=re.S)


def test_the_quick_start_is_parsed_into_what_it_shows() -> None:
    blocks = quick_start_blocks((ROOT / "README.md").read_text())
    assert [lang for lang, _ in blocks] == ["sh", "python", "sh", "sh"]
    assert all(README_API in code for lang, code in blocks if "curl" in code)
    assert len(shown_answers(blocks)) >= 6


@pytest.fixture
def stack(clean_redis: str, tmp_path: Path) -> Iterator[Stack]:
    """What `make run` starts, with 2 worker processes; the app is development mode's."""
    running = start_stack(clean_redis, 2, tmp_path, apps=f"{DEV_APP}:{DEV_SECRET}")
    yield running
    running.stop()


def test_every_quick_start_block_runs_as_written(stack: Stack, tmp_path: Path) -> None:
    for port in ENDPOINT_PORTS:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                pytest.fail(f"port {port}, which the README's endpoints use, is taken")
    folder = tmp_path / "repo"
    folder.mkdir()
    (folder / ".venv").symlink_to(Path(sys.executable).parent.parent)
    (folder / "examples").symlink_to(ROOT / "examples")
    readme = (ROOT / "README.md").read_text().replace(README_API, stack.base_url)
    blocks = quick_start_blocks(readme)
    script = shell_script(blocks, folder)
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
    at = 0
    for shown in shown_answers(blocks):
        found = as_pattern(shown).search(output, at)
        assert found, f"the README shows {shown!r}; it did not come out (after {at})"
        at = found.end()


# --- Operating ------------------------------------------------------------------------


def operating_commands(readme: str) -> list[tuple[str, str]]:
    """(command, output shown) for each `$` line of the Operating section, in order."""
    section = readme.split("\n## Operating\n", 1)[1].split("\n## ", 1)[0]
    fenced = re.findall(r"^```(\w*)\n(.*?)^```$", section, flags=re.S | re.M)
    assert {language for language, _ in fenced} == {"console"}, "a sample nothing runs"
    commands: list[tuple[str, str]] = []
    for _, block in fenced:
        for chunk in re.split(r"^\$ ", block, flags=re.M)[1:]:
            command, _, shown = chunk.partition("\n")
            commands.append((command, shown))
    return commands


def masked(line: str) -> str:
    """A line without what differs from run to run: ids, numbers, spacing."""
    line = re.sub(r"\b[0-9a-f]{32}\b", "ID", line)
    line = re.sub(r"\d+(\.\d+)?", "N", line)
    return " ".join(line.split())


def json_shape(value: Any) -> Any:
    """Keys and values, recursively, numbers and ids masked; a list by its first item."""
    if isinstance(value, dict):
        return {key: json_shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [json_shape(value[0])] if value else []
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "N"
    return masked(value) if isinstance(value, str) else value


def series(text: str) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    return {
        (sample.name, tuple(sorted(sample.labels.items())))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def ends(text: str) -> list[str]:
    """The first and the last line, masked: a table's header and its summary."""
    lines = text.splitlines()
    return [masked(lines[0]), masked(lines[-1])] if lines else []


def assert_prints_what_is_shown(command: str, printed: str, shown: str) -> None:
    if "/metrics" in command:  # a few lines of a long page: each of them exists
        assert series(shown) <= series(printed), printed
    elif shown.startswith("{"):
        assert json_shape(json.loads(printed)) == json_shape(json.loads(shown)), printed
    else:
        assert ends(printed) == ends(shown), printed


async def run(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`command` in bash, as a terminal would run it."""
    return await asyncio.to_thread(
        subprocess.run, ["bash", "-c", command], env=env, capture_output=True, text=True, timeout=60
    )


def test_the_operating_section_is_parsed_into_commands() -> None:
    commands = operating_commands((ROOT / "README.md").read_text())
    names = [command.split()[0:3] for command, _ in commands]
    assert ["sluice", "adapters", "ls"] in names and ["rq", "info", "-u"] in names
    assert all(shown.strip() for _, shown in commands), "each command shows its output"


async def test_every_operating_command_prints_what_the_readme_shows(
    stack: Stack, tmp_path: Path
) -> None:
    """As after the quick start: a published track, an egress adapter sending it on."""
    settings = Settings(apps=f"{DEV_APP}:{DEV_SECRET}", ice_loopback=True)
    publisher = SessionsClient(
        f"{stack.sfu_url}/v1/apps/{DEV_APP}", DEV_SECRET, configuration=rtc_configuration(settings)
    )
    session_id, _ = await publisher.publish(StereoToneTrack(440, 660), "mic")
    readme = (ROOT / "README.md").read_text()
    api_address = stack.base_url.removeprefix("http://")
    worker_address = stack.worker_health_url.removeprefix("http://")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLUICE_", "VIRTUAL_ENV"))}
    env.update(
        SLUICE_REDIS_URL=stack.redis_url, PATH=f"{Path(sys.executable).parent}:{env['PATH']}"
    )
    async with endpoint() as ep, stack.client(secret=DEV_SECRET, app=DEV_APP) as api:
        created = await api.post(
            "/adapters/websocket/new", json={"tracks": [egress_item(ep.url, session_id)]}
        )
        assert created.status_code == 200, created.text
        adapter_id = created.json()["tracks"][0]["adapterId"]
        await asyncio.sleep(2.5)  # heartbeats: counters, usage and loop lag are saved

        for command, shown in operating_commands(readme):
            ran = (
                re.sub(r"\b[0-9a-f]{32}\b", adapter_id, command)
                .replace(README_API.removeprefix("http://"), api_address)
                .replace(README_WORKER_HEALTH, worker_address)
            )
            done = await run(ran, env)
            print(f"$ {ran}\n{done.stdout}{done.stderr}")
            assert done.returncode == 0, done.stderr
            assert_prints_what_is_shown(command, done.stdout, shown)

        # What `--json` prints of an adapter is the API's answer for it (closed: at rest).
        answer = (await api.get(f"/adapters/websocket/{adapter_id}")).json()
        assert answer["state"] == "closed"
        shown_json = json.loads(
            (await run(f"sluice adapters show {adapter_id} --json", env)).stdout
        )
        assert {name: shown_json[name] for name in answer} == answer
        workers = json.loads((await run("sluice workers --json", env)).stdout)
    await publisher.close()
    # Idle or busy, a worker has beaten within two of its 5 s intervals.
    assert all(worker["heartbeatAgeS"] < 10 for worker in workers["workers"]), workers
