"""``avlearn serve`` (the gRPC server) and ``avlearn worker`` (an embed-job worker without a server)."""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    from services.settings import add_server_arguments

    p = sub.add_parser("serve", help="serve retrieval, localization and embed jobs over gRPC")
    add_server_arguments(p)
    p.add_argument("--grace-sec", type=float, default=5.0, help="graceful-shutdown time for in-flight RPCs")
    p.add_argument(
        "--processes", type=int, default=1,
        help="server processes sharing the port (SO_REUSEPORT; one GIL each, see services/replicas.py); jobs run in the first",
    )  # fmt: skip
    p.set_defaults(func=_serve)

    w = sub.add_parser("worker", help="run embed jobs from the shared job store (Redis or SQLite), without serving RPCs")
    w.add_argument("--redis-url", default=None, help="redis://host:6379/0 job store shared with the server (default: the SQLite store in --job-output)")
    w.add_argument("--job-output", type=_path, default=_path("runs/jobs"), help="where embed jobs write embeddings and bundles (the server's --job-output)")
    w.add_argument("--job-slots", type=int, default=1, help="jobs run at once")
    w.add_argument("--job-lease-sec", type=float, default=30.0, help="a job whose runner stopped heart-beating this long is taken over")
    w.set_defaults(func=_worker)


def _path(text: str):
    from pathlib import Path

    return Path(text)


def _serve(args: argparse.Namespace) -> int:
    import signal

    from avlearn.errors import user_errors
    from services.settings import settings_from_args

    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a reload once serving (run_until_signal); never a kill while starting
    _check_serve_args(args)
    with user_errors(ValueError, FileNotFoundError):
        settings = settings_from_args(args)
    if args.processes > 1:
        from services.supervisor import run_replicas

        return run_replicas(settings, args.processes, args.grace_sec)
    from avlearn.checkpoint import CheckpointError
    from services.server import run_until_signal, serve

    with user_errors(CheckpointError, FileNotFoundError):
        handle = serve(settings)
    print(f"avlearn server listening on {settings.host}:{handle.port}" + (f", metrics on :{handle.metrics_port}" if handle.metrics_port else ""), flush=True)
    run_until_signal(handle, args.grace_sec)
    return 0


def _check_serve_args(args: argparse.Namespace) -> None:
    """The mistakes `serve` would otherwise start with: nothing to serve, a bundle without its model, paths that do not exist."""
    from avlearn.errors import UserError, require_path

    if args.bundle is None and args.checkpoint is None:
        raise UserError("nothing to serve: give --bundle BUNDLE --checkpoint CHECKPOINT (search), or --checkpoint CHECKPOINT --job-root DIR (embed jobs only)")
    if args.bundle is not None:
        require_path(args.bundle, "an index bundle from `avlearn index build`", "--bundle", kind="dir")
        if args.checkpoint is None:
            raise UserError("--bundle needs --checkpoint: the AVE-Net checkpoint that embedded the bundle (it embeds the queries)")
    elif not args.job_root:
        raise UserError("without --bundle the server only runs embed jobs: give --bundle BUNDLE for search, or --job-root DIR for the archives jobs may read")
    require_path(args.checkpoint, "an AVE-Net checkpoint dir", "--checkpoint")
    if args.localizer_checkpoint is not None:
        require_path(args.localizer_checkpoint, "an AVOL-Net checkpoint dir", "--localizer-checkpoint")
    if args.auth_token_file is not None:
        require_path(args.auth_token_file, "a file holding the bearer token", "--auth-token-file", kind="file")
    for root in args.job_root:
        require_path(root, "a folder embed jobs may read", "--job-root", kind="dir")
    if args.processes < 1:
        raise UserError(f"--processes must be >= 1, got {args.processes}")


def _worker(args: argparse.Namespace) -> int:
    from services.server import run_worker
    from services.settings import Settings

    run_worker(Settings(redis_url=args.redis_url, job_output=args.job_output, job_slots=args.job_slots, job_lease_sec=args.job_lease_sec))
    return 0
