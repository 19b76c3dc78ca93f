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

import asyncio
import contextvars
import functools
import json
import logging
import re
import threading
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc

from avlearn.media.errors import MediaError
from avlearn_proto import service_pb2, service_pb2_grpc, types_pb2
from services import job_store
from services import jobs as jobs_mod
from services.cache import QueryCache, cache_key
from services.errors import Abandoned, InvalidQuery, NotReady, UnknownSegment, short, user_message
from services.holder import EngineHolder
from services.interceptors import request_id
from services.metrics import Metrics
from services.query_types import AUDIO, IMAGE
from services.replicas import ReplicaSync, ReplicaSyncError
from services.scheduler import Scheduler
from services.settings import Settings
from services.wire import MODALITY, hits_to_proto, job_to_proto, matrix_to_proto, timings_to_proto, to_query

log = logging.getLogger(__name__)

MAX_JOB_ID_CHARS = 64
_JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class JobNotFound(KeyError):
    pass


class JobConflict(Exception):
    pass


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
    """The reply's message: the error in the user's terms, bounded (services.errors.user_message)."""
    if code == grpc.StatusCode.INTERNAL:
        return f"internal error (request id {request_id.get()})"
    if code == grpc.StatusCode.UNAVAILABLE:
        return "the job store is unreachable; retry later"
    if isinstance(exc, MediaError):
        return user_message(f"bad media ({type(exc).__name__}): {exc.reason}")
    if isinstance(exc, KeyError) and exc.args:
        return user_message(str(exc.args[0]))
    return user_message(str(exc))


_stage: contextvars.ContextVar[str] = contextvars.ContextVar("stage", default="admitted")


def rpc(fn: Callable) -> Callable:
    """Turn engine/job-store exceptions into gRPC status codes (see the module table); count
    calls the runtime cancelled (client gone, deadline passed) as abandoned at their stage."""

    @functools.wraps(fn)
    async def wrapper(self, request, context):
        try:
            return await fn(self, request, context)
        except asyncio.CancelledError:
            self.metrics.abandoned.labels(fn.__name__, _stage.get()).inc()
            raise
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            code = _status_of(exc)
            if code == grpc.StatusCode.INTERNAL:
                log.error("%s failed [%s]", fn.__name__, request_id.get(), exc_info=exc)
            elif code == grpc.StatusCode.UNAVAILABLE:
                log.warning("%s: job store unreachable [%s]: %s", fn.__name__, request_id.get(), exc)
            if isinstance(exc, Abandoned):
                self.metrics.abandoned.labels(fn.__name__, exc.stage).inc()
            await context.abort(code, _message_of(exc, code))

    return wrapper


def make_checker(context: grpc.aio.ServicerContext) -> Callable[[str], None]:
    """``check(stage)``: note the stage the call has reached; raise Abandoned when the client has
    gone or the deadline has passed (the runtime also cancels a waiting call's task then)."""

    def check(stage: str) -> None:
        _stage.set(stage)
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            raise Abandoned(stage, "deadline exceeded")
        if context.cancelled():
            raise Abandoned(stage, "the client cancelled or went away")

    return check


