"""The gRPC servicer: protobuf ⇄ engine/job store, and the mapping of errors to status codes.

| error                                   | status              |
|-----------------------------------------|---------------------|
| InvalidQuery, MediaError, ValueError    | INVALID_ARGUMENT    |
| UnknownSegment, unknown job, no file    | NOT_FOUND           |
| NotReady                                | FAILED_PRECONDITION |
| PathNotAllowed                          | PERMISSION_DENIED   |
| job id reused for another archive       | ALREADY_EXISTS      |
| job store (Redis) unreachable           | UNAVAILABLE         |
| another replica did not take a reload   | ABORTED             |
| Abandoned (client gone / deadline)      | CANCELLED / DEADLINE_EXCEEDED |
| anything else                           | INTERNAL (logged)   |
"""

from __future__ import annotations

import functools
import json
import logging
import re
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from avlearn.media.errors import MediaError
from avlearn_proto import service_pb2, service_pb2_grpc, types_pb2
from services import job_store
from services import jobs as jobs_mod
from services.cache import QueryCache, cache_key
from services.engine import AUDIO, IMAGE, EngineHolder, SearchOutcome, _Stopwatch
from services.errors import Abandoned, InvalidQuery, NotReady, UnknownSegment
from services.interceptors import request_id
from services.metrics import Metrics
from services.query_media import MediaQuery
from services.replicas import ReplicaSync, ReplicaSyncError
from services.settings import Settings

log = logging.getLogger(__name__)

_JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_STATE_TO_PROTO = {
    job_store.QUEUED: types_pb2.JOB_STATE_QUEUED,
    job_store.RUNNING: types_pb2.JOB_STATE_RUNNING,
    job_store.SUCCEEDED: types_pb2.JOB_STATE_SUCCEEDED,
    job_store.FAILED: types_pb2.JOB_STATE_FAILED,
    job_store.CANCELLED: types_pb2.JOB_STATE_CANCELLED,
}
_MODALITY = {types_pb2.MODALITY_AUDIO: AUDIO, types_pb2.MODALITY_IMAGE: IMAGE}


class JobNotFound(KeyError):
    pass


class JobConflict(Exception):
    pass


def _search_clips(engine, qmod: str, tmod: str, query: MediaQuery, k: int, check) -> SearchOutcome:
    """``Engine.search`` with hits grouped per clip (``Bundle.search_clips``): the top-k clips, each its best
    segment; a same-modality query given by segment id leaves its whole clip out."""
    k = engine.check_k(k)
    if engine.embedder is None or engine.bundle is None:
        return engine.search(qmod, tmod, query, k, check)  # raises NotReady, as an ungrouped search would
    sw = _Stopwatch()
    vec = engine.query_vector(qmod, query, check, sw)
    own = {engine.bundle.segment(query.segment_id).clip_id} if (query.segment_id is not None and qmod == tmod) else set()
    check("search")
    with sw.stage("search"):
        hits = engine.bundle.search_clips(tmod, vec[None], k, exclude_clips=[own])[0]
    return SearchOutcome(hits, engine.bundle_id, sw.done())


def _status_of(exc: BaseException) -> grpc.StatusCode:
    import redis

    if isinstance(exc, Abandoned):
        return grpc.StatusCode.DEADLINE_EXCEEDED if "deadline" in exc.reason else grpc.StatusCode.CANCELLED
    if isinstance(exc, (UnknownSegment, JobNotFound, FileNotFoundError)):
        return grpc.StatusCode.NOT_FOUND
    if isinstance(exc, NotReady):
        return grpc.StatusCode.FAILED_PRECONDITION
    if isinstance(exc, jobs_mod.PathNotAllowed):
        return grpc.StatusCode.PERMISSION_DENIED
    if isinstance(exc, JobConflict):
        return grpc.StatusCode.ALREADY_EXISTS
    if isinstance(exc, (InvalidQuery, MediaError, ValueError)):
        return grpc.StatusCode.INVALID_ARGUMENT
    if isinstance(exc, redis.RedisError):
        return grpc.StatusCode.UNAVAILABLE
    if isinstance(exc, ReplicaSyncError):
        return grpc.StatusCode.ABORTED
    return grpc.StatusCode.INTERNAL


