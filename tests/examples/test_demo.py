"""`make demo`: the round trip runs end to end, says so, and leaves no process behind."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from examples.audio import RATE, float_to_pcm, tone, write_wav
from examples.demo import Outcome, report
from sluice.cli.devserver import redis_server_binary
from tests.conftest import NO_REDIS


def processes_with(marker: str) -> list[int]:
    """Processes whose environment holds `marker` (every child inherits it)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and marker.encode() in (proc / "environ").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


@pytest.mark.integration
@pytest.mark.skipif(redis_server_binary() is None, reason=NO_REDIS)
def test_demo_round_trip(repo_root: Path) -> None:
    marker = f"SLUICE_DEMO_TEST={uuid.uuid4().hex}"
    env = dict(os.environ, SLUICE_DEMO_TEST=marker.partition("=")[2])
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "examples.demo"],
        cwd=repo_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    elapsed = time.monotonic() - started
    print(done.stdout, f"\n({elapsed:.1f} s)")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "round trip OK" in done.stdout
    assert "frequency  440" in done.stdout
    assert "latency" in done.stdout
    assert processes_with(marker) == []


def outcome(tmp_path: Path, audio: bytes) -> Outcome:
    path = tmp_path / "demo.wav"
    stereo = np.frombuffer(audio, "<i2").reshape(-1, 2).astype(np.float32) / 32768
    write_wav(path, stereo, RATE)
    return Outcome(path, 0.0, 0.05)


def test_report_fails_on_silence_and_on_the_wrong_pitch(tmp_path: Path) -> None:
    sent = float_to_pcm(np.repeat(tone(440, 1.0), 2, axis=1))
    assert report(outcome(tmp_path, sent), sent, 440.0)
    assert not report(outcome(tmp_path, bytes(len(sent))), sent, 440.0)
    wrong = float_to_pcm(np.repeat(tone(660, 1.0), 2, axis=1))
    assert not report(outcome(tmp_path, wrong), sent, 440.0)
    short = float_to_pcm(np.repeat(tone(440, 0.5), 2, axis=1))
    assert not report(outcome(tmp_path, short), sent, 440.0)
