"""`tts_barge_in` against the real stack: interrupted speech, its marks and `cleared`."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from examples.tts_barge_in import converse, sentences
from tests.integration.helpers import APP, SECRET, Stack

INTERRUPT_S = 2.5
SLACK_S = 0.25  # the flow is checked here; test_ingest_barge_in holds the timing to 40 ms


@pytest.mark.integration
async def test_the_reply_is_cut_off_and_the_answer_is_heard(stack: Stack) -> None:
    said = sentences(None, 2.0)  # three of 2 s; the caller interrupts 2.5 s in
    answer = sentences(None, 0.5)[0]
    lines: list[str] = []
    talk = await converse(
        f"{stack.base_url}/v1/apps/{APP}",
        SECRET,
        said,
        answer,
        interrupt_s=INTERRUPT_S,
        wait_s=1.0,
        show=lines.append,
    )
    print("\n".join(lines))
    events = [(round(at, 2), a["event"], a.get("name"), a.get("cleared")) for at, a in talk.answers]
    assert [e[1:] for e in events] == [
        ("mark", "sentence-1", False),  # heard: its 2 s played before the interruption
        ("mark", "sentence-2", True),  # cut off in the middle
        ("mark", "sentence-3", True),  # never started
        ("cleared", None, None),
        ("mark", "answer", False),  # the answer after the clear is heard in full
    ]
    times = [at for at, _ in talk.answers]
    assert abs(times[0] - 2.0) < SLACK_S
    assert all(abs(at - INTERRUPT_S) < SLACK_S for at in times[1:4])
    assert abs(times[4] - (INTERRUPT_S + 0.5)) < SLACK_S  # right after the clear, for 0.5 s
    cleared = talk.answers[3][1]
    assert abs(cleared["droppedMs"] - 3_500) < SLACK_S * 1000  # 6 s said, 2.5 s of it played
    assert any("<- " in line and '"cleared"' in line for line in lines)


def test_help() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "examples.tts_barge_in", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "python -m examples.tts_barge_in" in done.stdout


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_say_splits_text_into_24khz_sentences() -> None:
    spoken = sentences("Hello there. How are you.", 2.0)
    assert len(spoken) == 2
    assert all(0.3 < len(s) / 24_000 < 3.0 and s.shape[1] == 1 for s in spoken)
