"""The SDK examples' own logic, without a stack: word errors, the vocabulary model, WAV
and JPEG headers, utterance cutting, the text intake over HTTP, the snapshot sink and its
model hook."""

from __future__ import annotations

import asyncio
import re
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest

from sluice_endpoint.egress import EgressStream
from sluice_endpoint.examples.espeak import Speech, SynthesisError, parse_wav_header
from sluice_endpoint.examples.snapshots import Sink, Snapshot, describe, jpeg_size
from sluice_endpoint.examples.speech import (
    DIGITS,
    SAMPLE_RATE,
    Listener,
    PocketSphinx,
    SpeechError,
    SpeechStarted,
    Utterance,
    open_recogniser,
    unigram_arpa,
    word_errors,
)
from sluice_endpoint.examples.tts import serve_http
from sluice_endpoint.formats import VideoFormat
from sluice_endpoint.packet import encode_packet
from tests.sdk.test_stream import MemorySocket

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="no espeak-ng")


@pytest.mark.parametrize(
    ("reference", "hypothesis", "errors"),
    [
        ("one two three", "one two three", 0),
        ("one two three", "one three", 1),  # a deletion
        ("one two three", "one two two three", 1),  # an insertion
        ("one two three", "one five three", 1),  # a substitution
        ("one two three", "", 3),
        ("", "one", 1),
        ("a b c d", "b c d e", 2),  # not 4: the alignment is the cheapest
    ],
)
def test_word_errors(reference: str, hypothesis: str, errors: int) -> None:
    assert word_errors(reference, hypothesis) == errors


def test_the_vocabulary_model_makes_every_word_equally_likely() -> None:
    arpa = unigram_arpa(["one", "two"])
    assert "ngram 1=4" in arpa and arpa.rstrip().endswith("\\end\\")
    rows = [line.split() for line in arpa.splitlines() if line.endswith(("one", "two", "</s>"))]
    assert {row[0] for row in rows} == {"-0.4771"}  # log10(1/3)


def test_pocketsphinx_refuses_words_it_cannot_pronounce() -> None:
    with pytest.raises(SpeechError, match="xyzzyq"):
        PocketSphinx(["one", "xyzzyq"])


def test_engines_that_need_a_model_say_so_instead_of_downloading_one(tmp_path: Path) -> None:
    with pytest.raises(SpeechError, match="unknown engine"):
        open_recogniser("nope")
    for engine in ("vosk", "faster-whisper"):  # neither installed here, or no model
        with pytest.raises(SpeechError, match=r"not installed|model folder"):
            open_recogniser(engine, tmp_path / "missing")


def espeak_header(rate: int = 22_050, extra: bytes = b"") -> bytes:
    fmt = (1).to_bytes(2, "little") + (1).to_bytes(2, "little") + rate.to_bytes(4, "little")
    fmt += (2 * rate).to_bytes(4, "little") + (2).to_bytes(2, "little") + (16).to_bytes(2, "little")
    body = b"fmt " + len(fmt).to_bytes(4, "little") + fmt + extra
    return b"RIFF" + b"\xff\xff\xff\x7f" + b"WAVE" + body + b"data" + b"\xff\xff\xff\x7f"


def test_wav_headers_of_a_stream() -> None:
    header = parse_wav_header(espeak_header() + b"\x01\x00")
    assert (header.sample_rate, header.channels, header.size) == (22_050, 1, 44)
    listed = parse_wav_header(espeak_header(16_000, b"LIST" + (4).to_bytes(4, "little") + b"INFO"))
    assert (listed.sample_rate, listed.size) == (16_000, 56)
    with pytest.raises(SynthesisError):
        parse_wav_header(b"ID3" + bytes(60))


APP0 = b"\xff\xe0" + (16).to_bytes(2, "big") + b"JFIF\x00" + bytes(9)


def jpeg_headers(width: int, height: int) -> bytes:
    """A JPEG's markers up to its size (start of frame), with no picture in it."""
    sof = b"\xff\xc0" + (17).to_bytes(2, "big") + b"\x08" + height.to_bytes(2, "big")
    sof += width.to_bytes(2, "big") + b"\x03" + bytes(9)
    return b"\xff\xd8" + APP0 + sof + b"\xff\xd9"


def test_jpeg_size_reads_the_start_of_frame() -> None:
    assert jpeg_size(jpeg_headers(320, 240)) == (320, 240)
    assert jpeg_size(b"\xff\xd8" + APP0 + b"\xff\xd9") is None
    assert jpeg_size(b"\xff\xd8garbage") is None


async def spoken(text: str) -> np.ndarray:
    import soxr

    async with Speech(text) as speech:
        pcm = b"".join([chunk async for chunk in speech.chunks()])
        mono = np.frombuffer(pcm, "<i2")
        return np.asarray(soxr.resample(mono, speech.sample_rate, SAMPLE_RATE), np.int16)


