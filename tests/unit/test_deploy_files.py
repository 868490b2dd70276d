"""deploy/: the container image, the compose stack and Grafana's provisioning agree.

Docker cannot run here, so these read the files: the Dockerfile is multi-stage, runs
unprivileged, checks health and exposes every port the processes use; every compose
service has a healthcheck, Prometheus scrapes the ports the services listen on, and
Grafana is provisioned with that Prometheus and the shipped dashboard.
"""

from __future__ import annotations

import json
import re
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pytest
import yaml

from sluice.config import Settings
from sluice.setting_parsers import parse_port_range

DEPLOY = Path("deploy")
SLUICE_SERVICES = {"api": "SLUICE_API_PORT", "sfu": "SLUICE_SFU_PORT"}


@pytest.fixture(scope="module")
def root() -> Path:
    return Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dockerfile(root: Path) -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    text = (root / DEPLOY / "Dockerfile").read_text()
    joined = re.sub(r"\\\n\s*", " ", text)
    return [
        line.strip() for line in joined.splitlines() if line.strip() and not line.startswith("#")
    ]


@pytest.fixture(scope="module")
def compose(root: Path) -> dict[str, Any]:
    loaded = yaml.safe_load((root / DEPLOY / "compose.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def instructions(lines: list[str], keyword: str) -> list[str]:
    return [
        line[len(keyword) :].strip() for line in lines if line.upper().startswith(keyword + " ")
    ]


def final_stage(lines: list[str]) -> list[str]:
    last = max(i for i, line in enumerate(lines) if line.upper().startswith("FROM "))
    return lines[last:]


def image_env(lines: list[str]) -> dict[str, str]:
    env = {}
    for spec in instructions(final_stage(lines), "ENV"):
        for pair in spec.split():
            name, _, value = pair.partition("=")
            env[name] = value
    return env


def test_dockerfile_is_multi_stage(dockerfile: list[str]) -> None:
    froms = instructions(dockerfile, "FROM")
    assert len(froms) >= 2
    build = froms[0].split()[-1]
    assert froms[0].split()[-2].upper() == "AS"
    # The final stage takes the built virtualenv, not the build tools or sources.
    copies = instructions(final_stage(dockerfile), "COPY")
    assert any(c.startswith(f"--from={build} ") for c in copies)
    assert not any(c.startswith(("sluice", "api", "worker", "sfu", ".")) for c in copies)


def test_dockerfile_installs_the_lock(dockerfile: list[str]) -> None:
    installs = [r for r in instructions(dockerfile, "RUN") if "pip install" in r]
    assert installs and all("-c constraints.txt" in r for r in installs)
    assert any("constraints.txt" in c for c in instructions(dockerfile, "COPY"))


def test_dockerfile_runs_unprivileged(dockerfile: list[str]) -> None:
    (user,) = instructions(final_stage(dockerfile), "USER")
    assert user not in ("root", "0") and not user.startswith(("root:", "0:"))
    created = " ".join(instructions(final_stage(dockerfile), "RUN"))
    assert "useradd --system" in created and created.rstrip().endswith(user)


def test_dockerfile_checks_health(dockerfile: list[str], root: Path) -> None:
    (check,) = instructions(dockerfile, "HEALTHCHECK")
    assert "CMD" in check and "/opt/sluice/healthcheck.py" in check
    copied = [c for c in instructions(dockerfile, "COPY") if "healthcheck.py" in c]
    assert copied == ["deploy/healthcheck.py /opt/sluice/healthcheck.py"]


def test_dockerfile_exposes_every_port(dockerfile: list[str]) -> None:
    exposed = set(" ".join(instructions(dockerfile, "EXPOSE")).split())
    defaults = Settings(dev=True)
    tcp = {f"{p}/tcp" for p in (defaults.api_port, defaults.sfu_port, defaults.worker_health_port)}
    ports = parse_port_range(image_env(dockerfile)["SLUICE_ICE_UDP_PORTS"])
    assert ports is not None
    assert exposed == tcp | {f"{ports[0]}-{ports[-1]}/udp"}


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether a pattern names `path` or a folder it is in (`**/` at any depth)."""
    parts = path.strip("/").split("/")
    for depth in range(1, len(parts) + 1):
        prefix = "/".join(parts[:depth])
        for pattern in patterns:
            anywhere = pattern.startswith("**/")
            if fnmatch(prefix, pattern) or (anywhere and fnmatch(parts[depth - 1], pattern[3:])):
                return True
    return False


def test_dockerignore_keeps_what_the_image_copies(dockerfile: list[str], root: Path) -> None:
    ignored = [
        line.strip()
        for line in (root / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert {".git", ".venv", "tests"} <= set(ignored)
    assert dockerignored("sluice/wire/__pycache__/x.pyc", ignored)
    assert dockerignored("deploy/systemd/sluice.env", ignored)
    assert not dockerignored("deploy/systemd/sluice.env.example", ignored)
    for copy in instructions(dockerfile, "COPY"):
        if copy.startswith("--from="):
            continue
        for source in copy.split()[:-1]:
            assert (root / source).exists(), source
            assert not dockerignored(source, ignored), source


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = compose["services"]
    assert isinstance(found, dict)
    return found


def test_every_service_has_a_healthcheck(compose: dict[str, Any]) -> None:
    assert set(services(compose)) == {"redis", "api", "worker", "sfu", "prometheus", "grafana"}
    for name, service in services(compose).items():
        test = service.get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), name


def test_images_are_pinned(compose: dict[str, Any]) -> None:
    for name, service in services(compose).items():
        image = service.get("image", "")
        if "build" in service:
            continue
        assert re.search(r":v?\d+(\.\d+)+", image), f"{name}: pin a version, not {image!r}"


def test_sluice_services_probe_readiness(compose: dict[str, Any]) -> None:
    for name in ("api", "sfu", "worker"):
        service = services(compose)[name]
        assert service["command"] == ["sluice", name]
        assert service["network_mode"] == "host"  # media: see the file's header
        assert service["healthcheck"]["test"][-2:] == ["/opt/sluice/healthcheck.py", "readyz"]


def test_prometheus_scrapes_the_ports_the_services_use(compose: dict[str, Any], root: Path) -> None:
    env = services(compose)["api"]["environment"]
    listening = {
        "sluice-api": f"127.0.0.1:{env['SLUICE_API_PORT']}",
        "sluice-sfu": f"127.0.0.1:{env['SLUICE_SFU_PORT']}",
        "sluice-worker": f"127.0.0.1:{env['SLUICE_WORKER_HEALTH_PORT']}",
    }
    config = yaml.safe_load((root / DEPLOY / "prometheus.yml").read_text())
    targets = {
        job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]]
        for job in config["scrape_configs"]
    }
    assert targets == {job: [address] for job, address in listening.items()}
    prometheus = services(compose)["prometheus"]
    assert "./prometheus.yml:/etc/prometheus/prometheus.yml:ro" in prometheus["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """Bind mounts of a service: path inside the container → file under deploy/."""
    found = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("./"):
            found[target] = source[2:]
    return found


def test_grafana_is_provisioned_with_prometheus_and_the_dashboard(
    compose: dict[str, Any], root: Path
) -> None:
    grafana = services(compose)["grafana"]
    mounted = mounts(grafana)
    assert mounted["/etc/grafana/provisioning"] == "grafana/provisioning"
    provisioning = root / DEPLOY / "grafana" / "provisioning"

    (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())[
        "datasources"
    ]
    listen = next(
        arg.split("=", 1)[1]
        for arg in services(compose)["prometheus"]["command"]
        if arg.startswith("--web.listen-address=")
    )
    assert (source["type"], source["url"], source["isDefault"]) == (
        "prometheus",
        f"http://{listen}",
        True,
    )

    (provider,) = yaml.safe_load((provisioning / "dashboards" / "sluice.yaml").read_text())[
        "providers"
    ]
    folder = provider["options"]["path"]
    dashboards = {t: s for t, s in mounted.items() if t.startswith(folder + "/")}
    assert dashboards == {f"{folder}/sluice-dashboard.json": "grafana/sluice-dashboard.json"}
    dashboard = json.loads((root / DEPLOY / "grafana" / "sluice-dashboard.json").read_text())
    # The dashboard's data source variable resolves to the provisioned default.
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["query"] == source["type"]


def test_bind_mounted_files_exist(compose: dict[str, Any], root: Path) -> None:
    for name, service in services(compose).items():
        for target, source in mounts(service).items():
            assert (root / DEPLOY / source).exists(), f"{name}: {source} → {target}"


VENV = "/opt/sluice/.venv"


def unit(root: Path, name: str) -> tuple[str, dict[str, str]]:
    """A systemd unit's text and its `Key=value` lines (no key appears twice in ours)."""
    text = (root / DEPLOY / "systemd" / f"{name}.service").read_text()
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            assert key not in values, f"{name}: {key} twice"
            values[key] = value
    return text, values


@pytest.mark.parametrize("role", ["api", "sfu", "worker"])
def test_systemd_units_say_how_they_are_installed(root: Path, role: str) -> None:
    text, values = unit(root, f"sluice-{role}")
    user = values["User"]
    # The header creates the user and the venv that the unit then uses.
    assert (
        f"useradd --system --user-group --home-dir /opt/sluice --shell /usr/sbin/nologin {user}"
        in text
    )
    assert f"-m venv {VENV}" in text and f"{VENV}/bin/pip install -c constraints.txt" in text
    assert values["ExecStart"] == f"{VENV}/bin/sluice {role}"
    assert values["EnvironmentFile"] == "/etc/sluice/sluice.env"
    assert "/etc/sluice/sluice.env" in text.split("[Unit]")[0]
    defaults = Settings(dev=True)
    port = {
        "api": defaults.api_port,
        "sfu": defaults.sfu_port,
        "worker": defaults.worker_health_port,
    }
    assert values["ExecStartPost"].endswith(f"http://127.0.0.1:{port[role]}/healthz")
