"""The container's HEALTHCHECK: asks the Sluice process of this container if it is up.

One image runs `sluice api`, `sluice sfu` or `sluice worker`, so the probe reads the
container's command (PID 1's, after `docker run --init`'s `--` too) to find which, and
the port that process serves its probes on: `--port`, else its `SLUICE_*_PORT` setting,
else the default. `python healthcheck.py` asks `/healthz` (alive); `python healthcheck.py
readyz` asks `/readyz` (can do its job: compose waits on it). Standard library only.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence

# process → (its port setting, the default port); sluice/config.py has the same defaults.
PORTS = {
    "api": ("SLUICE_API_PORT", 8080),
    "sfu": ("SLUICE_SFU_PORT", 8081),
    "worker": ("SLUICE_WORKER_HEALTH_PORT", 8082),
}


def probe_url(cmdline: Sequence[str], env: Mapping[str, str], path: str = "healthz") -> str:
    """The probe URL of the Sluice process `cmdline` starts.

    Raises:
        ValueError: `cmdline` runs no `sluice api|sfu|worker`.
    """
    for i, arg in enumerate(cmdline[:-1]):
        role = cmdline[i + 1]
        if os.path.basename(arg) == "sluice" and role in PORTS:
            variable, default = PORTS[role]
            rest = list(cmdline[i + 2 :])
            port = rest[rest.index("--port") + 1] if "--port" in rest[:-1] else None
            return f"http://127.0.0.1:{port or env.get(variable) or default}/{path}"
    raise ValueError(f"not a sluice api, sfu or worker command: {' '.join(cmdline)!r}")


def main(argv: Sequence[str], cmdline_file: str = "/proc/1/cmdline") -> int:
    path = argv[1] if len(argv) > 1 else "healthz"
    with open(cmdline_file, "rb") as f:
        cmdline = [arg.decode() for arg in f.read().split(b"\0") if arg]
    url = probe_url(cmdline, os.environ, path)
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"{url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
