"""Gap tracking and one stream across connections, without sockets (bytes in, items out)."""

from __future__ import annotations

import asyncio
import json

from sluice_endpoint.egress import EgressStream
from sluice_endpoint.formats import AudioFormat, VideoFormat
from sluice_endpoint.gaps import GapTracker
from sluice_endpoint.items import AudioFrame, Gap, JpegFrame, Start, Stop, StreamItem
from sluice_endpoint.packet import encode_packet
from sluice_endpoint.stream import EgressStreamState

FRAME = bytes(3840)  # 20 ms of 48 kHz stereo s16le: 960 timestamp units


def pcm(sequence_number: int, timestamp: int | None = None) -> bytes:
    stamp = sequence_number * 960 if timestamp is None else timestamp
    return encode_packet(sequence_number % 2**32, stamp % 2**32, FRAME)


def event(**fields: object) -> str:
    return json.dumps(fields)


def test_contiguous_packets_have_no_gap() -> None:
    tracker = GapTracker(48_000)
    for n in range(100):
        seen = tracker.observe(n, n * 960, 960)
        assert (seen.repeat, seen.gap) == (False, None)


def test_missing_packets_are_a_gap_of_their_duration() -> None:
    tracker = GapTracker(48_000)
    tracker.observe(0, 0, 960)
    tracker.observe(1, 960, 960)
    gap = tracker.observe(5, 5 * 960, 960).gap
    assert gap == Gap(2 * 960, 5 * 960, 3, 48_000)
    assert gap.duration_s == 0.06
    assert tracker.observe(6, 6 * 960, 960).gap is None


def test_a_pause_in_the_source_is_a_gap_without_missing_packets() -> None:
    tracker = GapTracker(48_000)
    tracker.observe(0, 0, 960)
    gap = tracker.observe(1, 960 + 48_000, 960).gap
    assert gap is not None
    assert (gap.missing_packets, gap.missing, gap.duration_s) == (0, 48_000, 1.0)


def test_repeats_are_dropped_and_counted() -> None:
    tracker = GapTracker(48_000)
    for n in range(3):
        tracker.observe(n, n * 960, 960)
    assert tracker.observe(2, 2 * 960, 960).repeat
    assert tracker.observe(1, 960, 960).repeat
    assert tracker.observe(3, 3 * 960, 960) == tracker.observe(4, 4 * 960, 960)  # no gap
    assert tracker.repeats == 2


def test_numbers_wrap_around_uint32() -> None:
    tracker = GapTracker(48_000)
    top = 2**32 - 1
    tracker.observe(top - 1, top - 960 * 1, 960)
    assert tracker.observe(top, (top - 960 + 960) % 2**32, 960).gap is None
    assert tracker.observe(0, (top + 960) % 2**32, 960).gap is None
    gap = tracker.observe(3, (top + 4 * 960) % 2**32, 960).gap
    assert gap is not None and gap.missing_packets == 2 and gap.missing == 2 * 960


def test_a_gap_sluice_reported_is_not_reported_twice() -> None:
    state = EgressStreamState()
    state.connect()
    state.receive(1, pcm(0))
    told = state.receive(
        1, event(event="gap", droppedFrames=3, fromTimestamp=960, toTimestamp=3840)
    )
    assert told == [Gap(960, 3840, 3, 48_000, reported_by="sluice")]
    items = state.receive(1, pcm(4))
    assert [type(i) for i in items] == [AudioFrame]


def test_one_stream_across_a_reconnect_with_a_repeat_and_a_loss() -> None:
    state = EgressStreamState()
    first = state.connect()
    got = [i for n in range(10) for i in state.receive(first, pcm(n))]
    assert state.disconnect(first, 1006) is None  # lost: Sluice will re-dial
    second = state.connect()
    assert not state.starts_new_stream(pcm(9))
    got += state.receive(second, pcm(9))  # re-sent after the reconnect: a repeat
    got += state.receive(second, pcm(12))  # two lost from an overflowing backlog
    frames = [i for i in got if isinstance(i, AudioFrame)]
    gaps = [i for i in got if isinstance(i, Gap)]
    assert [f.sequence_number for f in frames] == [*range(10), 12]
    assert [f.connection for f in frames] == [1] * 10 + [2]
    assert gaps == [Gap(10 * 960, 12 * 960, 2, 48_000)]
    assert state.repeats == 1
    assert state.end is None


def test_a_close_of_a_replaced_connection_changes_nothing() -> None:
    state = EgressStreamState()
    first = state.connect()
    second = state.connect()  # the endpoint saw the new connection before the old one's close
    assert state.disconnect(first, 1000) is None
    assert state.current == second
    end = state.disconnect(second, 1000, "track ended")
    assert end is not None and (end.reason, end.code, end.complete) == ("track ended", 1000, True)


def test_a_stop_event_ends_the_stream_with_its_reason() -> None:
    state = EgressStreamState()
    conn = state.connect()
    assert state.receive(conn, event(event="stop", reason="api_close")) == [Stop("api_close")]
    end = state.disconnect(conn, 1000)
    assert end is not None and end.reason == "api_close"
    assert state.receive(conn, pcm(0)) == []