def _message_of(exc: BaseException, code: grpc.StatusCode) -> str:
    if code == grpc.StatusCode.INTERNAL:
        return f"internal error (request id {request_id.get()})"
    if isinstance(exc, MediaError):
        return f"bad media ({type(exc).__name__}): {exc.reason}"
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    return str(exc)


def rpc(fn: Callable) -> Callable:
    """Turn engine/job-store exceptions into gRPC status codes (see the module table)."""

    @functools.wraps(fn)
    def wrapper(self, request, context):
        try:
            return fn(self, request, context)
        except Exception as exc:
            if isinstance(exc, grpc.RpcError) or type(exc).__name__ == "_AbortionError" or context.code() not in (None, grpc.StatusCode.OK):
                raise  # already aborted
            code = _status_of(exc)
            if code == grpc.StatusCode.INTERNAL:
                log.exception("%s failed [%s]", fn.__name__, request_id.get())
            if isinstance(exc, Abandoned):
                self.metrics.abandoned.labels(fn.__name__, exc.stage).inc()
            context.abort(code, _message_of(exc, code))

    return wrapper


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


def _hits(hits: list) -> list[types_pb2.Hit]:
    return [
        types_pb2.Hit(
            segment_id=int(h.segment_id),
            score=float(h.score),
            clip_id=str(h.clip_id),
            source=str(h.source),
            start_sec=float(h.start_sec),
            labels=list(h.labels),
        )
        for h in hits
    ]


def _timings(t) -> types_pb2.Timings:
    return types_pb2.Timings(decode_ms=t.decode_ms, embed_ms=t.embed_ms, search_ms=t.search_ms, total_ms=t.total_ms)


def _matrix(a: np.ndarray) -> types_pb2.FloatMatrix:
    a = np.asarray(a, np.float32)
    return types_pb2.FloatMatrix(height=int(a.shape[0]), width=int(a.shape[1]), values=a.reshape(-1).tolist())


