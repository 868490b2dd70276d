"""stt: a speech-to-text bridge. Sluice sends a call's audio as 16 kHz mono (E1); an
offline recogniser transcribes each utterance; transcripts are printed, or posted.

    python -m sluice_endpoint.examples.stt --session SESSION --track mic
    python -m sluice_endpoint.examples.stt --session S --track mic --digits --json
    python -m sluice_endpoint.examples.stt ... --post http://127.0.0.1:9999/transcripts

With `make run` going, publish your microphone on the demo page (http://127.0.0.1:8080/,
**Start**) and pass the session id and track name it shows. The bridge serves an egress
endpoint, has Sluice dial it, and prints one line per utterance:

    [   3.12 s -    4.60 s] three one four one five

The recogniser is PocketSphinx with the en-us model its wheel ships (`pip install
'sluice-endpoint[examples]'`): nothing is downloaded. `--digits` restricts it to the ten
digits; `--engine vosk --model DIR` or `--engine faster-whisper --model DIR` use a model
you downloaded yourself.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx

from sluice_endpoint.client import AsyncSluiceClient, EgressItem
from sluice_endpoint.egress import EgressStream
from sluice_endpoint.examples.cli import add_source, attached, first_of, parser, run, say
from sluice_endpoint.examples.speech import (
    DIGITS,
    ENGINES,
    SAMPLE_RATE,
    Listener,
    Recogniser,
    SpeechStarted,
    Utterance,
    open_recogniser,
)
from sluice_endpoint.formats import AudioFormat
from sluice_endpoint.items import AudioFrame, Gap
from sluice_endpoint.server import Endpoint, url_of

FRAME_MS = 100  # transcripts wait for the end of speech anyway: fewer, larger messages
GAP_SILENCE_S = 1.0  # enough silence in a gap's place to end the utterance it cut


def stt_format(frame_ms: int = FRAME_MS) -> AudioFormat:
    return AudioFormat("pcm", SAMPLE_RATE, 1, frame_ms=frame_ms)


async def heard(
    stream: EgressStream, listener: Listener
) -> AsyncIterator[SpeechStarted | Utterance]:
    """What `listener` makes of the stream's audio (16 kHz mono pcm), as it happens.

    Audio lost on the way (a `Gap`) is heard as silence.
    """
    async for item in stream:
        if isinstance(item, AudioFrame):
            pcm = item.pcm16()
        elif isinstance(item, Gap):
            pcm = item.silence(stream.audio_format, max_s=GAP_SILENCE_S)
        else:
            continue
        for event in await asyncio.to_thread(listener.feed, pcm):
            yield event
    for utterance in await asyncio.to_thread(listener.flush):
        yield utterance


Transcript = Callable[[EgressStream, Utterance], Awaitable[None]]


class Bridge:
    """The egress handler: one recogniser per stream, each transcript to `on_transcript`.

    Args:
        make_recogniser: opens a recogniser (in a thread: models take a while to load).
        on_transcript: gets every utterance with words in it.
    """

    def __init__(self, make_recogniser: Callable[[], Recogniser], on_transcript: Transcript):
        self.make_recogniser = make_recogniser
        self.on_transcript = on_transcript

    async def __call__(self, stream: EgressStream) -> None:
        listener = Listener(await asyncio.to_thread(self.make_recogniser))
        async for event in heard(stream, listener):
            if isinstance(event, Utterance) and event.text:
                await self.on_transcript(stream, event)


def transcript_json(stream: EgressStream, utterance: Utterance) -> dict[str, object]:
    return {
        "adapterId": stream.adapter_id,
        "text": utterance.text,
        "startS": round(utterance.start_s, 3),
        "endS": round(utterance.end_s, 3),
    }


def printer(as_json: bool) -> Transcript:
    async def show(stream: EgressStream, utterance: Utterance) -> None:
        if as_json:
            print(json.dumps(transcript_json(stream, utterance)), flush=True)
        else:
            span = f"{utterance.start_s:8.2f} s - {utterance.end_s:8.2f} s"
            print(f"[{span}] {utterance.text}", flush=True)

    return show


def poster(client: httpx.AsyncClient, url: str, then: Transcript) -> Transcript:
    """Posts each transcript as JSON to `url` (a failed post is reported, not fatal)."""

    async def post(stream: EgressStream, utterance: Utterance) -> None:
        await then(stream, utterance)
        try:
            answer = await client.post(url, json=transcript_json(stream, utterance))
            answer.raise_for_status()
        except httpx.HTTPError as exc:
            say(f"stt: posting to {url} failed: {exc!r}")

    return post


async def bridge(
    api: AsyncSluiceClient,
    session_id: str,
    track_name: str,
    on_transcript: Transcript,
    make_recogniser: Callable[[], Recogniser],
    *,
    stop: asyncio.Event,
    host: str = "127.0.0.1",
    port: int = 0,
) -> None:
    """Serves the bridge, attaches it to the track, and runs until `stop` or the track ends."""
    endpoint = Endpoint()
    fmt = stt_format()
    handler = Bridge(make_recogniser, on_transcript)
    done = asyncio.Event()

    @endpoint.egress("/stt", fmt)
    async def transcribe(stream: EgressStream) -> None:
        try:
            await handler(stream)
        finally:
            done.set()

    async with endpoint.serve(host, port) as server:
        url = f"{url_of(server)}/stt"
        item = EgressItem(
            session_id, track_name, url, "pcm", sample_rate=fmt.sample_rate, channels=1,
            frame_ms=fmt.frame_ms, events=True,  # events: the stream learns its adapter id
        )  # fmt: skip
        async with attached(api, item) as adapter:
            say(f"stt: {url} <- egress {adapter.adapter_id} ({track_name}, 16 kHz mono)")
            await first_of(stop.wait(), done.wait())


def main(argv: list[str] | None = None) -> int:
    options = parser("stt", __doc__)
    add_source(options, "audio")
    options.add_argument("--digits", action="store_true", help="recognise digits only")
    options.add_argument("--engine", choices=ENGINES, default="pocketsphinx")
    options.add_argument("--model", type=Path, help="the model folder (vosk, faster-whisper)")
    options.add_argument("--json", action="store_true", help="one JSON object per transcript")
    options.add_argument("--post", metavar="URL", help="also POST each transcript as JSON")
    args = options.parse_args(argv)
    words = DIGITS if args.digits else None

    def make_recogniser() -> Recogniser:
        return open_recogniser(args.engine, args.model, words)

    async def go(stop: asyncio.Event) -> int:
        await asyncio.to_thread(make_recogniser)  # fail now if the engine cannot start
        async with (
            AsyncSluiceClient(args.api, args.secret) as api,
            httpx.AsyncClient(timeout=10) as http,
        ):
            show = printer(args.json)
            sink = poster(http, args.post, show) if args.post else show
            await bridge(
                api, args.session, args.track, sink, make_recogniser,
                stop=stop, host=args.host, port=args.port,
            )  # fmt: skip
        return 0

    return run(options.prog, go)


if __name__ == "__main__":
    sys.exit(main())
