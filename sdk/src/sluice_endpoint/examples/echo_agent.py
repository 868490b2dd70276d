"""echo_agent: the loop a voice agent runs. It hears a participant (egress, 16 kHz mono),
recognises each utterance, and answers by speech into the call (ingest): "You said ...".
When the participant speaks while it talks, it stops at once: it `clear`s the audio
Sluice still has queued (barge-in, E2).

    python -m sluice_endpoint.examples.echo_agent --session SESSION --track mic

With `make run` going, publish your microphone on the demo page (http://127.0.0.1:8080/,
**Start**), start the agent with the session id and track name shown there, and hear
the agent's track on the same page (its session id is printed; track `agent`, **Pull**).
Each turn is one line, with the latency from the end of your speech to the answer's
first audio sent, and where it went:

    listening: speak, then pause
    heard 'one two three' -> 'You said one two three.' in 640 ms (end of speech certain
    after 600 ms, recognised and first audio sent 40 ms later)
    barge-in: cleared 7660 ms of 'You said ...' 0.30 s after the participant started speaking

The end of speech is certain only once the voice-activity detector has heard a pause:
its window (`--pause`, 0.3 s) after the last frame it counts as voice, and it counts a
word's quiet tail too. That is most of the latency, and the price of not answering in
the middle of a sentence; the way to the agent and back through Sluice adds 200-300 ms
(Sluice's tests/examples/test_sdk_examples.py measures all three).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sluice_endpoint.client import AsyncSluiceClient, EgressItem, IngestItem
from sluice_endpoint.egress import EgressStream
from sluice_endpoint.errors import SenderClosed
from sluice_endpoint.examples.cli import add_source, attached, first_of, parser, run, say
from sluice_endpoint.examples.espeak import VOICE, WORDS_PER_MINUTE, Speech
from sluice_endpoint.examples.speech import (
    DIGITS,
    Listener,
    Recogniser,
    SpeechStarted,
    Utterance,
    open_recogniser,
)
from sluice_endpoint.examples.stt import heard, stt_format
from sluice_endpoint.examples.tts import Spoken, native_rate, speak
from sluice_endpoint.formats import AudioFormat
from sluice_endpoint.ingest import IngestSender
from sluice_endpoint.server import Endpoint, url_of

FRAME_MS = 20  # every 20 ms counts towards the answer's latency

log = logging.getLogger("sluice_endpoint.examples.echo_agent")


LISTENING = "listening: speak, then pause"


def echo(text: str) -> str:
    return f"You said {text}."


@dataclass
class Turn:
    """One utterance heard and the answer to it; times are `time.monotonic()`.

    Attributes:
        heard: the transcript.
        speech_end_at: when the participant stopped speaking (as the audio arrived).
        certain_at: when the voice-activity detector was sure of it.
        answer: what the agent says.
        spoken: the answer as sent (its first audio's time, its length).
        pcm: the answer's audio as sent (s16le mono at `sample_rate`).
        cleared_at: when a barge-in sent the `clear` for this answer, if one did.
        cleared_ms: how much queued audio that dropped (Sluice's `droppedMs`).
        clear_acked_at: when Sluice's `cleared` answer came back.
        finished: the answer was heard to its end.
    """

    heard: str
    speech_end_at: float
    certain_at: float
    answer: str
    spoken: Spoken
    pcm: bytearray = field(default_factory=bytearray)
    sample_rate: int = 0
    cleared_at: float | None = None
    cleared_ms: int | None = None
    clear_acked_at: float | None = None
    finished: bool = False

    @property
    def latency_s(self) -> float | None:
        """End of speech → the answer's first audio sent."""
        first = self.spoken.first_audio_at
        return None if first is None else first - self.speech_end_at


class EchoAgent:
    """Both handlers of the agent: `hear` (egress route) and `talk` (ingest route).

    Args:
        make_recogniser: opens the recogniser (called in a thread).
        reply: the answer to a transcript.
        voice: espeak-ng's voice.
        words_per_minute: its rate.
        pause_s: the pause that ends an utterance.
        report: gets a line once it listens, then one per turn and per barge-in.
    """

    def __init__(
        self,
        make_recogniser: Callable[[], Recogniser],
        reply: Callable[[str], str] = echo,
        *,
        voice: str = VOICE,
        words_per_minute: int = WORDS_PER_MINUTE,
        pause_s: float = 0.3,
        report: Callable[[str], None] = lambda _: None,
    ) -> None:
        self.make_recogniser = make_recogniser
        self.reply = reply
        self.voice = voice
        self.words_per_minute = words_per_minute
        self.pause_s = pause_s
        self.report = report
        self.turns: list[Turn] = []
        self.sender: IngestSender | None = None
        self.connected = asyncio.Event()  # Sluice has dialled the ingest endpoint
        self.listener: Listener | None = None  # once Sluice has dialled the egress endpoint
        self._talking: Turn | None = None  # the answer being sent or played
        self._answering: asyncio.Task[None] | None = None

    async def talk(self, sender: IngestSender) -> None:
        """The ingest handler: keeps the connection the answers go out on."""
        self.sender = sender
        self.connected.set()
        await sender.wait_closed()

    async def hear(self, stream: EgressStream) -> None:
        """The egress handler: listens, answers, and stops talking when interrupted."""
        listener = Listener(await asyncio.to_thread(self.make_recogniser), self.pause_s)
        self.listener = listener
        self.report(LISTENING)
        try:
            async for event in heard(stream, listener):
                now = time.monotonic()
                if isinstance(event, SpeechStarted):
                    if self._talking is not None:
                        await self._barge_in(self._talking, now - (event.heard_s - event.start_s))
                elif event.text:
                    self._answer(event, now)
        finally:
            await self._stop_answering()

    def _answer(self, utterance: Utterance, now: float) -> None:
        answer = self.reply(utterance.text)
        turn = Turn(
            heard=utterance.text,
            speech_end_at=now - (utterance.heard_s - utterance.end_s),
            certain_at=now,
            answer=answer,
            spoken=Spoken(answer, now),
        )
        self.turns.append(turn)
        previous = self._answering
        self._answering = asyncio.create_task(self._say(turn, previous))
        self._answering.add_done_callback(_log_failure)

    async def _say(self, turn: Turn, previous: asyncio.Task[None] | None) -> None:
        if previous is not None:  # answers go out one after the other
            await asyncio.gather(previous, return_exceptions=True)
        sender = self.sender
        if sender is None or sender.closed:
            return
        self._talking = turn
        try:
            async with Speech(turn.answer, self.voice, self.words_per_minute) as speech:
                turn.sample_rate = speech.sample_rate
                await speak(sender, speech, turn.spoken, keep=turn.pcm)
            await sender.end()
            mark = await sender.mark(f"turn-{len(self.turns)}")
            self._report_turn(turn)
            reached = await mark.wait()
            turn.finished = not reached.cleared
        except SenderClosed:
            pass
        finally:
            if self._talking is turn:
                self._talking = None

    async def _barge_in(self, turn: Turn, speech_start_at: float) -> None:
        """The participant spoke while `turn` was being said: stop sending, then clear."""
        self._talking = None
        await self._stop_answering()
        sender = self.sender
        if sender is None or sender.closed:
            return
        turn.cleared_at = time.monotonic()
        try:
            turn.cleared_ms = await sender.clear()
        except (SenderClosed, TimeoutError):
            return
        turn.clear_acked_at = time.monotonic()
        late = turn.cleared_at - speech_start_at
        self.report(
            f"barge-in: cleared {turn.cleared_ms} ms of {turn.answer!r} "
            f"{late:.2f} s after the participant started speaking"
        )

    async def _stop_answering(self) -> None:
        task, self._answering = self._answering, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def _report_turn(self, turn: Turn) -> None:
        latency = turn.latency_s
        if latency is None:
            return
        certain = turn.certain_at - turn.speech_end_at
        self.report(
            f"heard {turn.heard!r} -> {turn.answer!r} in {latency * 1000:.0f} ms (end of speech "
            f"certain after {certain * 1000:.0f} ms, recognised and first audio sent "
            f"{(latency - certain) * 1000:.0f} ms later)"
        )


def _log_failure(task: asyncio.Task[None]) -> None:
    """An answer that failed (espeak-ng gone, say) is logged; the agent goes on listening."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("answering failed: %r", exc, exc_info=exc)


async def converse(
    agent: EchoAgent,
    api: AsyncSluiceClient,
    session_id: str,
    track_name: str,
    *,
    stop: asyncio.Event,
    agent_track: str = "agent",
    host: str = "127.0.0.1",
    port: int = 0,
    on_ready: Callable[[str], None] = lambda _: None,
) -> None:
    """Serves both endpoints, attaches them (ingest first: the agent must be able to answer
    before it hears anything), and runs until `stop` or the participant's track ends.

    `on_ready` gets the session id of the agent's track.
    """
    rate = await native_rate(agent.voice)
    endpoint = Endpoint()
    hear_format = stt_format(FRAME_MS)
    heard_all = asyncio.Event()

    async def hear(stream: EgressStream) -> None:
        try:
            await agent.hear(stream)
        finally:
            heard_all.set()

    endpoint.egress("/hear", hear_format)(hear)
    endpoint.ingest("/talk", AudioFormat("pcm", rate, 1))(agent.talk)
    async with endpoint.serve(host, port) as server:
        base = url_of(server)
        talk = IngestItem(agent_track, f"{base}/talk", "pcm", sample_rate=rate, channels=1)
        listen = EgressItem(
            session_id, track_name, f"{base}/hear", "pcm", sample_rate=hear_format.sample_rate,
            channels=1, frame_ms=FRAME_MS,
        )  # fmt: skip
        async with attached(api, talk) as talking:
            await asyncio.wait_for(agent.connected.wait(), 10)
            assert talking.session_id is not None
            on_ready(talking.session_id)
            async with attached(api, listen):
                await first_of(stop.wait(), heard_all.wait())


def main(argv: list[str] | None = None) -> int:
    options = parser("echo_agent", __doc__)
    add_source(options, "participant's audio")
    options.add_argument("--digits", action="store_true", help="recognise digits only")
    options.add_argument("--voice", default=VOICE, help="espeak-ng's voice")
    options.add_argument("--wpm", type=int, default=WORDS_PER_MINUTE, help="words per minute")
    options.add_argument("--pause", type=float, default=0.3, help="the pause that ends a turn (s)")
    args = options.parse_args(argv)
    words = DIGITS if args.digits else None

    def make_recogniser() -> Recogniser:
        return open_recogniser("pocketsphinx", None, words)

    async def go(stop: asyncio.Event) -> int:
        await asyncio.to_thread(make_recogniser)  # fail now if the engine cannot start
        agent = EchoAgent(
            make_recogniser, voice=args.voice, words_per_minute=args.wpm, pause_s=args.pause,
            report=lambda line: print(line, flush=True),
        )  # fmt: skip
        async with AsyncSluiceClient(args.api, args.secret) as api:
            await converse(
                agent, api, args.session, args.track, stop=stop, host=args.host, port=args.port,
                on_ready=lambda session: say(
                    f"echo_agent: listening to {args.track!r}; hear it on track 'agent' of "
                    f"session {session}"
                ),
            )  # fmt: skip
        return 0

    return run(options.prog, go)


if __name__ == "__main__":
    sys.exit(main())
