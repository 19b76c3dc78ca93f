from . import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SearchAudioByImageRequest(_message.Message):
    __slots__ = ("image", "k", "group_by_clip")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_CLIP_FIELD_NUMBER: _ClassVar[int]
    image: _types_pb2.MediaInput
    k: int
    group_by_clip: bool
    def __init__(self, image: _Optional[_Union[_types_pb2.MediaInput, _Mapping]] = ..., k: _Optional[int] = ..., group_by_clip: _Optional[bool] = ...) -> None: ...

class SearchAudioByImageResponse(_message.Message):
    __slots__ = ("hits", "bundle_id", "timings", "cached")
    HITS_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_ID_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[_types_pb2.Hit]
    bundle_id: str
    timings: _types_pb2.Timings
    cached: bool
    def __init__(self, hits: _Optional[_Iterable[_Union[_types_pb2.Hit, _Mapping]]] = ..., bundle_id: _Optional[str] = ..., timings: _Optional[_Union[_types_pb2.Timings, _Mapping]] = ..., cached: _Optional[bool] = ...) -> None: ...

class SearchImagesByAudioRequest(_message.Message):
    __slots__ = ("audio", "k", "group_by_clip")
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_CLIP_FIELD_NUMBER: _ClassVar[int]
    audio: _types_pb2.MediaInput
    k: int
    group_by_clip: bool
    def __init__(self, audio: _Optional[_Union[_types_pb2.MediaInput, _Mapping]] = ..., k: _Optional[int] = ..., group_by_clip: _Optional[bool] = ...) -> None: ...

class SearchImagesByAudioResponse(_message.Message):
    __slots__ = ("hits", "bundle_id", "timings", "cached")
    HITS_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_ID_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[_types_pb2.Hit]
    bundle_id: str
    timings: _types_pb2.Timings
    cached: bool
    def __init__(self, hits: _Optional[_Iterable[_Union[_types_pb2.Hit, _Mapping]]] = ..., bundle_id: _Optional[str] = ..., timings: _Optional[_Union[_types_pb2.Timings, _Mapping]] = ..., cached: _Optional[bool] = ...) -> None: ...

class SearchSimilarRequest(_message.Message):
    __slots__ = ("modality", "query", "k", "group_by_clip")
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_CLIP_FIELD_NUMBER: _ClassVar[int]
    modality: _types_pb2.Modality
    query: _types_pb2.MediaInput
    k: int
    group_by_clip: bool
    def __init__(self, modality: _Optional[_Union[_types_pb2.Modality, str]] = ..., query: _Optional[_Union[_types_pb2.MediaInput, _Mapping]] = ..., k: _Optional[int] = ..., group_by_clip: _Optional[bool] = ...) -> None: ...

class SearchSimilarResponse(_message.Message):
    __slots__ = ("hits", "bundle_id", "timings", "cached")
    HITS_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_ID_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[_types_pb2.Hit]
    bundle_id: str
    timings: _types_pb2.Timings
    cached: bool
    def __init__(self, hits: _Optional[_Iterable[_Union[_types_pb2.Hit, _Mapping]]] = ..., bundle_id: _Optional[str] = ..., timings: _Optional[_Union[_types_pb2.Timings, _Mapping]] = ..., cached: _Optional[bool] = ...) -> None: ...

class LocalizeRequest(_message.Message):
    __slots__ = ("audio", "image", "overlay_png")
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    OVERLAY_PNG_FIELD_NUMBER: _ClassVar[int]
    audio: _types_pb2.MediaInput
    image: _types_pb2.MediaInput
    overlay_png: bool
    def __init__(self, audio: _Optional[_Union[_types_pb2.MediaInput, _Mapping]] = ..., image: _Optional[_Union[_types_pb2.MediaInput, _Mapping]] = ..., overlay_png: _Optional[bool] = ...) -> None: ...

class LocalizeResponse(_message.Message):
    __slots__ = ("heatmap", "grid", "peak_y", "peak_x", "score", "overlay_png", "bundle_id", "timings", "cached")
    HEATMAP_FIELD_NUMBER: _ClassVar[int]
    GRID_FIELD_NUMBER: _ClassVar[int]
    PEAK_Y_FIELD_NUMBER: _ClassVar[int]
    PEAK_X_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    OVERLAY_PNG_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_ID_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    heatmap: _types_pb2.FloatMatrix
    grid: _types_pb2.FloatMatrix
    peak_y: float
    peak_x: float
    score: float
    overlay_png: bytes
    bundle_id: str
    timings: _types_pb2.Timings
    cached: bool
    def __init__(self, heatmap: _Optional[_Union[_types_pb2.FloatMatrix, _Mapping]] = ..., grid: _Optional[_Union[_types_pb2.FloatMatrix, _Mapping]] = ..., peak_y: _Optional[float] = ..., peak_x: _Optional[float] = ..., score: _Optional[float] = ..., overlay_png: _Optional[bytes] = ..., bundle_id: _Optional[str] = ..., timings: _Optional[_Union[_types_pb2.Timings, _Mapping]] = ..., cached: _Optional[bool] = ...) -> None: ...

