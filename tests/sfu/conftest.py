"""Real SFU (and API) processes on free 127.0.0.1 ports, and clients for them."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from sluice.config import Settings
from sluice.media.calls_client import SessionsClient
from sluice.media.ice import rtc_configuration
from tests.conftest import free_port

APPS = "app1:secret1,app2:secret2"
LOOPBACK = Settings(dev=True, ice_loopback=True)


@dataclass
class Server:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def app_url(self, app_id: str = "app1") -> str:
        return f"{self.url}/v1/apps/{app_id}"

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def start_server(
    command: str, redis_url: str, log_dir: Path, extra_env: dict[str, str] | None = None
) -> Server:
    port = free_port()
    env = {
        **os.environ,
        "SLUICE_APPS": APPS,
        "SLUICE_REDIS_URL": redis_url,
        "SLUICE_ICE_LOOPBACK": "1",
        "SLUICE_LOG_FORMAT": "json",
        # One node per `sluice sfu` (not one per core): several are started one by one.
        "SLUICE_SFU_NODES": "1",
        **(extra_env or {}),
    }
    log = log_dir / f"{command}-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sluice.cli",
                command,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{command} exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=0.5).status_code == 200:
                return Server(url, proc, log)
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{command} did not start: {log.read_text()[-2000:]}")


def stop_server(server: Server) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()


@pytest.fixture(scope="session")
def redis_url(redis_url: str) -> str:
    """The suite's Redis, database 5 for this folder: the session-wide SFU below stays
    registered as a node for the whole run, and must not be in the directory that the
    integration tests' stacks (database 0) place their sessions from."""
    return redis_url.rsplit("/", 1)[0] + "/5"


@pytest.fixture(scope="session")
def sfu(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One SFU for the suite (sessions are independent); idle GC after 30 s as deployed.

    With `SLUICE_TEST_SFU_NODES=N` (N > 1), N SFU nodes behind an API process instead:
    the sessions API is then the API's, which places each session on a node and pulls
    across nodes by cascade, so the same tests check that clients cannot tell.
    """
    log_dir = tmp_path_factory.mktemp("sfu")
    nodes = [
        start_server("sfu", redis_url, log_dir)
        for _ in range(int(os.environ.get("SLUICE_TEST_SFU_NODES") or 1))
    ]
    if len(nodes) == 1:
        yield nodes[0]
    else:
        front = start_server("api", redis_url, log_dir, {"SLUICE_SFU_URL": nodes[0].url})
        yield front
        stop_server(front)
    for node in nodes:
        stop_server(node)


@pytest.fixture
async def client(sfu: Server) -> AsyncIterator[SessionsClient]:
    c = SessionsClient(sfu.app_url(), "secret1", configuration=rtc_configuration(LOOPBACK))
    yield c
    await c.close()


@pytest.fixture
async def http(sfu: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=sfu.app_url(), headers={"Authorization": "Bearer secret1"}, timeout=10
    ) as c:
        yield c


@pytest.fixture(scope="session")
def api(sfu: Server, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The API process, proxying the sessions API to `sfu` and serving the demo page."""
    server = start_server(
        "api", redis_url, tmp_path_factory.mktemp("api"), {"SLUICE_SFU_URL": sfu.url}
    )
    yield server
    stop_server(server)
