"""deploy/healthcheck.py finds the container's Sluice process and asks its probe port."""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType

import pytest

from sluice.config import Settings


@pytest.fixture(scope="module")
def healthcheck() -> ModuleType:
    script = Path(__file__).resolve().parents[2] / "deploy" / "healthcheck.py"
    spec = importlib.util.spec_from_file_location("healthcheck", script)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


VENV_SLUICE = ["/opt/sluice/.venv/bin/python", "/opt/sluice/.venv/bin/sluice"]


@pytest.mark.parametrize(
    ("cmdline", "env", "url"),
    [
        ([*VENV_SLUICE, "api"], {}, "http://127.0.0.1:8080/healthz"),
        ([*VENV_SLUICE, "sfu"], {"SLUICE_SFU_PORT": "9081"}, "http://127.0.0.1:9081/healthz"),
        ([*VENV_SLUICE, "worker", "--processes", "4"], {}, "http://127.0.0.1:8082/healthz"),
        (["/sbin/docker-init", "--", "sluice", "sfu", "--port", "7000"], {}, "http://127.0.0.1:7000/healthz"),
    ],
)  # fmt: skip
def test_probe_url(
    healthcheck: ModuleType, cmdline: list[str], env: dict[str, str], url: str
) -> None:
    assert healthcheck.probe_url(cmdline, env) == url


def test_defaults_are_the_settings(healthcheck: ModuleType) -> None:
    defaults = Settings(dev=True)
    assert {role: port for role, (_, port) in healthcheck.PORTS.items()} == {
        "api": defaults.api_port,
        "sfu": defaults.sfu_port,
        "worker": defaults.worker_health_port,
    }


def test_other_commands_are_refused(healthcheck: ModuleType) -> None:
    with pytest.raises(ValueError, match="not a sluice"):
        healthcheck.probe_url(["redis-server"], {})
    with pytest.raises(ValueError, match="not a sluice"):
        healthcheck.probe_url([*VENV_SLUICE, "adapters", "ls"], {})


class Probes(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 503)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[int]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Probes)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


def test_main_asks_the_process(healthcheck: ModuleType, server: int, tmp_path: Path) -> None:
    cmdline = tmp_path / "cmdline"
    cmdline.write_bytes(
        b"\0".join([b"python", b"/x/sluice", b"sfu", b"--port", str(server).encode()])
    )
    assert healthcheck.main(["healthcheck.py"], str(cmdline)) == 0
    assert healthcheck.main(["healthcheck.py", "readyz"], str(cmdline)) == 1  # 503
    cmdline.write_bytes(b"\0".join([b"python", b"/x/sluice", b"sfu", b"--port", b"9"]))
    assert healthcheck.main(["healthcheck.py"], str(cmdline)) == 1  # nothing listens
