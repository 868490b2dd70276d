"""tts_barge_in: a text-to-speech sender that the caller interrupts, as a voice agent is.

It serves an ingest endpoint, asks Sluice to dial it (by default the API of `make run`),
and speaks a reply of three sentences at once as 24 kHz mono PCM (`"sampleRate": 24000,
"channels": 1`), each followed by a `mark`. Sluice plays it out in real time on the track
`agent` and sends each mark back once its sentence has been heard. After `--interrupt`
seconds the caller "starts talking": the sender sends `clear`, Sluice drops what was not
played yet, sends the marks that will never be heard (`"cleared": true`) and `cleared`
with how much it dropped. The sender then says a short answer and waits for its mark.
Every message of the conversation is printed with its time:

      0.000 s  -> 3 sentences, 6.00 s of 24 kHz mono PCM, a mark after each
      2.013 s  <- {"event":"mark","name":"sentence-1","cleared":false}
      3.000 s  -> {"event":"clear"}
      3.001 s  <- {"event":"mark","name":"sentence-2","cleared":true}
      ...

    python -m examples.tts_barge_in
    python -m examples.tts_barge_in --say "Let me tell you about our plans." --interrupt 1.5

`--say` speaks with espeak-ng (apt-get install espeak-ng); otherwise each sentence is a
short melody of speech-like syllables.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from examples.audio import RATE as SLUICE_RATE
from examples.audio import Audio, float_to_pcm, pcm_to_float, resample, tone
from examples.endpoint import DEFAULT_API, encode
from examples.speak import SpeakError, espeak

RATE = 24_000  # what text-to-speech services commonly produce: 24 kHz mono s16le
CHUNK_BYTES = 16_384


@dataclass
class Conversation:
    """What was said and answered, with times in seconds from the first audio sent."""

    lines: list[tuple[float, str, str]] = field(default_factory=list)  # (t, "->"/"<-", text)
    answers: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    adapter_id: str = ""
    session_id: str = ""


def syllables(pitch_hz: float, seconds: float) -> Audio:
    """A speech-like sentence: tones gliding around `pitch_hz`, four syllables a second."""
    count = max(1, round(seconds * 4))
    parts = [tone(pitch_hz * (1 + 0.12 * ((i * 7) % 5 - 2) / 2), 0.25, RATE) for i in range(count)]
    return np.concatenate(parts)


def sentences(text: str | None, seconds: float) -> list[Audio]:
    """Three sentences: `text` by espeak-ng, split at its full stops, or three melodies.

    Raises:
        SpeakError: `text` was given and espeak-ng is missing or failed.
    """
    if text is None:
        return [syllables(pitch, seconds) for pitch in (220.0, 260.0, 200.0)]
    parts = [part.strip() for part in text.split(".") if part.strip()] or [text]
    return [resample(pcm_to_float(espeak(part))[:, :1], SLUICE_RATE, RATE) for part in parts]


def pcm_messages(audio: Audio) -> list[bytes]:
    pcm = float_to_pcm(audio)
    return [encode(0, 0, pcm[i : i + CHUNK_BYTES]) for i in range(0, len(pcm), CHUNK_BYTES)]


async def converse(
    api: str,
    secret: str,
    said: list[Audio],
    answer: Audio,
    *,
    interrupt_s: float,
    wait_s: float = 0.0,
    host: str = "127.0.0.1",
    port: int = 0,
    show: Callable[[str], None] = print,
) -> Conversation:
    """Runs one interrupted reply against Sluice's API at `api` (`.../v1/apps/{appId}`).

    `wait_s` after the adapter is active, the reply starts (time for a listener to
    subscribe; the track's first moments also play in a burst while its WebRTC connection
    to the SFU completes); `interrupt_s` after that, the caller interrupts it.

    Raises:
        httpx.HTTPError, TimeoutError, RuntimeError: Sluice could not be reached, did not
            dial, or did not answer in time.
    """
    talk = Conversation()
    connected: asyncio.Future[ServerConnection] = asyncio.get_running_loop().create_future()
    done = asyncio.Event()
    start = time.monotonic()

    def note(direction: str, text: str) -> None:
        talk.lines.append((time.monotonic() - start, direction, text))
        show(f"{talk.lines[-1][0]:8.3f} s  {direction} {text}")

    async def handle(ws: ServerConnection) -> None:
        if not connected.done():
            connected.set_result(ws)
        try:
            async for message in ws:  # Sluice's answers: text only
                note("<-", str(message))
                talk.answers.append((time.monotonic() - start, json.loads(message)))
                if talk.answers[-1][1].get("name") == "answer":
                    done.set()
        except ConnectionClosed:
            pass

    async with serve(handle, host, port) as server:
        url = f"ws://{host}:{server.sockets[0].getsockname()[1]}/tts"
        item: dict[str, Any] = {"location": "local", "trackName": "agent", "endpoint": url}
        item |= {"inputCodec": "pcm", "sampleRate": RATE, "channels": 1}
        auth = {"Authorization": f"Bearer {secret}"}
        async with httpx.AsyncClient(base_url=api, headers=auth, timeout=10) as client:
            created = (await client.post("/adapters/websocket/new", json={"tracks": [item]})).json()
            track = created["tracks"][0]
            if "adapterId" not in track:
                raise RuntimeError(f"Sluice refused the adapter: {track}")
            talk.adapter_id, talk.session_id = track["adapterId"], track["sessionId"]
            show(f"adapter {talk.adapter_id}: track 'agent' of session {talk.session_id}")
            try:
                ws = await asyncio.wait_for(connected, 10)
                await asyncio.sleep(wait_s)
                start = time.monotonic()
                for number, sentence in enumerate(said, 1):
                    for message in pcm_messages(sentence):
                        await ws.send(message)
                    await ws.send(json.dumps({"event": "mark", "name": f"sentence-{number}"}))
                total = sum(len(sentence) for sentence in said) / RATE
                note(
                    "->",
                    f"{len(said)} sentences, {total:.2f} s of 24 kHz mono PCM, a mark after each",
                )
                await asyncio.sleep(max(0.0, start + interrupt_s - time.monotonic()))
                note("->", '{"event":"clear"}  (the caller started talking)')
                await ws.send(json.dumps({"event": "clear"}))
                for message in pcm_messages(answer):
                    await ws.send(message)
                await ws.send(json.dumps({"event": "mark", "name": "answer"}))
                note("->", f"the answer, {len(answer) / RATE:.2f} s, then a mark")
                await asyncio.wait_for(done.wait(), len(answer) / RATE + 5)
            finally:
                await client.post(
                    "/adapters/websocket/close", json={"tracks": [{"adapterId": talk.adapter_id}]}
                )
    return talk


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m examples.tts_barge_in",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--api", default=DEFAULT_API, help="Sluice's API, up to the app")
    parser.add_argument("--secret", default="demo", help="the app's secret")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: any)")
    parser.add_argument("--say", metavar="TEXT", help="speak TEXT with espeak-ng")
    parser.add_argument("--seconds", type=float, default=2.0, help="length of each melody")
    parser.add_argument("--interrupt", type=float, default=3.0, help="seconds before clear")
    parser.add_argument("--wait", type=float, default=1.0, help="seconds before speaking")
    args = parser.parse_args(argv)
    try:
        said = sentences(args.say, args.seconds)
        answer = sentences("Sorry, go on." if args.say else None, 1.0)[0]
        asyncio.run(
            converse(
                args.api,
                args.secret,
                said,
                answer,
                interrupt_s=args.interrupt,
                wait_s=args.wait,
                port=args.port,
            )
        )
    except (SpeakError, OSError, httpx.HTTPError, TimeoutError, RuntimeError) as exc:
        print(f"tts_barge_in: {exc!r}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
