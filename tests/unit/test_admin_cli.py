"""The operator's commands where no Redis is needed: rendering, settings, a Redis that is down.

What they read from a real Redis: `tests/state/test_admin.py`.
"""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from api.service import adapter_view
from sluice.cli import admin
from sluice.cli.admin_render import (
    adapters_table,
    bar,
    human_bytes,
    human_deadline,
    human_duration,
)
from sluice.cli.main import main
from sluice.config import Settings
from sluice.state.records import COUNTER_NAMES, AdapterRecord, AdapterState, Direction
from tests.conftest import free_port


def test_numbers_read_like_a_person_would_write_them() -> None:
    assert [human_bytes(n) for n in (999, 1234, 1_234_567, 5 * 10**12)] == [
        "999 B",
        "1.2 kB",
        "1.2 MB",
        "5.0 TB",
    ]
    assert [human_duration(s) for s in (42.9, 252, 3 * 3600 + 120, 2 * 86_400 + 4 * 3600)] == [
        "42s",
        "4m12s",
        "3h02m",
        "2d04h",
    ]
    assert human_deadline(1.24) == "in 1.2 s"
    assert [bar(n, 80, width=10) for n in (80, 40, 1, 0)] == ["██████████", "█████", "▏", ""]
    assert human_deadline(-75) == "overdue by 1m15s"


def test_tables_fit_an_80_column_terminal() -> None:
    record = AdapterRecord(
        adapter_id="a1",
        app_id="app1",
        direction=Direction.EGRESS,
        session_id="s1",
        track_name="mic",
        endpoint="ws://127.0.0.1:9/x",
        codec="pcm",
    )
    info = admin.AdapterInfo(
        adapter_id="a" * 32,
        app_id="app1",
        direction=Direction.EGRESS,
        state=AdapterState.CLOSED,
        session_id="s" * 32,
        track_name="microphone",
        endpoint=f"wss://stt.example.com:8443/{'long-path/' * 8}",
        codec="pcm",
        worker="host:1",
        created_at="2030-01-01T00:00:00.000Z",
        age_s=4000.0,
        closed_at="2030-01-01T01:00:00.000Z",
        close_reason="endpoint_unavailable",
        counters={**dict.fromkeys(COUNTER_NAMES, 0), "bytes": 12_345_678, "packets": 3215},
        heartbeat_in_s=None,
        claim_in_s=None,
        close_requested=False,
        view=adapter_view(record),
    )
    terminal = Console(width=80, file=io.StringIO(), force_terminal=True, color_system=None)
    with terminal.capture() as captured:
        terminal.print(adapters_table([info]))
    lines = captured.get().splitlines()
    assert max(len(line) for line in lines) <= 80
    assert any("a" * 32 in line for line in lines)  # ids are never folded


def test_admin_settings_need_no_apps_and_stay_out_of_dev_mode(cli_env: None) -> None:
    with pytest.raises(ValueError, match="SLUICE_APPS"):
        Settings()
    settings = admin.admin_settings()
    assert not settings.dev and not settings.endpoint_policy.allow_private


@pytest.mark.parametrize(
    "argv",
    [
        ["adapters", "ls"],
        ["adapters", "show", "a1"],
        ["adapters", "close", "a1"],
        ["workers"],
        ["sessions", "ls"],
    ],
)
def test_cli_without_redis_says_so_in_one_line(
    cli_env: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
) -> None:
    port = free_port()  # nothing listens there
    monkeypatch.setenv("SLUICE_REDIS_URL", f"redis://:pw@127.0.0.1:{port}/0")
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"sluice: cannot reach Redis at redis://127.0.0.1:{port}/0: ")
    assert len(err.strip().splitlines()) == 1 and "pw" not in err


def test_version_and_a_group_without_a_subcommand_print_rather_than_fail(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from sluice import __version__

    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"sluice {__version__}"
    for argv, subcommand in ((["adapters"], "ls"), (["sessions"], "ls"), ([], "workers")):
        assert main(argv) == 0
        assert subcommand in capsys.readouterr().out