class SubmitEmbedJobRequest(_message.Message):
    __slots__ = ("archive_path", "build_bundle", "job_id", "workers", "segment_sec", "hop_sec")
    ARCHIVE_PATH_FIELD_NUMBER: _ClassVar[int]
    BUILD_BUNDLE_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_SEC_FIELD_NUMBER: _ClassVar[int]
    HOP_SEC_FIELD_NUMBER: _ClassVar[int]
    archive_path: str
    build_bundle: bool
    job_id: str
    workers: int
    segment_sec: float
    hop_sec: float
    def __init__(self, archive_path: _Optional[str] = ..., build_bundle: _Optional[bool] = ..., job_id: _Optional[str] = ..., workers: _Optional[int] = ..., segment_sec: _Optional[float] = ..., hop_sec: _Optional[float] = ...) -> None: ...

class SubmitEmbedJobResponse(_message.Message):
    __slots__ = ("job", "created")
    JOB_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    job: _types_pb2.Job
    created: bool
    def __init__(self, job: _Optional[_Union[_types_pb2.Job, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class GetJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: _types_pb2.Job
    def __init__(self, job: _Optional[_Union[_types_pb2.Job, _Mapping]] = ...) -> None: ...

class WatchJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class WatchJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: _types_pb2.Job
    def __init__(self, job: _Optional[_Union[_types_pb2.Job, _Mapping]] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class CancelJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: _types_pb2.Job
    def __init__(self, job: _Optional[_Union[_types_pb2.Job, _Mapping]] = ...) -> None: ...

class GetIndexInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetIndexInfoResponse(_message.Message):
    __slots__ = ("bundle_id", "bundle_path", "checkpoint_hash", "counts", "dims", "factories", "manifest_json", "loaded_unix", "embedding_dim", "image_height_px", "image_width_px", "sample_rate_hz", "segment_sec", "has_localizer", "reloads")
    class CountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class DimsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class FactoriesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    BUNDLE_ID_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_PATH_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_HASH_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    DIMS_FIELD_NUMBER: _ClassVar[int]
    FACTORIES_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_JSON_FIELD_NUMBER: _ClassVar[int]
    LOADED_UNIX_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_DIM_FIELD_NUMBER: _ClassVar[int]
    IMAGE_HEIGHT_PX_FIELD_NUMBER: _ClassVar[int]
    IMAGE_WIDTH_PX_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_SEC_FIELD_NUMBER: _ClassVar[int]
    HAS_LOCALIZER_FIELD_NUMBER: _ClassVar[int]
    RELOADS_FIELD_NUMBER: _ClassVar[int]
    bundle_id: str
    bundle_path: str
    checkpoint_hash: str
    counts: _containers.ScalarMap[str, int]
    dims: _containers.ScalarMap[str, int]
    factories: _containers.ScalarMap[str, str]
    manifest_json: str
    loaded_unix: float
    embedding_dim: int
    image_height_px: int
    image_width_px: int
    sample_rate_hz: int
    segment_sec: float
    has_localizer: bool
    reloads: int
    def __init__(self, bundle_id: _Optional[str] = ..., bundle_path: _Optional[str] = ..., checkpoint_hash: _Optional[str] = ..., counts: _Optional[_Mapping[str, int]] = ..., dims: _Optional[_Mapping[str, int]] = ..., factories: _Optional[_Mapping[str, str]] = ..., manifest_json: _Optional[str] = ..., loaded_unix: _Optional[float] = ..., embedding_dim: _Optional[int] = ..., image_height_px: _Optional[int] = ..., image_width_px: _Optional[int] = ..., sample_rate_hz: _Optional[int] = ..., segment_sec: _Optional[float] = ..., has_localizer: _Optional[bool] = ..., reloads: _Optional[int] = ...) -> None: ...

class ReloadIndexRequest(_message.Message):
    __slots__ = ("bundle_path",)
    BUNDLE_PATH_FIELD_NUMBER: _ClassVar[int]
    bundle_path: str
    def __init__(self, bundle_path: _Optional[str] = ...) -> None: ...

class ReloadIndexResponse(_message.Message):
    __slots__ = ("previous_bundle_id", "bundle_id", "bundle_path")
    PREVIOUS_BUNDLE_ID_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_ID_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_PATH_FIELD_NUMBER: _ClassVar[int]
    previous_bundle_id: str
    bundle_id: str
    bundle_path: str
    def __init__(self, previous_bundle_id: _Optional[str] = ..., bundle_id: _Optional[str] = ..., bundle_path: _Optional[str] = ...) -> None: ...
