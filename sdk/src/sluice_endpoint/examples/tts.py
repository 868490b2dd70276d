"""tts: a text-to-speech sender. Text comes in as lines on stdin or over HTTP; espeak-ng
speaks it into an ingest adapter, each chunk sent as soon as it is synthesised.

    python -m sluice_endpoint.examples.tts                    # type a line, hear it
    echo "Hello from Sluice." | python -m sluice_endpoint.examples.tts
    python -m sluice_endpoint.examples.tts --http-port 9001   # and:
    curl -d 'Three one four one five.' http://127.0.0.1:9001/say

The adapter is created at espeak-ng's own rate (22.05 kHz mono; Sluice resamples, E1),
so nothing is converted here. The new track's session id is printed: hear it on the
demo page of `make run` (http://127.0.0.1:8080/: that session id, track `tts`, **Pull**).
After each line has been heard on the track (a mark, E2), a line says so. With input
from a pipe or file, the example ends once every line has been heard; with
`--http-port` it runs until Ctrl+C.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from sluice_endpoint.client import AsyncSluiceClient, IngestItem
from sluice_endpoint.errors import SenderClosed
from sluice_endpoint.examples.cli import attached, first_of, parser, run
from sluice_endpoint.examples.espeak import VOICE, WORDS_PER_MINUTE, Speech
from sluice_endpoint.formats import AudioFormat
from sluice_endpoint.ingest import IngestSender, Mark
from sluice_endpoint.server import Endpoint, url_of

MAX_TEXT_BYTES = 16_384


@dataclass
class Spoken:
    """One line, sent: when it came, when its first audio went out, how much audio."""

    text: str
    received_at: float
    first_audio_at: float | None = None
    seconds: float = 0.0


async def speak(
    sender: IngestSender,
    speech: Speech,
    spoken: Spoken | None = None,
    keep: bytearray | None = None,
) -> float:
    """Sends `speech` (started) chunk by chunk as espeak-ng makes it; returns its seconds.

    `spoken` gets the time of the first audio sent and the length; `keep` the audio.
    """
    seconds = 0.0
    async for pcm in speech.chunks():
        await sender.send(pcm, sample_rate=speech.sample_rate, channels=speech.channels)
        if keep is not None:
            keep += pcm
        seconds += len(pcm) / (2 * speech.channels * speech.sample_rate)
        if spoken is not None and spoken.first_audio_at is None:
            spoken.first_audio_at = time.monotonic()
    if spoken is not None:
        spoken.seconds = seconds
    return seconds


async def native_rate(voice: str) -> int:
    """The sample rate espeak-ng speaks `voice` at (22050 for its own voices)."""
    async with Speech("a", voice) as speech:
        return speech.sample_rate


class Talker:
    """The ingest handler: speaks each line of `texts`, one after the other.

    Args:
        voice: espeak-ng's voice.
        words_per_minute: its rate.
        report: gets a line for each text sent and each text heard.
    """

    def __init__(
        self,
        voice: str = VOICE,
        words_per_minute: int = WORDS_PER_MINUTE,
        report: Callable[[dict[str, object]], None] = lambda _: None,
    ) -> None:
        self.voice = voice
        self.words_per_minute = words_per_minute
        self.report = report
        self.texts: asyncio.Queue[str] = asyncio.Queue()
        self.spoken: list[Spoken] = []
        self.heard = 0  # lines whose mark came back: played on the track
        self.changed = asyncio.Condition()

    def say(self, text: str) -> None:
        if text.strip():
            self.texts.put_nowait(text.strip())

    async def __call__(self, sender: IngestSender) -> None:
        marks: set[asyncio.Task[None]] = set()  # one per line sent and not heard yet
        try:
            await first_of(sender.wait_closed(), self._speak_lines(sender, marks))
        finally:
            for task in marks:
                task.cancel()
            await asyncio.gather(*marks, return_exceptions=True)

    async def _speak_lines(self, sender: IngestSender, marks: set[asyncio.Task[None]]) -> None:
        with contextlib.suppress(SenderClosed):
            while True:
                spoken = Spoken(await self.texts.get(), time.monotonic())
                self.spoken.append(spoken)
                async with Speech(spoken.text, self.voice, self.words_per_minute) as speech:
                    await speak(sender, speech, spoken)
                await sender.end()
                mark = await sender.mark(f"line-{len(self.spoken)}")
                self.report(self._sent(spoken))
                task = asyncio.create_task(self._wait_heard(spoken, mark))
                marks.add(task)
                task.add_done_callback(marks.discard)

    def _sent(self, spoken: Spoken) -> dict[str, object]:
        first = spoken.first_audio_at or spoken.received_at
        return {
            "event": "sent",
            "text": spoken.text,
            "seconds": round(spoken.seconds, 3),
            "firstAudioMs": round((first - spoken.received_at) * 1000, 1),
        }

    async def _wait_heard(self, spoken: Spoken, mark: Mark) -> None:
        try:
            await mark.wait()
        except SenderClosed:
            return  # the adapter closed before the line was heard
        async with self.changed:
            self.heard += 1
            self.changed.notify_all()
        self.report({"event": "heard", "text": spoken.text})

    async def wait_heard(self, count: int) -> None:
        """Until `count` lines have been heard on the track."""
        async with self.changed:
            await self.changed.wait_for(lambda: self.heard >= count)


def serve_http(host: str, port: int, accept: Callable[[str | None], None]) -> ThreadingHTTPServer:
    """`POST /say` with the text as its body, in a thread of its own; `accept` is called
    there (make it thread-safe). Returns the running server (`shutdown()` stops it)."""

    class Say(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if self.path != "/say" or not 0 < length <= MAX_TEXT_BYTES:
                self.send_error(404 if self.path != "/say" else 400, "POST /say with text")
                return
            accept(self.rfile.read(length).decode(errors="replace"))
            self.send_response(202)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass  # the example prints what it does itself

    server = ThreadingHTTPServer((host, port), Say)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def read_stdin(accept: Callable[[str | None], None]) -> None:
    """Hands each line of stdin to `accept`, then None at its end (a daemon thread, so a
    terminal waiting for a line does not keep the program alive)."""

    def pump() -> None:
        for line in sys.stdin:
            accept(line)
        accept(None)

    threading.Thread(target=pump, daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    options = parser("tts", __doc__)
    options.add_argument("--track", default="tts", help="the new track's name")
    options.add_argument("--voice", default=VOICE, help="espeak-ng's voice")
    options.add_argument("--wpm", type=int, default=WORDS_PER_MINUTE, help="words per minute")
    options.add_argument("--http-port", type=int, help="also take text from POST /say here")
    options.add_argument("--json", action="store_true", help="report as JSON lines")
    args = options.parse_args(argv)

    def report(event: dict[str, object]) -> None:
        if args.json:
            print(json.dumps(event), flush=True)
        elif event["event"] == "sent":
            print(f"sent  {event['text']!r}: {event['seconds']} s", flush=True)
        elif event["event"] == "heard":
            print(f"heard {event['text']!r}", flush=True)
        else:  # ready
            where = f", or curl -d 'Hello.' {event['http']}" if "http" in event else ""
            print(
                f"tts: speaking on track {event['trackName']!r} of session {event['sessionId']}"
                f" (adapter {event['adapterId']}); type a line{where}",
                flush=True,
            )

    async def go(stop: asyncio.Event) -> int:
        talker = Talker(args.voice, args.wpm, report)
        rate = await native_rate(args.voice)
        loop = asyncio.get_running_loop()
        eof = asyncio.Event()

        def take(line: str | None) -> None:  # in a thread: stdin's, or HTTP's
            if line is None:
                loop.call_soon_threadsafe(eof.set)
            else:
                loop.call_soon_threadsafe(talker.say, line)

        endpoint = Endpoint()
        endpoint.ingest("/tts", AudioFormat("pcm", rate, 1))(talker)
        http = None
        async with endpoint.serve(args.host, args.port) as server:
            url = f"{url_of(server)}/tts"
            item = IngestItem(args.track, url, "pcm", sample_rate=rate, channels=1)
            async with (
                AsyncSluiceClient(args.api, args.secret) as api,
                attached(api, item) as adapter,
            ):
                ready: dict[str, object] = {
                    "event": "ready", "sessionId": adapter.session_id,
                    "trackName": args.track, "adapterId": adapter.adapter_id, "sampleRate": rate,
                }  # fmt: skip
                if args.http_port is not None:
                    http = serve_http(args.host, args.http_port, take)
                    ready["http"] = f"http://{args.host}:{http.server_address[1]}/say"
                report(ready)
                read_stdin(take)
                try:
                    if http is None:  # stdin alone: done once all of it has been heard
                        await first_of(stop.wait(), heard_to_the_end(talker, eof))
                    else:
                        await stop.wait()
                finally:
                    if http is not None:
                        await asyncio.to_thread(http.shutdown)
        return 0

    return run(options.prog, go)


async def heard_to_the_end(talker: Talker, eof: asyncio.Event) -> None:
    await eof.wait()  # the lines before it are queued: they were handed over in order
    await talker.wait_heard(len(talker.spoken) + talker.texts.qsize())


if __name__ == "__main__":
    sys.exit(main())
