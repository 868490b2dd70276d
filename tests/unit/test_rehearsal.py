"""The worker host's rehearsal: it streams, leaves nothing running, and never stops a host.

Real aiortc peers, a real WebSocket and HTTP on 127.0.0.1, as in the worker host.
"""

from __future__ import annotations

import threading

import pytest
from structlog.testing import capture_logs

from sluice.config import Settings
from sluice.media.aiortc_internals import register_codecs
from worker import rehearsal

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def settings() -> Settings:
    register_codecs()  # as the worker host does before rehearsing
    return Settings(apps="app1:secret1")  # on the default loop, as in the worker host


def test_it_streams_the_media_path_and_leaves_no_thread(settings: Settings) -> None:
    with capture_logs() as logs:
        rehearsal.rehearse(settings)
    (done,) = [e for e in logs if e["event"] == "rehearsal_done"]
    assert done["frames"] >= rehearsal.FRAMES // 2  # Opus in, PCM Packets out
    assert threading.active_count() == 1  # forking after it is safe


def test_a_failed_rehearsal_is_logged_and_the_host_goes_on(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(settings: Settings) -> int:
        raise OSError("no loopback here")

    monkeypatch.setattr(rehearsal, "_rehearse", broken)
    with capture_logs() as logs:
        rehearsal.rehearse(settings)  # does not raise
    assert [e["event"] for e in logs] == ["rehearsal_failed"]
