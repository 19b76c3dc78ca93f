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
    w.add_argument("--redis-url", default=None)
    w.add_argument("--job-output", type=_path, default=_path("runs/jobs"))
    w.add_argument("--job-slots", type=int, default=1)
    w.add_argument("--job-lease-sec", type=float, default=30.0)
    w.set_defaults(func=_worker)


def _path(text: str):
    from pathlib import Path

    return Path(text)


def _serve(args: argparse.Namespace) -> int:
    import signal

    from services.server import run_until_signal, serve
    from services.settings import settings_from_args

    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a reload once serving (run_until_signal); never a kill while starting
    settings = settings_from_args(args)
    if args.processes > 1:
        from services.supervisor import run_replicas

        return run_replicas(settings, args.processes, args.grace_sec)
    handle = serve(settings)
    print(f"avlearn server listening on {settings.host}:{handle.port}" + (f", metrics on :{handle.metrics_port}" if handle.metrics_port else ""), flush=True)
    run_until_signal(handle, args.grace_sec)
    return 0


def _worker(args: argparse.Namespace) -> int:
    from services.server import run_worker
    from services.settings import Settings

    run_worker(Settings(redis_url=args.redis_url, job_output=args.job_output, job_slots=args.job_slots, job_lease_sec=args.job_lease_sec))
    return 0
