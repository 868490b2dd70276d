"""Offline speech recognition for the examples: utterances cut by voice activity.

A `Listener` takes 16 kHz mono s16le as it arrives, finds where speech starts and ends
(pocketsphinx's voice-activity endpointer) and has a `Recogniser` transcribe each
utterance. `PocketSphinx` needs nothing but the `examples` extra: its en-us model is
inside the pocketsphinx wheel. `Vosk` and `FasterWhisper` take a model folder you bring;
nothing here downloads a model.

Recognising takes CPU: call `Listener.feed` in a thread (`asyncio.to_thread`), one call
at a time.
"""

from __future__ import annotations

import array
import json
import math
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

SAMPLE_RATE = 16_000  # what the recognisers take: 16 kHz mono s16le
BYTES_PER_SECOND = 2 * SAMPLE_RATE
VOICE_FRACTION = 0.1  # of an utterance's loudest peak: quieter frames are not its voice
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


class SpeechError(Exception):
    """A speech engine is missing or could not start."""


def _pocketsphinx() -> Any:
    try:
        import pocketsphinx
    except ImportError:
        raise SpeechError(
            "pocketsphinx is not installed: pip install 'sluice-endpoint[examples]'"
        ) from None
    return pocketsphinx


class Recogniser(Protocol):
    """Transcribes one utterance at a time: `start`, `accept`..., `finish`."""

    def start(self) -> None: ...

    def accept(self, pcm: bytes) -> None: ...

    def finish(self) -> str: ...


def unigram_arpa(words: Sequence[str]) -> str:
    """A language model (ARPA text) in which each of `words` is equally likely, in any
    order: recognition restricted to a small vocabulary, such as digits."""
    log_p = math.log10(1 / (len(words) + 1))
    lines = ["\\data\\", f"ngram 1={len(words) + 2}", "", "\\1-grams:", "-99 <s>"]
    lines += [f"{log_p:.4f} </s>", *(f"{log_p:.4f} {word}" for word in words), "", "\\end\\"]
    return "\n".join(lines) + "\n"


def pronunciations(model_path: Path, words: Sequence[str]) -> list[str]:
    """The lines of the en-us dictionary for `words` (alternatives included).

    Raises:
        SpeechError: a word the dictionary does not have.
    """
    wanted, found, seen = set(words), [], set()
    with (model_path / "en-us" / "cmudict-en-us.dict").open() as dictionary:
        for line in dictionary:
            word = line.split(" ", 1)[0].split("(", 1)[0]
            if word in wanted:
                found.append(line)
                seen.add(word)
    if missing := wanted - seen:
        raise SpeechError(f"not in PocketSphinx's dictionary: {', '.join(sorted(missing))}")
    return found


class PocketSphinx:
    """CMU PocketSphinx with the en-us model its wheel ships (offline, ~0.5 s to load).

    Args:
        words: restrict recognition to these words (each must be in the model's
            dictionary), e.g. `DIGITS`; the default is the model's large vocabulary.

    Raises:
        SpeechError: pocketsphinx is not installed, or rejects the vocabulary.
    """

    def __init__(self, words: Sequence[str] | None = None) -> None:
        pocketsphinx = _pocketsphinx()
        options: dict[str, Any] = {"samprate": SAMPLE_RATE, "loglevel": "FATAL"}
        with tempfile.TemporaryDirectory() as folder:
            if words:
                vocabulary = sorted({w.lower() for w in words})
                # The words' own entries: with the whole dictionary (134 000 words) beside
                # a small language model, the decoder takes tens of seconds to start.
                found = pronunciations(Path(pocketsphinx.get_model_path()), vocabulary)
                options["dict"] = str(Path(folder) / "words.dict")
                options["lm"] = str(Path(folder) / "words.arpa")
                Path(options["dict"]).write_text("".join(found))
                Path(options["lm"]).write_text(unigram_arpa(vocabulary))
            try:
                self._decoder = pocketsphinx.Decoder(**options)
            except RuntimeError as exc:
                raise SpeechError(f"pocketsphinx did not start: {exc}") from None

    def start(self) -> None:
        self._decoder.start_utt()

    def accept(self, pcm: bytes) -> None:
        self._decoder.process_raw(pcm, False, False)

    def finish(self) -> str:
        self._decoder.end_utt()
        hypothesis = self._decoder.hyp()
        return str(hypothesis.hypstr) if hypothesis is not None else ""


