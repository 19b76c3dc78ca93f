"""Client subcommands: ``avlearn query``, ``avlearn localize``, ``avlearn jobs`` (grpc + numpy only, no torch)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--server", default=None, help="HOST:PORT (default: $AVLEARN_SERVER or localhost:50051)")
    common.add_argument("--token-file", type=Path, default=None, help="bearer token file (default: $AVLEARN_TOKEN)")
    common.add_argument("--timeout-sec", type=float, default=30.0, help="deadline of each call, retries included")
    common.add_argument("--json", action="store_true", help="print JSON")

    q = sub.add_parser("query", help="cross-modal search against a running server")
    qsub = q.add_subparsers(dest="query_kind", metavar="KIND", required=True)
    for name, what, helptext in (
        ("image2audio", "IMAGE", "sounds that match an image (JPEG/PNG, or a video with --time)"),
        ("audio2image", "AUDIO", "frames that match a sound (WAV/FLAC/MP3/OGG, or a video with --time)"),
        ("image2image", "IMAGE", "similar images"),
        ("audio2audio", "AUDIO", "similar sounds"),
    ):
        p = qsub.add_parser(name, parents=[common], help=helptext)
        p.add_argument("media", metavar=what, help="file path, or seg:ID for an indexed segment")
        p.add_argument("-k", type=int, default=10, help="number of hits")
        p.add_argument("--time", type=float, default=None, help="treat MEDIA as a video and use this time (s)")
        p.add_argument(
            "--group-by-clip",
            action=argparse.BooleanOptionalAction,
            default=True,
            help="list the top-k clips, each as its best segment (default); --no-group-by-clip lists the top-k segments",
        )
        p.set_defaults(func=_query, kind=name)

    loc = sub.add_parser("localize", parents=[common], help="heatmap of the sounding object")
    loc.add_argument("--audio", required=True, help="audio file, or seg:ID")
    loc.add_argument("--image", required=True, help="image file, or seg:ID")
    loc.add_argument("--out", type=Path, default=None, help="write the overlay PNG here")
    loc.set_defaults(func=_localize)

    jobs = sub.add_parser("jobs", help="batch-embed jobs on the server")
    jsub = jobs.add_subparsers(dest="jobs_cmd", metavar="CMD", required=True)
    s = jsub.add_parser("submit", parents=[common], help="embed an archive that lies on the server")
    s.add_argument("archive", help="server-side path under a configured job root")
    s.add_argument("--no-bundle", action="store_true", help="only embed; do not build an index bundle")
    s.add_argument("--job-id", default=None, help="the job's id (default: a new random one); submitting an existing id returns that job")
    s.add_argument("--watch", action="store_true", help="follow progress until the job ends")
    s.set_defaults(func=_jobs_submit)
    for name, fn, helptext in (
        ("status", "_jobs_status", "show a job"),
        ("watch", "_jobs_watch", "follow a job's progress"),
        ("cancel", "_jobs_cancel", "cancel a job"),
    ):
        p = jsub.add_parser(name, parents=[common], help=helptext)
        p.add_argument("job_id", help="the id `jobs submit` printed")
        p.set_defaults(func=globals()[fn])


def _client(args: argparse.Namespace):
    from avlearn_client.client import Client

    token = args.token_file.read_text().strip() if args.token_file else os.environ.get("AVLEARN_TOKEN")
    return Client(args.server, token=token, timeout_sec=args.timeout_sec)


def _source(text: str, time_sec: float | None = None) -> dict:
    """CLI media argument → keyword arguments of a Client call."""
    if text.startswith("seg:"):
        return {"segment_id": int(text[4:])}
    if time_sec is not None:
        return {"video": Path(text), "time_sec": time_sec}
    return {"data": Path(text)}


def _fail(exc: Exception, args: argparse.Namespace | None = None) -> int:
    """A failed call: one line on stderr, exit code 1 (the server's answer, e.g. INVALID_ARGUMENT: ...)."""
    text = " ".join(str(exc).split())
    if getattr(exc, "code", "") == "UNAVAILABLE" and args is not None:
        text += f" (is `avlearn serve` running at {args.server or os.environ.get('AVLEARN_SERVER') or 'localhost:50051'}? pass --server HOST:PORT)"
    print(f"{_prog(args)}: error: {text}", file=sys.stderr)
    return 1


def _usage(args: argparse.Namespace, message: str) -> int:
    """A user mistake found before calling the server: one line naming the fix, exit code 2."""
    print(f"{_prog(args)}: error: {message}", file=sys.stderr)
    return 2


def _prog(args: argparse.Namespace | None) -> str:
    parser = getattr(args, "_parser", None)
    return parser.prog if parser is not None else "avlearn"


def _check_inputs(args: argparse.Namespace, *media: tuple[str, str]) -> str | None:
    """The first mistake among the (flag, value) media arguments and the token file, or None."""
    for flag, text in media:
        if text.startswith("seg:"):
            if not text[4:].isdigit():
                return f"{flag} {text!r}: a segment is seg:ID with a numeric ID (from a hit's `seg` column)"
        elif not Path(text).is_file():
            return f"{flag} {text}: no such file (give an image/audio/video file, or seg:ID for an indexed segment)"
    if args.token_file is not None and not args.token_file.is_file():
        return f"--token-file {args.token_file}: no such file"
    return None


def _query(args: argparse.Namespace) -> int:
    from avlearn_client.types import AvlearnError

    mistake = _check_inputs(args, (args.kind.split("2")[0].upper(), args.media))
    if mistake:
        return _usage(args, mistake)
    src = _source(args.media, args.time)
    data = src.pop("data", None)
    try:
        with _client(args) as c:
            opts = {"k": args.k, "group_by_clip": args.group_by_clip, **src}
            if args.kind == "image2audio":
                res = c.search_audio_by_image(data, **opts)
            elif args.kind == "audio2image":
                res = c.search_images_by_audio(data, **opts)
            else:
                res = c.search_similar("image" if args.kind == "image2image" else "audio", data, **opts)
    except (AvlearnError, OSError, ValueError) as exc:
        return _fail(exc, args)
    if args.json:
        print(json.dumps({"bundle_id": res.bundle_id, "cached": res.cached, "hits": [h.__dict__ for h in res.hits]}, default=list))
        return 0
    print(f"bundle {res.bundle_id}  ({res.timings.total_ms:.1f} ms{', cached' if res.cached else ''})")
    for rank, h in enumerate(res.hits, 1):
        print(f"{rank:3d}  {h.score:+.4f}  seg {h.segment_id:<8d} {h.source} @ {h.start_sec:.2f}s  {';'.join(h.labels)}")
    return 0


def _localize(args: argparse.Namespace) -> int:
    from avlearn_client.types import AvlearnError

    mistake = _check_inputs(args, ("--audio", args.audio), ("--image", args.image))
    if mistake:
        return _usage(args, mistake)
    a, i = _source(args.audio), _source(args.image)
    try:
        with _client(args) as c:
            res = c.localize(
                a.get("data"), i.get("data"), audio_segment_id=a.get("segment_id"), image_segment_id=i.get("segment_id"), overlay=args.out is not None
            )
    except (AvlearnError, OSError, ValueError) as exc:
        return _fail(exc, args)
    if args.out is not None and res.overlay_png:
        args.out.write_bytes(res.overlay_png)
    out = {
        "score": res.score,
        "peak_yx": res.peak_yx,
        "grid_shape": list(res.grid.shape),
        "heatmap_shape": list(res.heatmap.shape),
        "overlay": str(args.out or ""),
    }
    print(
        json.dumps(out)
        if args.json
        else f"score {res.score:.4f}  peak (y, x) = ({res.peak_yx[0]:.3f}, {res.peak_yx[1]:.3f})  grid {res.grid.shape}"
        + (f"  → {args.out}" if args.out else "")
    )
    return 0


def _print_job(job, as_json: bool) -> None:
    if as_json:
        print(json.dumps(job.__dict__, default=str), flush=True)
    else:
        extra = f"  error: {job.error}" if job.error else ""
        print(f"{job.job_id}  {job.state:<9s} {100 * job.progress:5.1f}%  files {job.files_done}/{job.files_total}  segments {job.segments}{extra}", flush=True)


def _jobs_submit(args: argparse.Namespace) -> int:
    from avlearn_client.types import AvlearnError

    if mistake := _check_inputs(args):
        return _usage(args, mistake)
    try:
        with _client(args) as c:
            job = c.submit_embed_job(args.archive, build_bundle=not args.no_bundle, job_id=args.job_id)
            _print_job(job, args.json)
            if args.watch:
                for update in c.watch_job(job.job_id):
                    _print_job(update, args.json)
    except AvlearnError as exc:
        if exc.code == "NOT_FOUND" and not os.path.isabs(args.archive):
            exc = AvlearnError(exc.code, f"{exc.message} (a relative ARCHIVE is taken under the server's first --job-root; give an absolute path)")
        return _fail(exc, args)
    return 0 if job.state != "failed" else 1


def _jobs_status(args: argparse.Namespace) -> int:
    from avlearn_client.types import AvlearnError

    if mistake := _check_inputs(args):
        return _usage(args, mistake)
    try:
        with _client(args) as c:
            _print_job(c.get_job(args.job_id), args.json)
    except AvlearnError as exc:
        return _fail(exc, args)
    return 0


def _jobs_watch(args: argparse.Namespace) -> int:
    from avlearn_client.types import AvlearnError

    if mistake := _check_inputs(args):
        return _usage(args, mistake)
    job = None
    try:
        with _client(args) as c:
            for job in c.watch_job(args.job_id):
                _print_job(job, args.json)
    except AvlearnError as exc:
        return _fail(exc, args)
    return 0 if job is None or job.state != "failed" else 1


def _jobs_cancel(args: argparse.Namespace) -> int:
    from avlearn_client.types import AvlearnError

    if mistake := _check_inputs(args):
        return _usage(args, mistake)
    try:
        with _client(args) as c:
            _print_job(c.cancel_job(args.job_id), args.json)
    except AvlearnError as exc:
        return _fail(exc, args)
    return 0
