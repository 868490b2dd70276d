"""Media pipelines, one module per direction, behind the interface in `base`."""

from __future__ import annotations

from sluice.state.records import AdapterRecord, Direction
from worker.pipelines.base import Pipeline, PipelineContext


def pipeline_class(record: AdapterRecord) -> type[Pipeline]:
    """The pipeline for the adapter's direction and codec (imported on first use)."""
    if record.direction is Direction.INGEST:
        from worker.pipelines.ingest import IngestPipeline

        return IngestPipeline
    if record.codec == "jpeg":
        from worker.pipelines.egress_jpeg import JpegEgressPipeline

        return JpegEgressPipeline
    if record.codec == "opus":
        from worker.pipelines.egress_opus import OpusEgressPipeline

        return OpusEgressPipeline
    from worker.pipelines.egress_audio import AudioEgressPipeline

    return AudioEgressPipeline


def make_pipeline(ctx: PipelineContext) -> Pipeline:
    return pipeline_class(ctx.record)(ctx)