def _model_dir(model: Path | None, engine: str) -> Path:
    if model is None or not model.is_dir():
        raise SpeechError(f"{engine} needs a model folder on this machine (--model DIR): {model}")
    return model


class Vosk:
    """Vosk (Kaldi) with a model folder you downloaded yourself (`pip install vosk`)."""

    def __init__(self, model: Path | None) -> None:
        try:
            import vosk
        except ImportError:
            raise SpeechError("vosk is not installed: pip install vosk") from None
        self._vosk = vosk
        self._model = vosk.Model(model_path=str(_model_dir(model, "vosk")))
        self._recogniser: Any = None

    def start(self) -> None:
        self._recogniser = self._vosk.KaldiRecognizer(self._model, SAMPLE_RATE)

    def accept(self, pcm: bytes) -> None:
        self._recogniser.AcceptWaveform(pcm)

    def finish(self) -> str:
        return str(json.loads(self._recogniser.FinalResult()).get("text", ""))


class FasterWhisper:
    """faster-whisper with a converted model folder you bring (`pip install
    faster-whisper`); it transcribes each utterance whole once it has ended."""

    def __init__(self, model: Path | None) -> None:
        try:
            import faster_whisper
            import numpy
        except ImportError:
            raise SpeechError(
                "faster-whisper is not installed: pip install faster-whisper"
            ) from None
        self._numpy = numpy
        folder = str(_model_dir(model, "faster-whisper"))
        self._model = faster_whisper.WhisperModel(folder, device="cpu", compute_type="int8")
        self._pcm = bytearray()

    def start(self) -> None:
        self._pcm.clear()

    def accept(self, pcm: bytes) -> None:
        self._pcm += pcm

    def finish(self) -> str:
        audio = self._numpy.frombuffer(bytes(self._pcm), "<i2").astype("float32") / 32768
        segments, _ = self._model.transcribe(audio, language="en", beam_size=1)
        return " ".join(segment.text.strip() for segment in segments).strip()


ENGINES = ("pocketsphinx", "vosk", "faster-whisper")


def open_recogniser(
    engine: str = "pocketsphinx", model: Path | None = None, words: Sequence[str] | None = None
) -> Recogniser:
    """The recogniser `engine` (one of `ENGINES`).

    Raises:
        SpeechError: an unknown engine, a missing package or model folder.
    """
    if engine == "pocketsphinx":
        return PocketSphinx(words)
    if engine == "vosk":
        return Vosk(model)
    if engine == "faster-whisper":
        return FasterWhisper(model)
    raise SpeechError(f"unknown engine {engine!r}: one of {', '.join(ENGINES)}")


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """The voice-activity detector heard speech begin.

    Attributes:
        start_s: where the speech began, in seconds of audio fed.
        heard_s: how much audio had been fed when it was sure (start_s + its window).
    """

    start_s: float
    heard_s: float


@dataclass(frozen=True, slots=True)
class Utterance:
    """One stretch of speech and what the recogniser made of it.

    Attributes:
        text: the transcript (empty if nothing was recognised).
        start_s: where the speech began, in seconds of audio fed.
        end_s: where the voice ended: the end of its last frame at least a tenth as loud
            as its loudest (the detector's own end lags by up to its window).
        heard_s: how much audio had been fed when the end was certain.
    """

    text: str
    start_s: float
    end_s: float
    heard_s: float


