"""The SDK's runnable examples against a real stack, each started as its one command
(`python -m sluice_endpoint.examples.<name>`), and where times are measured in process too.

- tts + stt: digits spoken by espeak-ng into an ingest adapter, pulled through an egress
  adapter at 16 kHz mono, transcribed by PocketSphinx: the word error rate must be no
  worse than the same recogniser's on the original audio, plus a small margin.
- tts from stdin: every line heard, in order; then it ends and closes its adapter.
- echo_agent: answers what it heard, and stops talking when interrupted: its queued
  audio is gone from the track within 40 ms of its `clear`; the latency from the end of
  speech to the answer, printed.
- snapshots: JPEGs at the asked rate and width, saved under their times.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from sluice_endpoint import AsyncSluiceClient
from sluice_endpoint.examples.echo_agent import EchoAgent, converse
from sluice_endpoint.examples.snapshots import jpeg_size
from sluice_endpoint.examples.speech import DIGITS, SAMPLE_RATE, PocketSphinx, word_errors
from sluice_endpoint.examples.tts import serve_http
from tests.examples.speech import (
    LOUD,
    SpeakingTrack,
    espeak,
    example,
    example_env,
    first_loud_s,
    resample,
    started,
    transcribe,
)
from tests.integration.audio import RATE, Recording
from tests.integration.helpers import APP, SECRET, Stack
from tests.integration.video import ColourCycleTrack

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed"),
]
LINES = 6  # of six digits each: 36 words, about 15 s of speech
PAUSE_S = 0.5  # between lines: longer than the bridge's pause that ends an utterance
WER_MARGIN = 0.06  # through Sluice may cost two words of 36 more than the original audio
CLEAR_WITHIN_S = 0.040


def api_url(stack: Stack) -> str:
    return f"{stack.base_url}/v1/apps/{APP}"


class Command:
    """One example running as its own process, its stdout read line by line."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []

    async def line(self, pattern: str, timeout_s: float = 15.0) -> str:
        """The next stdout line matching `pattern` (earlier ones are kept in `lines`)."""
        assert self.process.stdout is not None
        async with asyncio.timeout(timeout_s):
            while raw := await self.process.stdout.readline():
                self.lines.append(raw.decode().rstrip("\n"))
                if re.search(pattern, self.lines[-1]):
                    return self.lines[-1]
        raise AssertionError(f"the example ended without printing {pattern!r}: {self.lines}")

    async def stop(self) -> tuple[int, str]:
        """Ctrl+C; returns the exit status and stderr (the rest of stdout into `lines`)."""
        if self.process.returncode is None:
            self.process.send_signal(2)
        out, err = await asyncio.wait_for(self.process.communicate(), 15)
        self.lines += out.decode().splitlines()
        return self.process.returncode or 0, err.decode()


@asynccontextmanager
async def command(stack: Stack, name: str, *args: str) -> AsyncIterator[Command]:
    process = await asyncio.create_subprocess_exec(
        *example(name), "--api", api_url(stack), "--secret", SECRET, *args,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=example_env(),
    )  # fmt: skip
    running = Command(process)
    try:
        yield running
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@asynccontextmanager
async def receiving_posts() -> AsyncIterator[tuple[str, list[str | None]]]:
    """A URL to POST to, and the bodies posted (any POST endpoint will do: tts's)."""
    posted: list[str | None] = []
    server = serve_http("127.0.0.1", 0, posted.append)
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/say", posted
    finally:
        await asyncio.to_thread(server.shutdown)
        server.server_close()


