from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Modality(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODALITY_UNSPECIFIED: _ClassVar[Modality]
    MODALITY_AUDIO: _ClassVar[Modality]
    MODALITY_IMAGE: _ClassVar[Modality]

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_QUEUED: _ClassVar[JobState]
    JOB_STATE_RUNNING: _ClassVar[JobState]
    JOB_STATE_SUCCEEDED: _ClassVar[JobState]
    JOB_STATE_FAILED: _ClassVar[JobState]
    JOB_STATE_CANCELLED: _ClassVar[JobState]
MODALITY_UNSPECIFIED: Modality
MODALITY_AUDIO: Modality
MODALITY_IMAGE: Modality
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_QUEUED: JobState
JOB_STATE_RUNNING: JobState
JOB_STATE_SUCCEEDED: JobState
JOB_STATE_FAILED: JobState
JOB_STATE_CANCELLED: JobState

class MediaInput(_message.Message):
    __slots__ = ("data", "video", "segment_id", "vector")
    DATA_FIELD_NUMBER: _ClassVar[int]
    VIDEO_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_ID_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    video: VideoAt
    segment_id: int
    vector: Vector
    def __init__(self, data: _Optional[bytes] = ..., video: _Optional[_Union[VideoAt, _Mapping]] = ..., segment_id: _Optional[int] = ..., vector: _Optional[_Union[Vector, _Mapping]] = ...) -> None: ...

class VideoAt(_message.Message):
    __slots__ = ("data", "time_sec")
    DATA_FIELD_NUMBER: _ClassVar[int]
    TIME_SEC_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    time_sec: float
    def __init__(self, data: _Optional[bytes] = ..., time_sec: _Optional[float] = ...) -> None: ...

class Vector(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class Hit(_message.Message):
    __slots__ = ("segment_id", "score", "clip_id", "source", "start_sec", "labels")
    SEGMENT_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    CLIP_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    START_SEC_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    segment_id: int
    score: float
    clip_id: str
    source: str
    start_sec: float
    labels: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, segment_id: _Optional[int] = ..., score: _Optional[float] = ..., clip_id: _Optional[str] = ..., source: _Optional[str] = ..., start_sec: _Optional[float] = ..., labels: _Optional[_Iterable[str]] = ...) -> None: ...

class Timings(_message.Message):
    __slots__ = ("decode_ms", "embed_ms", "search_ms", "total_ms")
    DECODE_MS_FIELD_NUMBER: _ClassVar[int]
    EMBED_MS_FIELD_NUMBER: _ClassVar[int]
    SEARCH_MS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    decode_ms: float
    embed_ms: float
    search_ms: float
    total_ms: float
    def __init__(self, decode_ms: _Optional[float] = ..., embed_ms: _Optional[float] = ..., search_ms: _Optional[float] = ..., total_ms: _Optional[float] = ...) -> None: ...

class FloatMatrix(_message.Message):
    __slots__ = ("height", "width", "values")
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    height: int
    width: int
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, height: _Optional[int] = ..., width: _Optional[int] = ..., values: _Optional[_Iterable[float]] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("job_id", "state", "archive_path", "output_path", "progress", "files_done", "files_total", "segments", "error", "created_unix", "updated_unix", "summary_json", "cancel_requested", "attempts")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ARCHIVE_PATH_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_PATH_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    FILES_DONE_FIELD_NUMBER: _ClassVar[int]
    FILES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_FIELD_NUMBER: _ClassVar[int]
    UPDATED_UNIX_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_JSON_FIELD_NUMBER: _ClassVar[int]
    CANCEL_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    state: JobState
    archive_path: str
    output_path: str
    progress: float
    files_done: int
    files_total: int
    segments: int
    error: str
    created_unix: float
    updated_unix: float
    summary_json: str
    cancel_requested: bool
    attempts: int
    def __init__(self, job_id: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., archive_path: _Optional[str] = ..., output_path: _Optional[str] = ..., progress: _Optional[float] = ..., files_done: _Optional[int] = ..., files_total: _Optional[int] = ..., segments: _Optional[int] = ..., error: _Optional[str] = ..., created_unix: _Optional[float] = ..., updated_unix: _Optional[float] = ..., summary_json: _Optional[str] = ..., cancel_requested: _Optional[bool] = ..., attempts: _Optional[int] = ...) -> None: ...
