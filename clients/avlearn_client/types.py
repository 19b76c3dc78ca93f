"""Typed results of the avlearn client (plain dataclasses + numpy; no protobuf in the public API)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from avlearn_proto import service_pb2, types_pb2
from avlearn_proto.records import Hit, Timings

JOB_STATES = {
    types_pb2.JOB_STATE_UNSPECIFIED: "unspecified",
    types_pb2.JOB_STATE_QUEUED: "queued",
    types_pb2.JOB_STATE_RUNNING: "running",
    types_pb2.JOB_STATE_SUCCEEDED: "succeeded",
    types_pb2.JOB_STATE_FAILED: "failed",
    types_pb2.JOB_STATE_CANCELLED: "cancelled",
}
FINAL_JOB_STATES = frozenset({"succeeded", "failed", "cancelled"})


class AvlearnError(Exception):
    """Any failed call: ``code`` is the gRPC status name (e.g. "INVALID_ARGUMENT"), ``message`` the server's detail."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


@dataclass(frozen=True)
class SearchResult:
    hits: list[Hit]
    bundle_id: str
    timings: Timings
    cached: bool

    @classmethod
    def from_proto(cls, msg) -> SearchResult:
        return cls([Hit.from_proto(h) for h in msg.hits], msg.bundle_id, Timings.from_proto(msg.timings), bool(msg.cached))


@dataclass(frozen=True)
class Job:
    """A batch-embed job record."""

    job_id: str
    state: str
    archive_path: str
    output_path: str
    progress: float
    files_done: int
    files_total: int
    segments: int
    error: str
    created_unix: float
    updated_unix: float
    summary: dict = field(default_factory=dict)
    cancel_requested: bool = False
    attempts: int = 0

    @property
    def done(self) -> bool:
        return self.state in FINAL_JOB_STATES

    @classmethod
    def from_proto(cls, msg: types_pb2.Job) -> Job:
        return cls(
            job_id=msg.job_id,
            state=JOB_STATES.get(msg.state, "unspecified"),
            archive_path=msg.archive_path,
            output_path=msg.output_path,
            progress=float(msg.progress),
            files_done=int(msg.files_done),
            files_total=int(msg.files_total),
            segments=int(msg.segments),
            error=msg.error,
            created_unix=float(msg.created_unix),
            updated_unix=float(msg.updated_unix),
            summary=json.loads(msg.summary_json) if msg.summary_json else {},
            cancel_requested=bool(msg.cancel_requested),
            attempts=int(msg.attempts),
        )


@dataclass(frozen=True)
class IndexInfo:
    bundle_id: str
    bundle_path: str
    checkpoint_hash: str
    counts: dict[str, int]
    dims: dict[str, int]
    factories: dict[str, str]
    manifest: dict
    loaded_unix: float
    embedding_dim: int
    image_size_px: tuple[int, int]
    sample_rate_hz: int
    segment_sec: float
    has_localizer: bool
    reloads: int

    @classmethod
    def from_proto(cls, msg: service_pb2.GetIndexInfoResponse) -> IndexInfo:
        return cls(
            bundle_id=msg.bundle_id,
            bundle_path=msg.bundle_path,
            checkpoint_hash=msg.checkpoint_hash,
            counts=dict(msg.counts),
            dims=dict(msg.dims),
            factories=dict(msg.factories),
            manifest=json.loads(msg.manifest_json) if msg.manifest_json else {},
            loaded_unix=float(msg.loaded_unix),
            embedding_dim=int(msg.embedding_dim),
            image_size_px=(int(msg.image_height_px), int(msg.image_width_px)),
            sample_rate_hz=int(msg.sample_rate_hz),
            segment_sec=float(msg.segment_sec),
            has_localizer=bool(msg.has_localizer),
            reloads=int(msg.reloads),
        )