async def test_stt_transcribes_tts_digits_as_well_as_the_original_audio(stack: Stack) -> None:
    rng = random.Random(19)
    lines = [" ".join(rng.choice(DIGITS) for _ in range(6)) for _ in range(LINES)]
    async with (
        receiving_posts() as (post_url, posted),
        command(stack, "tts", "--json", "--http-port", "0") as tts,
    ):
        ready = json.loads(await tts.line('"ready"'))
        async with command(
            stack, "stt", "--session", ready["sessionId"], "--track", "tts", "--digits", "--json",
            "--post", post_url,
        ) as stt:  # fmt: skip
            assert stt.process.stderr is not None
            attached = await asyncio.wait_for(stt.process.stderr.readline(), 15)
            assert b"<- egress" in attached, attached
            stt_adapter = attached.split(b"<- egress ")[1].split()[0].decode()
            await asyncio.sleep(0.5)  # the bridge hears the track's silence already
            started_at = time.monotonic()
            async with httpx.AsyncClient() as http:
                for text in lines:  # one utterance each: the next after a pause
                    (await http.post(ready["http"], content=text)).raise_for_status()
                    await tts.line('"heard"', timeout_s=15)
                    await asyncio.sleep(PAUSE_S)
            spoken_s = time.monotonic() - started_at
            await asyncio.sleep(1.0)  # the last pause, to end the last utterance
            stt_status, stt_err = await stt.stop()
        tts_status, tts_err = await tts.stop()
    assert (stt_status, tts_status) == (0, 0), (stt_err, tts_err)
    transcripts = [json.loads(line) for line in stt.lines if line.startswith("{")]
    assert [json.loads(body or "") for body in posted] == transcripts  # printed and posted
    through = " ".join(t["text"] for t in transcripts)

    # The same recogniser on the original audio: espeak-ng's 22.05 kHz, resampled to 16 kHz.
    original = []
    for text in lines:
        mono, rate = await espeak(text)
        original += [
            resample(mono, rate, SAMPLE_RATE),
            np.zeros(int(PAUSE_S * SAMPLE_RATE), np.int16),
        ]
    utterances = await asyncio.to_thread(transcribe, PocketSphinx(DIGITS), np.concatenate(original))
    direct = " ".join(u.text for u in utterances)
    reference = " ".join(lines)
    words = len(reference.split())
    wer_direct = word_errors(reference, direct) / words
    wer_through = word_errors(reference, through) / words
    print(
        f"{words} digits in {len(lines)} lines, spoken and heard in {spoken_s:.1f} s\n"
        f"reference: {reference}\ndirect:    {direct}\nthrough:   {through}\n"
        f"WER direct {wer_direct:.3f}, through Sluice {wer_through:.3f} "
        f"({len(transcripts)} transcripts)"
    )
    assert len(transcripts) == len(utterances) == LINES  # one per line, both ways
    assert all(t["adapterId"] == stt_adapter for t in transcripts)
    assert wer_through <= wer_direct + WER_MARGIN


