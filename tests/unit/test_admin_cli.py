"""The operator's commands where no Redis is needed: rendering, settings, a Redis that is down.

What they read from a real Redis: `tests/state/test_admin.py`.
"""

from __future__ import annotations

import pytest

from sluice.cli import admin
from sluice.cli.admin_render import human_bytes, human_deadline, human_duration
from sluice.cli.main import main
from sluice.config import Settings
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
    assert human_deadline(-75) == "overdue by 1m15s"


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
    for group, subcommand in (("adapters", "ls"), ("sessions", "ls")):
        assert main([group]) == 0
        assert subcommand in capsys.readouterr().out
