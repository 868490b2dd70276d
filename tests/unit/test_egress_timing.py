"""Each egress format's wire clock and Packet pace: what a resumed stream counts with."""

from __future__ import annotations

import pytest

from sluice.state.records import AdapterRecord, Direction
from worker.pipelines import pipeline_class
from worker.pipelines.egress import EgressPipeline
from worker.pipelines.egress_jpeg import snapshot_interval_s
from worker.protocol.resume import resume_point


def record(codec: str, **options: object) -> AdapterRecord:
    return AdapterRecord(
        adapter_id="a",
        app_id="app",
        direction=Direction.EGRESS,
        session_id="s",
        track_name="t",
        endpoint="ws://h/",
        codec=codec,
        options=dict(options),
    )


@pytest.mark.parametrize(
    ("egress", "clock_rate", "interval_ms", "pipeline"),
    [
        (record("pcm"), 48_000, 20.0, "AudioEgressPipeline"),  # a record from before
        (record("pcm", sampleRate=16000, channels=1, frameMs=100), 16_000, 100.0, None),
        (record("mulaw"), 8000, 20.0, "AudioEgressPipeline"),
        (record("mulaw", sampleRate=24000, frameMs=40), 24_000, 40.0, None),
        (record("opus"), 48_000, 10.0, "OpusEgressPipeline"),
        (record("jpeg", fps=0.5), 90_000, 1000.0, "JpegEgressPipeline"),
    ],
)
def test_timing_follows_the_format(
    egress: AdapterRecord, clock_rate: int, interval_ms: float, pipeline: str | None
) -> None:
    cls = pipeline_class(egress)
    assert issubclass(cls, EgressPipeline)
    if pipeline is not None:
        assert cls.__name__ == pipeline
    assert cls.timing(egress) == (clock_rate, interval_ms)


def test_a_resumed_16k_stream_moves_on_in_16k_samples() -> None:
    egress = record("pcm", sampleRate=16000, channels=1, frameMs=100)
    cls = pipeline_class(egress)
    assert issubclass(cls, EgressPipeline)
    clock_rate, interval_ms = cls.timing(egress)
    point = resume_point(
        saved_next_sequence=10,
        saved_timestamp=14_400,
        elapsed_ms=2000,
        clock_rate=clock_rate,
        packet_interval_ms=interval_ms,
    )
    assert point.first_timestamp == 14_400 + 32_000  # 2 s at 16 kHz
    assert point.first_sequence == 10 + 20 + 1  # 100 ms Packets in 2 s, and one more
    assert (point.saved_next_sequence, point.saved_timestamp) == (10, 14_400)


def test_the_snapshot_interval_follows_fps() -> None:
    assert snapshot_interval_s(record("jpeg")) == 1.0  # records made before options existed
    assert snapshot_interval_s(record("jpeg", fps=0.2)) == pytest.approx(5.0)
    assert snapshot_interval_s(record("jpeg", fps=5)) == pytest.approx(0.2)