async def test_tts_speaks_stdin_lines_and_ends_once_all_were_heard(stack: Stack) -> None:
    lines = ["Three one four.", "One five nine two six."]
    process = await asyncio.create_subprocess_exec(
        *example("tts"), "--api", api_url(stack), "--secret", SECRET, "--json",
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=example_env(),
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(process.communicate("\n".join(lines).encode()), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, err.decode()
    events = [json.loads(line) for line in out.decode().splitlines()]
    ready = events[0]
    assert ready["event"] == "ready" and ready["sampleRate"] == 22_050, events  # espeak-ng's
    assert [e["text"] for e in events if e["event"] == "sent"] == lines
    assert [e["text"] for e in events if e["event"] == "heard"] == lines  # played, in order
    assert all(0.5 < e["seconds"] < 5 for e in events if e["event"] == "sent")
    async with AsyncSluiceClient(api_url(stack), SECRET) as api:  # it closed its adapter
        adapter = await api.get_adapter(ready["adapterId"])
    assert (adapter.state, adapter.close_reason) == ("closed", "api_close"), adapter
    assert adapter.counters["packets"] > 0


async def test_echo_agent_answers_and_stops_when_interrupted(stack: Stack) -> None:
    replies = [
        "You said {}. I will say it again, slowly: {}. And once more, to be sure: {}.",
        "You said {}.",
    ]

    def reply(text: str) -> str:
        return (replies.pop(0) if replies else "You said {}.").replace("{}", text)

    report: list[str] = []
    agent = EchoAgent(lambda: PocketSphinx(DIGITS), reply, report=report.append)
    participant = SpeakingTrack()
    sessions = stack.sessions()
    session_id, _ = await sessions.publish(participant, "mic")
    recording = Recording()
    stop = asyncio.Event()
    agent_session: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    async with AsyncSluiceClient(api_url(stack), SECRET) as api:
        running = asyncio.create_task(
            converse(agent, api, session_id, "mic", stop=stop, on_ready=agent_session.set_result)
        )
        try:
            listening = await sessions.pull(await agent_session, "agent", kind="audio")
            recorder = asyncio.create_task(recording.record(listening))
            await started(participant)
            await asyncio.wait_for(recording.first_frame.wait(), 10)
            await asyncio.wait_for(until(lambda: hearing(agent) >= 0.5), 15)  # silence, so far
            first, rate = await espeak("one two three")
            spoken = participant.say(first, rate)
            turn = await wait_for_audio(agent, 1)
            await asyncio.sleep(1.0)  # the answer plays; the participant talks over it
            second, _ = await espeak("four five six")
            participant.say(second, rate)
            answer = await wait_for_audio(agent, 2)
            await asyncio.wait_for(until(lambda: answer.finished), 15)
            spoke_at = await spoken
        finally:
            stop.set()
            await asyncio.wait_for(running, 10)
    recorder.cancel()
    await sessions.close()
    print("\n".join(report))

    assert [t.heard for t in agent.turns] == ["one two three", "four five six"]
    assert turn.cleared_at is not None and turn.clear_acked_at is not None, turn
    assert turn.cleared_ms is not None and turn.cleared_ms > 500, turn
    assert not turn.finished and answer.finished
    assert any(line.startswith("barge-in: cleared") for line in report)

    # The agent's track on the media timeline (immune to this receiver's jitter buffer):
    # where the first answer's first sample played, and where the clear cut it. By Sluice's
    # answer, it played all it was sent but the `droppedMs`; by the clock, what the time
    # between the answer's first audio and the clear allows. Nothing of the answer may
    # play beyond either by more than 40 ms.
    sent = np.frombuffer(bytes(turn.pcm), "<i2")
    times = recording.sample_times() / RATE
    left = np.abs(recording.stereo[:, 0].astype(np.int32))
    loud_times = times[left > LOUD]
    began = loud_times[0] - first_loud_s(sent, turn.sample_rate)
    assert turn.spoken.first_audio_at is not None
    cut_by_clock = began + (turn.cleared_at - turn.spoken.first_audio_at)
    cut_by_answer = began + len(sent) / turn.sample_rate - turn.cleared_ms / 1000
    # The second answer starts after the participant's 1.5 s of speech: well after this.
    last = float(loud_times[loud_times < cut_by_clock + 0.5].max())
    print(
        f"clear: acknowledged in {(turn.clear_acked_at - turn.cleared_at) * 1000:.1f} ms, "
        f"dropped {turn.cleared_ms} ms; the answer played to {cut_by_answer - began:.3f} s "
        f"by droppedMs, {cut_by_clock - began:.3f} s by the clock; its last loud sample at "
        f"{last - began:.3f} s ({(last - cut_by_clock) * 1000:+.0f} ms from the clear)"
    )
    assert last > began + 0.5  # it was talking
    assert last <= cut_by_answer + CLEAR_WITHIN_S  # the dropped audio never played
    assert cut_by_answer <= cut_by_clock + CLEAR_WITHIN_S  # and it stopped on time

    # Latency: the participant's last loud sample sent → the answer's first loud sample
    # here (its frame's arrival).
    first_loud = int(np.flatnonzero(left > LOUD)[0])
    frame_of = np.searchsorted(np.cumsum([len(c) for c in recording.chunks]), first_loud, "right")
    heard_at = recording.arrivals[frame_of]
    latency = heard_at - spoke_at
    to_agent = turn.speech_end_at - spoke_at
    in_agent = turn.latency_s or 0.0
    pause = turn.certain_at - turn.speech_end_at
    back = heard_at - turn.spoken.first_audio_at
    print(
        f"answer latency: {latency * 1000:.0f} ms from the end of speech sent to the first "
        f"answer audio heard: {to_agent * 1000:.0f} ms to the agent, {in_agent * 1000:.0f} ms "
        f"in it ({pause * 1000:.0f} ms until the pause was certain), {back * 1000:.0f} ms back"
    )
    assert 0 < latency < 3.0


def hearing(agent: EchoAgent) -> float:
    """Seconds of the participant's audio the agent has heard."""
    return agent.listener.position_s if agent.listener is not None else 0.0


async def test_echo_agent_command_answers_what_it_heard(stack: Stack) -> None:
    participant = SpeakingTrack()
    sessions = stack.sessions()
    session_id, _ = await sessions.publish(participant, "mic")
    try:
        async with command(
            stack, "echo_agent", "--session", session_id, "--track", "mic", "--digits"
        ) as agent:
            await agent.line("^listening", timeout_s=20)  # Sluice dialled its egress endpoint
            await started(participant)
            await asyncio.sleep(0.5)
            mono, rate = await espeak("two seven one")
            participant.say(mono, rate)
            line = await agent.line("^heard ")
            status, err = await agent.stop()
    finally:
        await sessions.close()
    assert status == 0, err
    turn = re.fullmatch(r"heard '([a-z ]+)' -> 'You said \1\.' in \d+ ms \(.*\)", line)
    assert turn is not None, line
    assert word_errors("two seven one", turn.group(1)) <= 1, line  # the recogniser's, mostly
    assert "hear it on track 'agent' of session" in err


async def wait_for_audio(agent: EchoAgent, turns: int) -> Any:
    """The agent's turn `turns` once its answer's first audio has gone out."""
    await asyncio.wait_for(
        until(
            lambda: (
                len(agent.turns) >= turns
                and agent.turns[turns - 1].spoken.first_audio_at is not None
            )
        ),
        15,
    )
    return agent.turns[turns - 1]


async def until(predicate: Any) -> None:
    while not predicate():  # noqa: ASYNC110 (the agent's tasks change it)
        await asyncio.sleep(0.01)


async def test_snapshots_saves_jpegs_at_the_asked_rate_and_width(
    stack: Stack, tmp_path: Path
) -> None:
    sessions = stack.sessions()
    session_id, _ = await sessions.publish(ColourCycleTrack(640, 480), "cam")
    out = tmp_path / "snapshots"
    try:
        async with command(
            stack, "snapshots", "--session", session_id, "--track", "cam", "--fps", "4",
            "--max-width", "320", "--count", "6", "--out", str(out),
        ) as sink:  # fmt: skip
            status = await asyncio.wait_for(sink.process.wait(), 20)  # it stops after 6
            _, err = await sink.stop()
    finally:
        await sessions.close()
    assert status == 0, err
    files = sorted(out.glob("*.jpg"))
    print("\n".join(sink.lines))
    assert len(files) == 6 and len(sink.lines) == 6
    assert all(jpeg_size(f.read_bytes()) == (320, 240) for f in files)
    assert all("320x240" in line for line in sink.lines)
    # <UTC arrival>_<seconds into the track>.jpg, a quarter of a second apart.
    names = [re.fullmatch(r"\d{8}T\d{6}\.\d{3}Z_(\d+\.\d{3})s\.jpg", f.name) for f in files]
    media = [float(m.group(1)) for m in names if m is not None]
    assert len(media) == 6 and media[0] == 0.0
    steps = np.diff(media)  # the source's frame times: 4 a second, on average
    assert all(steps > 0) and abs(media[-1] / len(steps) - 0.25) < 0.06, steps


@pytest.mark.parametrize("name", ["stt", "tts", "echo_agent", "snapshots"])
def test_help(name: str) -> None:
    done = subprocess.run(
        [*example(name), "--help"], capture_output=True, text=True, env=example_env(), check=False
    )
    assert done.returncode == 0, done.stderr
    assert f"python -m sluice_endpoint.examples.{name}" in done.stdout
