"""Media pipelines, one module per direction, behind the interface in `base`."""

from __future__ import annotations

from sluice.state import Direction
from worker.pipelines.base import Pipeline, PipelineContext


def make_pipeline(ctx: PipelineContext) -> Pipeline:
    """The pipeline for the adapter's direction."""
    if ctx.record.direction is Direction.INGEST:
        from worker.pipelines.ingest import IngestPipeline

        return IngestPipeline(ctx)
    if ctx.record.codec == "jpeg":
        from worker.pipelines.egress_jpeg import JpegEgressPipeline

        return JpegEgressPipeline(ctx)
    from worker.pipelines.egress_audio import AudioEgressPipeline

    return AudioEgressPipeline(ctx)