def test_a_new_adapter_on_the_same_url_starts_a_new_stream() -> None:
    state = EgressStreamState()
    conn = state.connect()
    for n in range(5):
        state.receive(conn, pcm(n))
    state.disconnect(conn, 1006)
    assert state.starts_new_stream(pcm(0))
    assert not state.starts_new_stream(pcm(5))


def test_start_sets_format_and_adapter_and_a_start_of_another_adapter_is_new() -> None:
    start = {
        "event": "start",
        "adapterId": "a1",
        "sessionId": "s",
        "trackName": "mic",
        "connection": 1,
        "format": {"codec": "pcm", "sampleRate": 16000, "channels": 1, "frameMs": 20},
        "sequenceNumber": 0,
        "timestamp": 0,
    }
    state = EgressStreamState()
    conn = state.connect()
    (item,) = state.receive(conn, json.dumps(start))
    assert isinstance(item, Start) and item.format == AudioFormat("pcm", 16_000, 1, 20)
    assert state.adapter_id == "a1"
    frame_16k = encode_packet(0, 0, bytes(640))
    (frame,) = state.receive(conn, frame_16k)
    assert isinstance(frame, AudioFrame) and frame.samples == 320
    assert state.receive(conn, encode_packet(1, 320, bytes(640)))[0] == AudioFrame(
        1, 320, bytes(640), state.format, 1
    )
    assert state.starts_new_stream(json.dumps({**start, "adapterId": "a2", "connection": 1}))
    assert not state.starts_new_stream(json.dumps({**start, "connection": 2}))


def test_raw_framing_counts_numbers_itself() -> None:
    state = EgressStreamState(AudioFormat("mulaw", 8000, 1, 20, framing="raw"))
    conn = state.connect()
    frames = [i for _ in range(3) for i in state.receive(conn, b"\xff" * 160)]
    assert [(f.sequence_number, f.timestamp) for f in frames] == [(0, 0), (1, 160), (2, 320)]
    assert isinstance(frames[0], AudioFrame) and frames[0].pcm16() == bytes(320)
    state.receive(conn, event(event="gap", droppedFrames=2, fromTimestamp=480, toTimestamp=800))
    (after,) = state.receive(conn, b"\xff" * 160)
    assert (after.sequence_number, after.timestamp) == (5, 800)


def test_jpeg_frames_pass_through() -> None:
    state = EgressStreamState(VideoFormat())
    conn = state.connect()
    jpeg = b"\xff\xd8 picture \xff\xd9"
    items = state.receive(conn, encode_packet(0, 0, jpeg)) + state.receive(
        conn, encode_packet(0, 90_000, jpeg)
    )
    assert items == [JpegFrame(0, 0, jpeg, 1), JpegFrame(0, 90_000, jpeg, 1)]


def test_garbage_and_unknown_text_are_skipped_and_counted() -> None:
    state = EgressStreamState()
    conn = state.connect()
    assert state.receive(conn, b"\x0c") == []
    assert state.receive(conn, "hello") == []
    assert state.receive(conn, event(event="something-new")) == []
    assert state.receive(conn, event(event="gap", fromTimestamp="x", toTimestamp=1)) == []
    assert state.skipped == 4


def test_gap_silence_fills_the_missing_time() -> None:
    gap = Gap(0, 960, 1, 48_000)
    assert gap.silence(AudioFormat()) == bytes(3840)
    assert Gap(0, 160, 1, 8000).silence(AudioFormat("mulaw", 8000, 1)) == b"\xff" * 160
    assert len(Gap(0, 48_000 * 60, 0, 48_000).silence(AudioFormat(), max_s=1)) == 192_000


class MemorySocket:
    """A `MessageSocket` fed by the test."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[bytes | str | None] = asyncio.Queue()
        self.closed_with: int | None = None

    async def recv(self) -> bytes | str | None:
        return await self.inbox.get()

    async def send(self, message: bytes | str) -> None:
        raise AssertionError("an egress reader sends nothing")

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed_with = code
        self.inbox.put_nowait(None)

    @property
    def close_code(self) -> int | None:
        return self.closed_with

    @property
    def close_reason(self) -> str:
        return ""


async def test_close_from_another_task_ends_the_iteration_and_the_connection() -> None:
    stream, socket = EgressStream(max_queued=2), MemorySocket()
    pump = asyncio.create_task(stream.attach(socket))
    for n in range(5):  # more than the queue holds: the pump waits for the reader
        socket.inbox.put_nowait(pcm(n))
    got: list[StreamItem] = []

    async def read() -> None:
        async for item in stream:
            got.append(item)

    reader = asyncio.create_task(read())
    await asyncio.sleep(0.05)
    assert len(got) == 5 and not reader.done()  # all read: waiting for more
    await stream.close()
    await asyncio.wait_for(reader, 1)  # the waiting reader's iteration ended
    await asyncio.wait_for(pump, 1)
    assert socket.closed_with == 1000
    assert stream.end is not None and stream.end.reason == "closed by the endpoint"
