"""`avlearn embed` and `avlearn index build|info`: thin shells over avlearn.pipeline.embed / avlearn.index.build."""

from __future__ import annotations

import argparse
import json
import signal
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("embed", help="batch-embed a video archive into resumable embedding shards")
    p.add_argument("--checkpoint", required=True, help="AVE-Net checkpoint dir (or its model.safetensors)")
    p.add_argument("--data", required=True, help="raw source (folder | manifest .csv/.jsonl | AudioSet segments csv) or a shard dir made by `avlearn prepare`")
    p.add_argument("--out", required=True, help="embeddings dir (re-run the same command to resume)")
    p.add_argument("--engine", choices=("local", "ray"), default="local", help="local: sandboxed decoder threads + in-process model; ray: Ray Data")
    p.add_argument("--workers", type=int, default=2, help="parallel decoders")
    p.add_argument("--segment-sec", type=float, default=1.0, help="segment length in seconds (one vector per modality per segment)")
    p.add_argument("--hop-sec", type=float, default=1.0, help="seconds between segment starts")
    p.add_argument("--batch-size", type=int, default=64, help="segments per forward pass")
    p.add_argument("--files-per-shard", type=int, default=16, help="clips per work unit / output shard (raw sources; a shard dir's unit is one input tar)")
    p.add_argument("--dtype", choices=("float16", "float32"), default="float16", help="stored vector precision")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--unsafe", action="store_true", help="decode in-process (no sandboxed child per file)")
    p.add_argument("--ray-address", default=None, help="join an existing Ray cluster (default: start a local one)")
    p.add_argument("--ray-actors", type=int, default=1, help="model actors (one GPU each when present)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_embed)

    idx = sub.add_parser("index", help="build or inspect FAISS index bundles")
    isub = idx.add_subparsers(dest="index_command", metavar="ACTION", required=True)
    b = isub.add_parser("build", help="embedding shards -> FAISS bundle (published atomically)")
    b.add_argument("--embeddings", required=True, help="embeddings dir written by `avlearn embed`")
    b.add_argument("--out", required=True, help="bundle path: a new build is published as a new version beside the served one (a symlink flips)")
    b.add_argument("--factory", default="auto", help="'auto' (by size and memory budget) or a FAISS factory string")
    b.add_argument("--memory-budget-gb", type=float, default=None, help="largest index to build, in GB (default: no limit)")
    b.add_argument("--gpu", choices=("auto", "on", "off"), default="auto", help="build on a GPU (auto: when FAISS sees one)")
    b.add_argument("--target-recall", type=float, default=0.95, help="tune search parameters to this recall@10 against exact search")
    b.add_argument("--queries", type=int, default=500, help="held-out queries for recall tuning")
    b.add_argument("--redis-url", default=None, help="also register manifest + segment metadata in Redis")
    b.set_defaults(func=_build)
    i = isub.add_parser("info", help="print a bundle's manifest")
    i.add_argument("bundle", help="bundle path")
    i.set_defaults(func=_info)


def _embed(args: argparse.Namespace) -> int:
    from avlearn.checkpoint import CheckpointError
    from avlearn.data.sources import SourceError
    from avlearn.errors import count_reasons, require_path, user_errors, work_summary
    from avlearn.pipeline.embed import run_embed

    require_path(args.checkpoint, "an AVE-Net checkpoint dir from `avlearn train avc`", "--checkpoint")
    require_path(args.data, "the videos to embed", "--data")
    _require_media(args.data)
    stop = {"flag": False}

    def on_signal(signum, frame):  # first Ctrl-C / SIGTERM: finish the current file, leave a resumable state
        if stop["flag"]:
            raise KeyboardInterrupt
        stop["flag"] = True
        print("stopping after the current file (again to abort)", file=sys.stderr)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    with user_errors(CheckpointError, SourceError, ValueError, FileNotFoundError):
        summary = run_embed(
            args.checkpoint,
            args.data,
            args.out,
            engine=args.engine,
            workers=args.workers,
            segment_sec=args.segment_sec,
            hop_sec=args.hop_sec,
            batch_size=args.batch_size,
            files_per_shard=args.files_per_shard,
            dtype=args.dtype,
            device=args.device,
            safe=not args.unsafe,
            ray_address=args.ray_address,
            ray_actors=args.ray_actors,
            show_progress=not args.no_progress,
            should_stop=lambda: stop["flag"],
        )
    print(json.dumps(summary, indent=1, sort_keys=True))
    seen, failed = summary["files_total"] + _missing(summary), summary["errors"]
    print(work_summary("embed", seen, seen - failed, failed, count_reasons(summary["errors_file"]), summary["errors_file"]), file=sys.stderr)
    if not summary["complete"]:
        return 3
    return 0 if summary["segments_total"] > 0 else 1


def _require_media(data: str) -> None:
    """A raw source that lists no file at all is a mistake (the wrong folder): say so before loading the model."""
    from avlearn.data.sources import SourceError, is_shard_dir, load_source
    from avlearn.errors import UserError, user_errors

    if is_shard_dir(data):
        return
    with user_errors(SourceError, ValueError, FileNotFoundError):
        source = load_source(data)
    if not source.spans and not source.missing:
        raise UserError(f"--data {data} holds no files to embed; point --data at a folder of videos, a manifest or a prepared shard dir")


def _missing(summary: dict) -> int:
    """Files the source listed but never tried (hidden, not media, missing): counted in errors, not in files_total."""
    from avlearn.errors import count_reasons

    skipped = ("MissingMedia", "HiddenFile", "BrokenLink", "NotMedia")
    return sum(n for k, n in count_reasons(summary["errors_file"]).items() if k in skipped)


def _build(args: argparse.Namespace) -> int:
    from avlearn.errors import require_path, user_errors
    from avlearn.index.build import build_bundle, bundle_info
    from avlearn.index.faiss_index import MemoryBudgetError

    require_path(args.embeddings, "an embeddings dir written by `avlearn embed`", "--embeddings", kind="dir")
    with user_errors(ValueError, FileNotFoundError, MemoryBudgetError):
        out = build_bundle(
            args.embeddings,
            args.out,
            factory=args.factory,
            memory_budget_gb=args.memory_budget_gb,
            gpu=args.gpu,
            target_recall=args.target_recall,
            queries=args.queries,
            redis_url=args.redis_url,
        )
    print(json.dumps(bundle_info(out), indent=1, sort_keys=True))
    return 0


def _info(args: argparse.Namespace) -> int:
    from avlearn.errors import require_path, user_errors
    from avlearn.index.build import bundle_info

    require_path(args.bundle, "an index bundle from `avlearn index build`", "BUNDLE", kind="dir")
    with user_errors(ValueError, FileNotFoundError):
        info = bundle_info(args.bundle)
    print(json.dumps(info, indent=1, sort_keys=True))
    return 0
