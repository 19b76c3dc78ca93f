"""The avlearn gRPC client: generated stubs → a thin transport → typed results.

Imports grpc, protobuf and numpy only (no torch), so it installs and starts fast anywhere.

Example::

    with Client("localhost:50051", token=None) as c:
        result = c.search_audio_by_image(Path("dog.jpg"), k=5)
        for hit in result.hits:
            print(hit.score, hit.source, hit.start_sec)
"""

from __future__ import annotations

import os
import random
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import numpy as np

from avlearn_client.types import AvlearnError, IndexInfo, Job, SearchResult
from avlearn_proto import service_pb2, service_pb2_grpc, types_pb2
from avlearn_proto.records import Localization

DEFAULT_SERVER = "localhost:50051"
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

# A media argument: encoded bytes, or a path to a file with them.
Media = bytes | bytearray | str | os.PathLike


def default_server() -> str:
    """$AVLEARN_SERVER or localhost:50051."""
    return os.environ.get("AVLEARN_SERVER") or DEFAULT_SERVER


def _read(media: Media) -> bytes:
    if isinstance(media, (bytes, bytearray)):
        return bytes(media)
    return Path(media).read_bytes()


def media_input(
    data: Media | None = None, *, video: Media | None = None, time_sec: float = 0.0, segment_id: int | None = None, vector: np.ndarray | None = None
) -> types_pb2.MediaInput:
    """Build a MediaInput from exactly one of: encoded media, a video + time, a segment id, a vector."""
    given = [x is not None for x in (data, video, segment_id, vector)]
    if sum(given) != 1:
        raise ValueError("give exactly one of data, video, segment_id, vector")
    if data is not None:
        return types_pb2.MediaInput(data=_read(data))
    if video is not None:
        return types_pb2.MediaInput(video=types_pb2.VideoAt(data=_read(video), time_sec=float(time_sec)))
    if segment_id is not None:
        return types_pb2.MediaInput(segment_id=int(segment_id))
    values = np.asarray(vector, np.float32).reshape(-1)
    return types_pb2.MediaInput(vector=types_pb2.Vector(values=values.tolist()))