class Listener:
    """Cuts 16 kHz mono s16le into utterances and transcribes each one.

    Args:
        recogniser: what transcribes an utterance.
        window_s: the voice-activity decision window: the end of speech is certain this
            long after it (0.3 s: a short pause inside a sentence does not cut it).
    """

    def __init__(self, recogniser: Recogniser, window_s: float = 0.3) -> None:
        pocketsphinx = _pocketsphinx()
        self._endpointer = pocketsphinx.Endpointer(window=window_s, sample_rate=SAMPLE_RATE)
        self._frame_bytes = int(self._endpointer.frame_bytes)
        self._recogniser = recogniser
        self._pending = bytearray()
        self._fed = 0  # bytes fed
        self._start_s = 0.0
        self._voice = VoiceEnd()

    @property
    def position_s(self) -> float:
        """Seconds of audio fed so far."""
        return self._fed / BYTES_PER_SECOND

    @property
    def in_speech(self) -> bool:
        return bool(self._endpointer.in_speech)

    def feed(self, pcm: bytes) -> list[SpeechStarted | Utterance]:
        """Takes the next audio; returns what it completed, in order."""
        self._pending += pcm
        events: list[SpeechStarted | Utterance] = []
        size = self._frame_bytes
        while len(self._pending) >= size:
            frame = bytes(self._pending[:size])
            del self._pending[:size]
            self._fed += size
            was_speech = self._endpointer.in_speech
            speech = self._endpointer.process(frame)
            if speech is None:
                continue
            if not was_speech:
                self._start_s = float(self._endpointer.speech_start)
                self._voice.start(self._start_s)
                self._recogniser.start()
                events.append(SpeechStarted(self._start_s, self.position_s))
            self._voice.add(speech)
            self._recogniser.accept(speech)
            if not self._endpointer.in_speech:
                text = self._recogniser.finish()
                events.append(Utterance(text, self._start_s, self._voice.end_s, self.position_s))
        return events

    def flush(self) -> list[Utterance]:
        """The end of the audio: the utterance still going on, if any."""
        if not self._endpointer.in_speech:
            return []
        tail = bytes(self._pending[: self._frame_bytes])
        self._fed += len(self._pending)
        self._pending.clear()
        speech = self._endpointer.end_stream(tail)
        if speech:
            self._voice.add(speech)
            self._recogniser.accept(speech)
        text = self._recogniser.finish()
        return [Utterance(text, self._start_s, self._voice.end_s, self.position_s)]


class VoiceEnd:
    """Where the voice in an utterance ends: the end of its last stretch at least
    `VOICE_FRACTION` as loud (peak) as the loudest so far. The detector hands over an
    utterance's audio in order, from its start.
    """

    def __init__(self) -> None:
        self.start(0.0)

    def start(self, start_s: float) -> None:
        self._at_s = start_s  # the end of the audio added so far
        self._loudest = 0
        self.end_s = start_s

    def add(self, speech: bytes) -> None:
        samples = array.array("h", speech[: len(speech) - len(speech) % 2])
        if sys.byteorder == "big":
            samples.byteswap()  # the audio is s16le
        peak = max(max(samples, default=0), -min(samples, default=0))
        self._at_s += len(speech) / BYTES_PER_SECOND
        self._loudest = max(self._loudest, peak)
        if peak and peak >= VOICE_FRACTION * self._loudest:
            self.end_s = self._at_s


def word_errors(reference: str, hypothesis: str) -> int:
    """Words substituted, deleted or inserted to turn `reference` into `hypothesis`
    (the numerator of the word error rate; its denominator is the reference's words)."""
    ref, hyp = reference.split(), hypothesis.split()
    row = list(range(len(hyp) + 1))
    for i, word in enumerate(ref, 1):
        previous, row[0] = row[0], i
        for j, heard in enumerate(hyp, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (word != heard))
    return row[-1]