def job_to_proto(job: job_store.JobRecord) -> types_pb2.Job:
    return types_pb2.Job(
        job_id=job.job_id,
        state=_STATE_TO_PROTO.get(job.state, types_pb2.JOB_STATE_UNSPECIFIED),
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


def make_checker(context: grpc.ServicerContext) -> Callable[[str], None]:
    """``check(stage)``: raise Abandoned when the client has gone or the deadline has passed."""

    def check(stage: str) -> None:
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            raise Abandoned(stage, "deadline exceeded")
        if not context.is_active():
            raise Abandoned(stage, "the client cancelled or went away")

    return check


class AvlearnServicer(service_pb2_grpc.AvlearnServiceServicer):
    """Implements avlearn.v1.AvlearnService over an EngineHolder, a query cache and a job store."""

    def __init__(
        self, holder: EngineHolder, cache: QueryCache, store: job_store.JobStore, settings: Settings, metrics: Metrics,
        runner: jobs_mod.JobRunner | None = None, sync: ReplicaSync | None = None,
    ) -> None:  # fmt: skip
        self.holder = holder
        self.cache = cache
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self.runner = runner
        self.sync = sync  # other server processes on this port, told about reloads
        self.stopping = threading.Event()

    # -- retrieval ---------------------------------------------------------------------------
    def _cached(self, rpc_name: str, request, response_cls, context, compute: Callable[[Any], Any]):
        with self.holder.use() as engine:
            key = cache_key(rpc_name, engine.bundle_id, request.SerializeToString(deterministic=True)) if engine.bundle_id and self.cache.enabled else None
            if key is not None:
                raw = self.cache.get(key)
                if raw is not None:
                    try:
                        resp = response_cls.FromString(raw)
                    except Exception:  # a corrupt entry is a miss
                        resp = None
                    if resp is not None:
                        self.metrics.cache.labels("hit").inc()
                        resp.cached = True
                        return resp
                self.metrics.cache.labels("miss").inc()
            resp = compute(engine)
            if key is not None and context.is_active():
                self.cache.set(key, resp.SerializeToString())
            return resp

    def _search(self, name: str, request, context, msg: types_pb2.MediaInput, qmod: str, tmod: str, k: int, response_cls):
        query = to_query(msg, qmod)
        check = make_checker(context)

        def compute(engine):
            out = _search_clips(engine, qmod, tmod, query, k, check) if request.group_by_clip else engine.search(qmod, tmod, query, k, check)
            return response_cls(hits=_hits(out.hits), bundle_id=out.bundle_id, timings=_timings(out.timings))

        return self._cached(name, request, response_cls, context, compute)

    @rpc
    def SearchAudioByImage(self, request, context):
        return self._search("SearchAudioByImage", request, context, request.image, IMAGE, AUDIO, request.k, service_pb2.SearchAudioByImageResponse)

    @rpc
    def SearchImagesByAudio(self, request, context):
        return self._search("SearchImagesByAudio", request, context, request.audio, AUDIO, IMAGE, request.k, service_pb2.SearchImagesByAudioResponse)

    @rpc
    def SearchSimilar(self, request, context):
        modality = _MODALITY.get(request.modality)
        if modality is None:
            raise InvalidQuery("modality must be MODALITY_AUDIO or MODALITY_IMAGE")
        return self._search("SearchSimilar", request, context, request.query, modality, modality, request.k, service_pb2.SearchSimilarResponse)

    @rpc
    def Localize(self, request, context):
        audio = to_query(request.audio, "audio")
        image = to_query(request.image, "image")
        check = make_checker(context)

        def compute(engine):
            out = engine.localize(audio, image, overlay=request.overlay_png, check=check)
            return service_pb2.LocalizeResponse(
                heatmap=_matrix(out.heatmap),
                grid=_matrix(out.grid),
                peak_y=out.peak_yx[0],
                peak_x=out.peak_yx[1],
                score=out.score,
                overlay_png=out.overlay_png or b"",
                bundle_id=out.bundle_id,
                timings=_timings(out.timings),
            )

        return self._cached("Localize", request, service_pb2.LocalizeResponse, context, compute)

    # -- jobs --------------------------------------------------------------------------------
    def _job(self, job_id: str) -> job_store.JobRecord:
        if not job_id:
            raise InvalidQuery("job_id is empty")
        job = self.store.get(job_id)
        if job is None:
            raise JobNotFound(f"no job {job_id!r}")
        return job

    @rpc
    def SubmitEmbedJob(self, request, context):
        s = self.settings
        job_id = request.job_id or uuid.uuid4().hex
        if not _JOB_ID.match(job_id):
            raise InvalidQuery("job_id must be 1-64 characters of A-Z a-z 0-9 . _ - (starting with a letter or digit)")
        if s.checkpoint is None:
            raise NotReady("this server has no --checkpoint to embed with")
        archive = jobs_mod.resolve_under_roots(request.archive_path, s.job_roots)
        workers = request.workers or s.job_workers
        segment_sec = request.segment_sec or 1.0
        hop_sec = request.hop_sec or segment_sec
        if not 1 <= workers <= 64:
            raise InvalidQuery(f"workers must be between 1 and 64, got {workers}")
        if not (0 < segment_sec <= 10 and 0 < hop_sec <= 60):
            raise InvalidQuery(f"segment_sec must be in (0, 10] and hop_sec in (0, 60], got {segment_sec}, {hop_sec}")
        job = job_store.JobRecord(
            job_id=job_id,
            archive_path=str(archive),
            output_path=str(Path(s.job_output).resolve() / job_id),
            checkpoint=str(Path(s.checkpoint).resolve()),
            build_bundle=bool(request.build_bundle),
            workers=int(workers),
            segment_sec=float(segment_sec),
            hop_sec=float(hop_sec),
        )
        stored, created = self.store.create(job)
        if not created and stored.archive_path != job.archive_path:
            raise JobConflict(f"job {job_id!r} already exists for another archive ({stored.archive_path})")
        if created:
            self.metrics.jobs.labels(job_store.QUEUED).inc()
            if self.runner is not None:
                self.runner.wake()
        return service_pb2.SubmitEmbedJobResponse(job=job_to_proto(stored), created=created)

    @rpc
    def GetJob(self, request, context):
        return service_pb2.GetJobResponse(job=job_to_proto(self._job(request.job_id)))

    def WatchJob(self, request, context):
        try:
            job = self._job(request.job_id)
        except Exception as exc:
            code = _status_of(exc)
            context.abort(code, _message_of(exc, code))
        last = None
        while True:
            snapshot = (job.state, job.progress, job.files_done, job.segments, job.cancel_requested, job.error)
            if snapshot != last:
                last = snapshot
                yield service_pb2.WatchJobResponse(job=job_to_proto(job))
            if job.done or not context.is_active() or self.stopping.wait(0.2):
                return
            try:
                job = self.store.get(request.job_id) or job
            except Exception as exc:  # a store hiccup: keep the stream, try again
                log.warning("WatchJob %s: store read failed: %s", request.job_id, exc)

    @rpc
    def CancelJob(self, request, context):
        job = self._job(request.job_id)
        if job.done:
            return service_pb2.CancelJobResponse(job=job_to_proto(job))
        self.store.request_cancel(job.job_id)
        # A queued job that no runner holds is cancelled right here; a running one stops at its next check.
        owner = f"cancel:{uuid.uuid4().hex[:8]}"
        if self.store.acquire_lease(job.job_id, owner, 5.0):
            try:
                job = self.store.get(job.job_id)
                if job is not None and job.state == job_store.QUEUED:
                    job.state = job_store.CANCELLED
                    self.store.save(job)
                    self.metrics.jobs.labels(job_store.CANCELLED).inc()
            finally:
                self.store.release_lease(request.job_id, owner)
        return service_pb2.CancelJobResponse(job=job_to_proto(self._job(request.job_id)))

    # -- index -------------------------------------------------------------------------------
    @rpc
    def GetIndexInfo(self, request, context):
        with self.holder.use() as engine:
            info = engine.info()
        m = info.get("manifest", {})
        size = info.get("image_size_px", (0, 0))
        return service_pb2.GetIndexInfoResponse(
            bundle_id=info["bundle_id"],
            bundle_path=info["bundle_path"],
            checkpoint_hash=str(m.get("checkpoint_hash") or info.get("checkpoint_hash", "")),
            counts={str(k): int(v) for k, v in (m.get("counts") or {}).items()},
            dims={str(k): int(v) for k, v in (m.get("dims") or {}).items()},
            factories={str(k): str(v) for k, v in (m.get("factories") or {}).items()},
            manifest_json=json.dumps(m, default=str),
            loaded_unix=float(info["loaded_unix"]),
            embedding_dim=int(info.get("embedding_dim", 0)),
            image_height_px=int(size[0]),
            image_width_px=int(size[1]),
            sample_rate_hz=int(info.get("sample_rate_hz", 0)),
            segment_sec=float(info.get("segment_sec", 0.0)),
            has_localizer=bool(info.get("has_localizer", False)),
            reloads=int(self.holder.reloads),
        )

    def bundle_roots(self) -> tuple[Path, ...]:
        """Where ReloadIndex may open bundles: the first bundle's folder, the job output, the job roots."""
        s = self.settings
        roots = [Path(s.job_output)] + list(s.job_roots)
        if s.bundle is not None:
            roots.insert(0, Path(s.bundle).absolute().parent)
        return tuple(roots)

    @rpc
    def ReloadIndex(self, request, context):
        path = jobs_mod.resolve_under_roots(request.bundle_path, self.bundle_roots(), what="bundle") if request.bundle_path else None
        try:
            old_id, new_id = self.holder.reload(path, strict_checkpoint=self.settings.strict_checkpoint)
        except Exception:
            self.metrics.reloads.labels("failed").inc()
            raise
        self.metrics.reloads.labels("ok").inc()
        if self.sync is not None and self.holder.current.bundle_path is not None:
            self.sync.publish(self.holder.current.bundle_path, new_id)  # returns once every replica has it
        return service_pb2.ReloadIndexResponse(previous_bundle_id=old_id, bundle_id=new_id, bundle_path=str(self.holder.current.bundle_path or ""))
