"""Protobuf messages ⇄ the engine's types: query inputs, hits, timings, heatmap matrices, jobs."""

from __future__ import annotations

import json

import numpy as np

from avlearn_proto import types_pb2
from avlearn_proto.records import Timings
from services import job_store
from services.errors import InvalidQuery
from services.query_media import MediaQuery
from services.query_types import AUDIO, IMAGE

STATE_TO_PROTO = {
    job_store.QUEUED: types_pb2.JOB_STATE_QUEUED,
    job_store.RUNNING: types_pb2.JOB_STATE_RUNNING,
    job_store.SUCCEEDED: types_pb2.JOB_STATE_SUCCEEDED,
    job_store.FAILED: types_pb2.JOB_STATE_FAILED,
    job_store.CANCELLED: types_pb2.JOB_STATE_CANCELLED,
}
MODALITY = {types_pb2.MODALITY_AUDIO: AUDIO, types_pb2.MODALITY_IMAGE: IMAGE}


def to_query(msg: types_pb2.MediaInput, what: str) -> MediaQuery:
    """A MediaInput message → MediaQuery (INVALID_ARGUMENT when nothing is set)."""
    which = msg.WhichOneof("source")
    if which is None:
        raise InvalidQuery(f"no {what} given: set data, video, segment_id or vector")
    if which == "data":
        return MediaQuery(data=bytes(msg.data))
    if which == "video":
        return MediaQuery(video=bytes(msg.video.data), time_sec=float(msg.video.time_sec))
    if which == "segment_id":
        return MediaQuery(segment_id=int(msg.segment_id))
    return MediaQuery(vector=np.asarray(msg.vector.values, np.float32))


def hits_to_proto(hits: list) -> list[types_pb2.Hit]:
    return [h.to_proto() for h in hits]


def timings_to_proto(t: Timings) -> types_pb2.Timings:
    return t.to_proto()


def matrix_to_proto(a: np.ndarray) -> types_pb2.FloatMatrix:
    """(H, W) → FloatMatrix, its values parsed from their packed wire form (a memcpy, where a
    Python list of 65k floats costs ~1.5 ms of the event loop)."""
    a = np.ascontiguousarray(a, "<f4")
    raw = a.tobytes()
    m = types_pb2.FloatMatrix(height=int(a.shape[0]), width=int(a.shape[1]))
    m.MergeFromString(_VALUES_TAG + _varint(len(raw)) + raw)
    return m


_VALUES_TAG = bytes([(3 << 3) | 2])  # FloatMatrix.values = 3, packed (length-delimited)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def job_to_proto(job: job_store.JobRecord) -> types_pb2.Job:
    return types_pb2.Job(
        job_id=job.job_id,
        state=STATE_TO_PROTO.get(job.state, types_pb2.JOB_STATE_UNSPECIFIED),
        archive_path=job.archive_path,
        output_path=job.output_path,
        progress=float(job.progress),
        files_done=int(job.files_done),
        files_total=int(job.files_total),
        segments=int(job.segments),
        error=job.error,
        created_unix=float(job.created_unix),
        updated_unix=float(job.updated_unix),
        summary_json=json.dumps(job.summary, default=str) if job.summary else "",
        cancel_requested=bool(job.cancel_requested),
        attempts=int(job.attempts),
    )