class Client:
    """A connection to an avlearn server.

    Args:
        address: "host:port".
        token: bearer token sent as ``authorization: Bearer <token>`` on every call.
        timeout_sec: default deadline of a call (each call may override it), including retries.
        retries: how many times a call that failed with UNAVAILABLE is retried (with exponential
            backoff from ``backoff_sec``, jittered, capped by the deadline).

    Every failure raises :class:`AvlearnError` with the gRPC status name as ``code``.
    """

    def __init__(self, address: str | None = None, *, token: str | None = None, timeout_sec: float = 30.0, retries: int = 3, backoff_sec: float = 0.1) -> None:
        self.address = address or default_server()
        self.timeout_sec = timeout_sec
        self.retries = retries
        self.backoff_sec = backoff_sec
        self._metadata: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {token}"),) if token else ()
        options = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES), ("grpc.max_send_message_length", MAX_MESSAGE_BYTES), ("grpc.enable_retries", 0)]
        self._channel = grpc.insecure_channel(self.address, options=options)
        self._stub = service_pb2_grpc.AvlearnServiceStub(self._channel)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    # -- transport -------------------------------------------------------------------------
    def _call(self, method: Callable, request, timeout_sec: float | None):
        """Unary call with the deadline, auth metadata and bounded retries on UNAVAILABLE."""
        deadline = time.monotonic() + (timeout_sec or self.timeout_sec)
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:
                    raise AvlearnError("DEADLINE_EXCEEDED", "deadline passed while retrying")
                return method(request, timeout=remaining, metadata=self._metadata)
            except grpc.RpcError as exc:
                code = exc.code()
                if code == grpc.StatusCode.UNAVAILABLE and attempt < self.retries:
                    pause = self.backoff_sec * (2**attempt) * (0.5 + random.random() / 2)
                    if time.monotonic() + pause < deadline:
                        attempt += 1
                        time.sleep(pause)
                        continue
                raise AvlearnError(code.name if code else "UNKNOWN", exc.details() or "") from None

    # -- retrieval ---------------------------------------------------------------------------
    def search_audio_by_image(
        self, image: Media | None = None, *, k: int = 10, group_by_clip: bool = False, timeout_sec: float | None = None, **source
    ) -> SearchResult:
        """Nearest audio segments to an image (bytes/path, or video=..., time_sec=..., segment_id=..., vector=...).

        ``group_by_clip``: the top-k clips instead, each as its best-scoring segment.
        """
        req = service_pb2.SearchAudioByImageRequest(image=media_input(image, **source), k=k, group_by_clip=group_by_clip)
        return SearchResult.from_proto(self._call(self._stub.SearchAudioByImage, req, timeout_sec))

    def search_images_by_audio(
        self, audio: Media | None = None, *, k: int = 10, group_by_clip: bool = False, timeout_sec: float | None = None, **source
    ) -> SearchResult:
        """Nearest image segments to a sound (bytes/path, or video=..., time_sec=..., segment_id=..., vector=...); ``group_by_clip`` as above."""
        req = service_pb2.SearchImagesByAudioRequest(audio=media_input(audio, **source), k=k, group_by_clip=group_by_clip)
        return SearchResult.from_proto(self._call(self._stub.SearchImagesByAudio, req, timeout_sec))

    def search_similar(
        self, modality: str, query: Media | None = None, *, k: int = 10, group_by_clip: bool = False, timeout_sec: float | None = None, **source
    ) -> SearchResult:
        """Same-modality search; ``modality`` is "audio" or "image"; ``group_by_clip`` as above (a query by segment id then leaves its whole clip out)."""
        mod = {"audio": types_pb2.MODALITY_AUDIO, "image": types_pb2.MODALITY_IMAGE}.get(modality)
        if mod is None:
            raise ValueError(f"modality must be 'audio' or 'image', not {modality!r}")
        req = service_pb2.SearchSimilarRequest(modality=mod, query=media_input(query, **source), k=k, group_by_clip=group_by_clip)
        return SearchResult.from_proto(self._call(self._stub.SearchSimilar, req, timeout_sec))

    def localize(
        self,
        audio: Media | None = None,
        image: Media | None = None,
        *,
        audio_segment_id: int | None = None,
        image_segment_id: int | None = None,
        overlay: bool = False,
        timeout_sec: float | None = None,
    ) -> Localization:
        """Heatmap of where in ``image`` the sound of ``audio`` comes from (bytes/paths or segment ids)."""
        req = service_pb2.LocalizeRequest(
            audio=media_input(audio, segment_id=audio_segment_id), image=media_input(image, segment_id=image_segment_id), overlay_png=overlay
        )
        return Localization.from_proto(self._call(self._stub.Localize, req, timeout_sec))

    # -- jobs --------------------------------------------------------------------------------
    def submit_embed_job(
        self,
        archive_path: str,
        *,
        build_bundle: bool = True,
        job_id: str | None = None,
        workers: int = 0,
        segment_sec: float = 0.0,
        hop_sec: float = 0.0,
        timeout_sec: float | None = None,
    ) -> Job:
        """Start embedding an archive that lies on the server. The job id is chosen here, so a retry is idempotent."""
        req = service_pb2.SubmitEmbedJobRequest(
            archive_path=str(archive_path),
            build_bundle=build_bundle,
            job_id=job_id or uuid.uuid4().hex,
            workers=workers,
            segment_sec=segment_sec,
            hop_sec=hop_sec,
        )
        return Job.from_proto(self._call(self._stub.SubmitEmbedJob, req, timeout_sec).job)

    def get_job(self, job_id: str, *, timeout_sec: float | None = None) -> Job:
        return Job.from_proto(self._call(self._stub.GetJob, service_pb2.GetJobRequest(job_id=job_id), timeout_sec).job)

    def cancel_job(self, job_id: str, *, timeout_sec: float | None = None) -> Job:
        return Job.from_proto(self._call(self._stub.CancelJob, service_pb2.CancelJobRequest(job_id=job_id), timeout_sec).job)

    def watch_job(self, job_id: str, *, timeout_sec: float | None = 3600.0) -> Iterator[Job]:
        """Yield the job record on every change until it is final. Reconnects on UNAVAILABLE (bounded)."""
        deadline = time.monotonic() + (timeout_sec or self.timeout_sec)
        attempt = 0
        while True:
            try:
                stream = self._stub.WatchJob(service_pb2.WatchJobRequest(job_id=job_id), timeout=max(0.0, deadline - time.monotonic()), metadata=self._metadata)
                for msg in stream:
                    attempt = 0
                    job = Job.from_proto(msg.job)
                    yield job
                    if job.done:
                        return
                return
            except grpc.RpcError as exc:
                code = exc.code()
                if code == grpc.StatusCode.UNAVAILABLE and attempt < self.retries and time.monotonic() < deadline:
                    time.sleep(self.backoff_sec * (2**attempt))
                    attempt += 1
                    continue
                raise AvlearnError(code.name if code else "UNKNOWN", exc.details() or "") from None

    # -- index -------------------------------------------------------------------------------
    def index_info(self, *, timeout_sec: float | None = None) -> IndexInfo:
        return IndexInfo.from_proto(self._call(self._stub.GetIndexInfo, service_pb2.GetIndexInfoRequest(), timeout_sec))

    def reload_index(self, bundle_path: str = "", *, timeout_sec: float | None = None) -> tuple[str, str]:
        """Swap in a bundle (empty path = reopen the current one); returns (previous bundle_id, new bundle_id)."""
        resp = self._call(self._stub.ReloadIndex, service_pb2.ReloadIndexRequest(bundle_path=str(bundle_path)), timeout_sec)
        return resp.previous_bundle_id, resp.bundle_id

    def health(self, service: str = "", *, timeout_sec: float | None = None) -> str:
        """The standard health service's status name ("SERVING", "NOT_SERVING", ...)."""
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        stub = health_pb2_grpc.HealthStub(self._channel)
        resp = self._call(stub.Check, health_pb2.HealthCheckRequest(service=service), timeout_sec)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