class AvlearnServicer(service_pb2_grpc.AvlearnServiceServicer):
    """Implements avlearn.v1.AvlearnService (asyncio) over an EngineHolder, a scheduler, a query cache and a job store.

    Queries run through ``scheduler`` (executors and batchers); blocking job-store, cache
    (Redis) and reload work runs on its I/O executor, never on the event loop.
    """

    def __init__(
        self, holder: EngineHolder, cache: QueryCache, store: job_store.JobStore, settings: Settings, metrics: Metrics, scheduler: Scheduler,
        runner: jobs_mod.JobRunner | None = None, sync: ReplicaSync | None = None,
    ) -> None:  # fmt: skip
        self.holder = holder
        self.cache = cache
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self.scheduler = scheduler
        self.runner = runner
        self.sync = sync  # other server processes on this port, told about reloads
        self.stopping = threading.Event()
        self._cache_blocking = bool(getattr(cache, "blocking", True))

    async def _io(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await self.scheduler.blocking(fn, *args)

    # -- retrieval ---------------------------------------------------------------------------
    async def _cache_get(self, key: str) -> bytes | None:
        return await self._io(self.cache.get, key) if self._cache_blocking else self.cache.get(key)

    async def _cache_set(self, key: str, value: bytes) -> None:
        if self._cache_blocking:
            await self._io(self.cache.set, key, value)
        else:
            self.cache.set(key, value)

    async def _cached(self, rpc_name: str, request, response_cls, context, compute: Callable[[Any], Awaitable[Any]]):
        with self.holder.use() as engine:
            key = cache_key(rpc_name, engine.bundle_id, request.SerializeToString(deterministic=True)) if engine.bundle_id and self.cache.enabled else None
            if key is not None:
                raw = await self._cache_get(key)
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
            resp = await compute(engine)
            if key is not None and not context.cancelled():
                await self._cache_set(key, resp.SerializeToString())
            return resp

    async def _search(self, name: str, request, context, msg: types_pb2.MediaInput, qmod: str, tmod: str, k: int, response_cls):
        query = to_query(msg, qmod)
        check = make_checker(context)

        async def compute(engine):
            search = self.scheduler.search_clips if request.group_by_clip else self.scheduler.search
            out = await search(engine, qmod, tmod, query, k, check)
            return response_cls(hits=hits_to_proto(out.hits), bundle_id=out.bundle_id, timings=timings_to_proto(out.timings))

        return await self._cached(name, request, response_cls, context, compute)

    @rpc
    async def SearchAudioByImage(self, request, context):
        return await self._search("SearchAudioByImage", request, context, request.image, IMAGE, AUDIO, request.k, service_pb2.SearchAudioByImageResponse)

    @rpc
    async def SearchImagesByAudio(self, request, context):
        return await self._search("SearchImagesByAudio", request, context, request.audio, AUDIO, IMAGE, request.k, service_pb2.SearchImagesByAudioResponse)

    @rpc
    async def SearchSimilar(self, request, context):
        modality = MODALITY.get(request.modality)
        if modality is None:
            raise InvalidQuery("modality must be MODALITY_AUDIO or MODALITY_IMAGE")
        return await self._search("SearchSimilar", request, context, request.query, modality, modality, request.k, service_pb2.SearchSimilarResponse)

    @rpc
    async def Localize(self, request, context):
        audio = to_query(request.audio, "audio")
        image = to_query(request.image, "image")
        check = make_checker(context)

        async def compute(engine):
            out = await self.scheduler.localize(engine, audio, image, overlay=request.overlay_png, check=check)
            return service_pb2.LocalizeResponse(
                heatmap=matrix_to_proto(out.heatmap),
                grid=matrix_to_proto(out.grid),
                peak_y=out.peak_yx[0],
                peak_x=out.peak_yx[1],
                score=out.score,
                overlay_png=out.overlay_png or b"",
                bundle_id=out.bundle_id,
                timings=timings_to_proto(out.timings),
            )

        return await self._cached("Localize", request, service_pb2.LocalizeResponse, context, compute)

    # -- jobs --------------------------------------------------------------------------------
    def _job(self, job_id: str) -> job_store.JobRecord:
        if not job_id:
            raise InvalidQuery("job_id is empty")
        if len(job_id) > MAX_JOB_ID_CHARS:
            raise InvalidQuery(f"job_id '{short(job_id)}' is too long: job ids have at most {MAX_JOB_ID_CHARS} characters")
        job = self.store.get(job_id)
        if job is None:
            raise JobNotFound(f"no job '{short(job_id)}'")
        return job

    def _submit(self, request) -> service_pb2.SubmitEmbedJobResponse:
        s = self.settings
        job_id = request.job_id or uuid.uuid4().hex
        if not _JOB_ID.match(job_id):
            raise InvalidQuery(
                f"job_id '{short(job_id)}' is not valid: use 1-{MAX_JOB_ID_CHARS} characters of A-Z a-z 0-9 . _ - (starting with a letter or digit)"
            )
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
            raise JobConflict(f"job '{job_id}' already exists for another archive ({stored.archive_path})")
        if created:
            self.metrics.jobs.labels(job_store.QUEUED).inc()
            if self.runner is not None:
                self.runner.wake()
        return service_pb2.SubmitEmbedJobResponse(job=job_to_proto(stored), created=created)

    @rpc
    async def SubmitEmbedJob(self, request, context):
        return await self._io(self._submit, request)

    @rpc
    async def GetJob(self, request, context):
        return service_pb2.GetJobResponse(job=job_to_proto(await self._io(self._job, request.job_id)))

    async def WatchJob(self, request, context):
        try:
            job = await self._io(self._job, request.job_id)
        except Exception as exc:
            code = _status_of(exc)
            await context.abort(code, _message_of(exc, code))
        last = None
        while True:
            snapshot = (job.state, job.progress, job.files_done, job.segments, job.cancel_requested, job.error)
            if snapshot != last:
                last = snapshot
                yield service_pb2.WatchJobResponse(job=job_to_proto(job))
            if job.done or self.stopping.is_set():
                return
            await asyncio.sleep(0.2)
            if self.stopping.is_set():
                return
            try:
                job = await self._io(self.store.get, request.job_id) or job
            except Exception as exc:  # a store hiccup: keep the stream, try again
                log.warning("WatchJob %s: store read failed: %s", short(request.job_id), exc)

    def _cancel(self, job_id: str) -> service_pb2.CancelJobResponse:
        job = self._job(job_id)
        if job.done:
            return service_pb2.CancelJobResponse(job=job_to_proto(job))
        self.store.request_cancel(job.job_id)
        # A queued job that no runner holds is cancelled right here; a running one stops at its next check.
        owner = f"cancel:{uuid.uuid4().hex[:8]}"
        if self.store.acquire_lease(job.job_id, owner, 5.0):
            try:
                current = self.store.get(job.job_id)
                if current is not None and current.state == job_store.QUEUED:
                    current.state = job_store.CANCELLED
                    self.store.save(current)
                    self.metrics.jobs.labels(job_store.CANCELLED).inc()
            finally:
                self.store.release_lease(job_id, owner)
        return service_pb2.CancelJobResponse(job=job_to_proto(self._job(job_id)))

    @rpc
    async def CancelJob(self, request, context):
        return await self._io(self._cancel, request.job_id)

    # -- index -------------------------------------------------------------------------------
    @rpc
    async def GetIndexInfo(self, request, context):
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

    def reload(self, bundle_path: str | Path | None, *, publish: bool = True) -> tuple[str, str]:
        """Open the bundle at ``bundle_path`` (None or "" = reopen the current path) and swap it in;
        with ``publish``, return only once the other replicas have it too (SIGHUP reaches every
        replica itself). Returns (old id, new id). Blocking: ReloadIndex and SIGHUP."""
        path = jobs_mod.resolve_under_roots(str(bundle_path), self.bundle_roots(), what="bundle") if bundle_path else None
        try:
            old_id, new_id = self.holder.reload(path, strict_checkpoint=self.settings.strict_checkpoint)
        except Exception:
            self.metrics.reloads.labels("failed").inc()
            raise
        self.metrics.reloads.labels("ok").inc()
        if publish and self.sync is not None and self.holder.current.bundle_path is not None:
            self.sync.publish(self.holder.current.bundle_path, new_id)  # returns once every replica has it
        return old_id, new_id

    @rpc
    async def ReloadIndex(self, request, context):
        old_id, new_id = await self._io(self.reload, request.bundle_path)
        return service_pb2.ReloadIndexResponse(previous_bundle_id=old_id, bundle_id=new_id, bundle_path=str(self.holder.current.bundle_path or ""))
