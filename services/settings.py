"""Server settings: one frozen dataclass, filled from CLI flags (``avlearn serve``) or by tests."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

MiB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """Per-request limits (each has its own status code, see docs/service.md)."""

    max_message_bytes: int = 16 * MiB  # request size; larger → RESOURCE_EXHAUSTED (enforced by gRPC)
    max_image_pixels: int = 20_000_000  # width * height of an image or video frame; larger → INVALID_ARGUMENT
    max_audio_sec: float = 30.0  # audio query duration; longer → INVALID_ARGUMENT
    max_k: int = 1000  # k outside 1..max_k → INVALID_ARGUMENT (k = 0 means default_k)
    default_k: int = 10
    max_heatmap_pixels: int = 1_048_576  # Localize heatmaps are upsampled to the image size, at most this many pixels


@dataclass(frozen=True)
class Settings:
    """Everything ``serve(settings)`` needs.

    ``bundle`` may be None (a jobs-only server: retrieval RPCs answer FAILED_PRECONDITION until
    ReloadIndex loads one); ``checkpoint`` is needed for retrieval and for running embed jobs.
    """

    bundle: Path | None = None
    checkpoint: Path | None = None
    localizer_checkpoint: Path | None = None
    host: str = "0.0.0.0"
    port: int = 50051  # 0 = a free port (see ServerHandle.port)
    metrics_port: int | None = None  # Prometheus /metrics over HTTP; 0 = a free port; None = off
    redis_url: str | None = None  # None → in-process LRU cache + SQLite job store
    auth_token: str | None = None  # bearer token; None = no auth
    auth_all: bool = False  # require the token on every RPC (default: only mutating RPCs)
    max_workers: int = 0  # executor threads for decoding, searches, post-processing; 0 = one per core (at least 2)
    max_queue: int = 1024  # calls admitted at once (running or waiting); past it, RESOURCE_EXHAUSTED
    max_batch: int = 32  # items per model forward pass (searches: 8x this many vectors per FAISS call)
    max_batch_delay_ms: float = 0.0  # how long a lone model item may wait for company while the model is idle
    compute_slots: int = 0  # model forward passes (batches) at once; 0 = cores / torch threads
    job_roots: tuple[Path, ...] = ()  # archives for SubmitEmbedJob must resolve under one of these
    job_output: Path = Path("runs/jobs")  # job outputs: <job_output>/<job_id>/{embeddings,bundle}
    job_db: Path | None = None  # SQLite job store (no Redis); default <job_output>/jobs.sqlite
    job_slots: int = 1  # jobs this process runs at once; 0 = run none (a separate `avlearn worker` does)
    job_workers: int = 2  # run_embed decode workers per job (when the request says 0)
    job_lease_sec: float = 30.0  # a job whose runner stopped heart-beating for this long is resumed elsewhere
    cache_size: int = 4096  # in-process LRU entries
    cache_ttl_sec: float = 600.0
    device: str = "auto"
    grace_sec: float = 5.0  # graceful shutdown: in-flight RPCs get this long to finish
    safe_decode: bool = False  # decode media in a sandboxed child process (slower, crash-proof)
    decode_timeout_sec: float = 20.0  # with safe_decode
    strict_checkpoint: bool = True  # refuse a bundle built by a different checkpoint
    index_in_ram: bool = False  # read FAISS indices into each process instead of memory-mapping them (shared by replicas)
    limits: Limits = field(default_factory=Limits)

    @property
    def job_db_path(self) -> Path:
        return self.job_db or (self.job_output / "jobs.sqlite")


def _int_at_least(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {low}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    return parse


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def add_server_arguments(p: argparse.ArgumentParser) -> None:
    """Flags shared by `avlearn serve` (and, in part, `avlearn worker`)."""
    p.add_argument("--bundle", type=Path, help="index bundle (from `avlearn index build`); needs --checkpoint, the model that embedded it")
    p.add_argument("--checkpoint", type=Path, help="AVE-Net checkpoint (retrieval embeddings; also used by embed jobs)")
    p.add_argument(
        "--index-in-ram",
        action="store_true",
        help="read the bundle's FAISS indices into each replica's RAM (default: memory-mapped, one copy shared by all replicas)",
    )
    p.add_argument("--localizer-checkpoint", type=Path, help="AVOL-Net checkpoint for Localize")
    p.add_argument("--host", default="0.0.0.0", help="interface to listen on (127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=50051, help="gRPC port (0: a free one, printed at start)")
    p.add_argument("--metrics-port", type=int, default=None, help="Prometheus /metrics port (default: off)")
    p.add_argument("--redis-url", default=None, help="redis://host:6379/0 (default: in-process cache + SQLite job store)")
    p.add_argument("--auth-token-file", type=Path, help="file holding the bearer token clients must send")
    p.add_argument("--auth-all", action="store_true", help="require the token on every RPC, not only mutating ones")
    p.add_argument(
        "--max-workers", type=_int_at_least(0), default=0, help="executor threads for decoding, searches and post-processing (0 = one per core, at least 2)"
    )
    p.add_argument(
        "--max-queue", type=_int_at_least(1), default=1024, help="calls admitted at once, running or waiting; more are refused with RESOURCE_EXHAUSTED"
    )
    p.add_argument("--max-batch", type=_int_at_least(1), default=32, help="queries per model forward pass (dynamic batching; searches: 8x this per FAISS call)")
    p.add_argument(
        "--max-batch-delay-ms", type=_non_negative, default=0.0,
        help="how long a lone query waits for others to share its forward pass while the model is idle (0 = never; under load batches fill anyway)",
    )  # fmt: skip
    p.add_argument("--compute-slots", type=_int_at_least(0), default=0, help="model forward passes at once; the rest queue (0 = cores / torch threads)")
    p.add_argument(
        "--job-root",
        type=Path,
        action="append",
        default=[],
        help="folder embed jobs may read archives from (repeatable; `avlearn jobs submit` is refused without one)",
    )
    p.add_argument("--job-output", type=Path, default=Path("runs/jobs"), help="where embed jobs write embeddings and bundles")
    p.add_argument("--job-slots", type=int, default=1, help="jobs run by this process at once (0 = none)")
    p.add_argument("--job-workers", type=int, default=2, help="decode workers per embed job")
    p.add_argument("--job-lease-sec", type=float, default=30.0, help="a job whose runner stopped heart-beating this long is resumed elsewhere")
    p.add_argument("--cache-size", type=int, default=4096, help="in-process query-cache entries (0 = no cache; ignored with --redis-url)")
    p.add_argument("--cache-ttl-sec", type=float, default=600.0, help="query-cache entry lifetime in seconds")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--safe-decode", action="store_true", help="decode query media in a sandboxed child process")
    p.add_argument("--max-image-pixels", type=int, default=Limits.max_image_pixels, help="largest query image (width x height); larger is INVALID_ARGUMENT")
    p.add_argument("--max-audio-sec", type=float, default=Limits.max_audio_sec, help="longest query audio in seconds")
    p.add_argument("--max-k", type=int, default=Limits.max_k, help="most hits one query may ask for")


def settings_from_args(args: argparse.Namespace) -> Settings:
    token = None
    if getattr(args, "auth_token_file", None):
        token = Path(args.auth_token_file).read_text().strip() or None
        if token is None:
            raise ValueError(f"auth token file {args.auth_token_file} is empty")
    return Settings(
        bundle=args.bundle,
        checkpoint=args.checkpoint,
        localizer_checkpoint=args.localizer_checkpoint,
        host=args.host,
        port=args.port,
        metrics_port=args.metrics_port,
        redis_url=args.redis_url,
        auth_token=token,
        auth_all=args.auth_all,
        max_workers=args.max_workers,
        max_queue=args.max_queue,
        max_batch=args.max_batch,
        max_batch_delay_ms=args.max_batch_delay_ms,
        compute_slots=args.compute_slots,
        job_roots=tuple(args.job_root),
        job_output=args.job_output,
        job_slots=args.job_slots,
        job_workers=args.job_workers,
        job_lease_sec=args.job_lease_sec,
        cache_size=args.cache_size,
        cache_ttl_sec=args.cache_ttl_sec,
        device=args.device,
        safe_decode=args.safe_decode,
        index_in_ram=bool(getattr(args, "index_in_ram", False)),
        limits=Limits(max_image_pixels=args.max_image_pixels, max_audio_sec=args.max_audio_sec, max_k=args.max_k),
    )