def voice_end_s(mono: np.ndarray) -> float:
    loud = np.abs(mono.astype(np.int32))
    return float((np.flatnonzero(loud >= loud.max() / 10)[-1] + 1) / SAMPLE_RATE)


@needs_espeak
async def test_the_listener_cuts_utterances_at_pauses_and_recognises_them() -> None:
    first, second = await spoken("three one four"), await spoken("nine three two")
    pause = np.zeros(SAMPLE_RATE // 2, np.int16)  # 0.5 s: longer than the 0.3 s window
    audio = np.concatenate([pause, first, pause, second, pause]).tobytes()
    listener = Listener(PocketSphinx(DIGITS))
    events = [e for i in range(0, len(audio), 640) for e in listener.feed(audio[i : i + 640])]
    events += listener.flush()
    kinds = [type(e) for e in events]
    assert kinds == [SpeechStarted, Utterance, SpeechStarted, Utterance], events
    utterances = [e for e in events if isinstance(e, Utterance)]
    assert [u.text for u in utterances] == ["three one four", "nine three two"]
    # Where the voice ends (its last sample a tenth as loud as its loudest), not where the
    # detector decided it had: that lags by up to its 0.3 s window.
    ends = [0.5 + voice_end_s(first), 1.0 + len(first) / SAMPLE_RATE + voice_end_s(second)]
    assert utterances[0].start_s < 0.7
    for utterance, end in zip(utterances, ends, strict=True):
        assert abs(utterance.end_s - end) < 0.05, (utterance, end)
        assert utterance.heard_s - utterance.end_s > 0.25  # the end is certain only later
    assert listener.position_s == pytest.approx(len(audio) / 2 / SAMPLE_RATE, abs=0.03)


@needs_espeak
async def test_speech_streams_espeak_ng_in_whole_samples() -> None:
    async with Speech("Hello there. This is a longer sentence, in parts.") as speech:
        assert (speech.sample_rate, speech.channels) == (22_050, 1)
        chunks = [chunk async for chunk in speech.chunks()]
    assert len(chunks) > 3 and all(len(c) % 2 == 0 for c in chunks)
    assert 2.0 < sum(map(len, chunks)) / 2 / 22_050 < 6.0


async def test_text_comes_in_over_http() -> None:
    got: list[str | None] = []
    arrived = threading.Event()

    def accept(text: str | None) -> None:
        got.append(text)
        arrived.set()

    server = serve_http("127.0.0.1", 0, accept)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        async with httpx.AsyncClient(base_url=url) as http:
            assert (await http.post("/say", content="Hello there.")).status_code == 202
            assert (await http.post("/other", content="x")).status_code == 404
            assert (await http.post("/say", content="")).status_code == 400
            assert (await http.get("/say")).status_code == 501
    finally:
        await asyncio.to_thread(server.shutdown)
    assert arrived.is_set() and got == ["Hello there."]


async def test_the_snapshot_sink_saves_under_times_and_asks_the_model(tmp_path: Path) -> None:
    jpeg = jpeg_headers(160, 90)
    seen: list[Snapshot] = []

    def model(snapshot: Snapshot) -> str:  # in a thread, with the file already saved
        assert snapshot.path.read_bytes() == snapshot.jpeg
        seen.append(snapshot)
        return f"{len(seen)} seen"

    reports: list[tuple[Path, str | None]] = []
    sink = Sink(tmp_path / "out", look=model, report=lambda s, a: reports.append((s.path, a)))
    stream, socket = EgressStream(VideoFormat(fps=2)), MemorySocket()
    pump = asyncio.create_task(stream.attach(socket))
    start = (1 << 32) - 45_000  # the RTP clock wraps between the two pictures
    for n, timestamp in enumerate([start, (start + 45_000) % (1 << 32)]):
        socket.inbox.put_nowait(encode_packet(n, timestamp, jpeg))
    running = asyncio.create_task(sink(stream))
    await asyncio.wait_for(until(lambda: len(reports) == 2), 5)
    await stream.close()
    await asyncio.wait_for(asyncio.gather(running, pump), 5)

    assert [s.media_s for s in seen] == [0.0, 0.5]
    assert [a for _, a in reports] == ["1 seen", "2 seen"]
    assert describe(seen[0]) == f"160x90, {len(jpeg) / 1000:.1f} KB"
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert [p.name for p, _ in reports] == names
    assert re.fullmatch(r"\d{8}T\d{6}\.\d{3}Z_00000\.500s\.jpg", names[1]), names


async def until(predicate: Callable[[], bool]) -> None:
    while not predicate():  # noqa: ASYNC110 (the sink's task changes it)
        await asyncio.sleep(0.01)
