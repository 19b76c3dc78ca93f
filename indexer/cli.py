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
    p.add_argument("--engine", choices=("local", "ray"), default="local")
    p.add_argument("--workers", type=int, default=2, help="parallel decoders")
    p.add_argument("--segment-sec", type=float, default=1.0)
    p.add_argument("--hop-sec", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=64, help="segments per forward pass")
    p.add_argument("--files-per-shard", type=int, default=16, help="clips per work unit / output shard (raw sources; a shard dir's unit is one input tar)")
    p.add_argument("--dtype", choices=("float16", "float32"), default="float16")
    p.add_argument("--device", default="auto")
    p.add_argument("--unsafe", action="store_true", help="decode in-process (no sandboxed child per file)")
    p.add_argument("--ray-address", default=None, help="join an existing Ray cluster (default: start a local one)")
    p.add_argument("--ray-actors", type=int, default=1, help="model actors (one GPU each when present)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_embed)

    idx = sub.add_parser("index", help="build or inspect FAISS index bundles")
    isub = idx.add_subparsers(dest="index_command", metavar="ACTION")
    b = isub.add_parser("build", help="embedding shards -> FAISS bundle (published atomically)")
    b.add_argument("--embeddings", required=True)
    b.add_argument("--out", required=True)
    b.add_argument("--factory", default="auto", help="'auto' or a FAISS factory string")
    b.add_argument("--memory-budget-gb", type=float, default=None)
    b.add_argument("--gpu", choices=("auto", "on", "off"), default="auto")
    b.add_argument("--target-recall", type=float, default=0.95)
    b.add_argument("--queries", type=int, default=500, help="held-out queries for recall tuning")
    b.add_argument("--redis-url", default=None, help="also register manifest + segment metadata in Redis")
    b.set_defaults(func=_build)
    i = isub.add_parser("info", help="print a bundle's manifest")
    i.add_argument("bundle")
    i.set_defaults(func=_info)
    idx.set_defaults(func=lambda args: idx.print_help() or 2)


def _embed(args: argparse.Namespace) -> int:
    from avlearn.pipeline.embed import run_embed

    stop = {"flag": False}

    def on_signal(signum, frame):  # first Ctrl-C / SIGTERM: finish the current file, leave a resumable state
        if stop["flag"]:
            raise KeyboardInterrupt
        stop["flag"] = True
        print("stopping after the current file (again to abort)", file=sys.stderr)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
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
    return 0 if summary["complete"] else 3


def _build(args: argparse.Namespace) -> int:
    from avlearn.index.build import build_bundle

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
    from avlearn.index.build import bundle_info

    print(json.dumps(bundle_info(out), indent=1, sort_keys=True))
    return 0


def _info(args: argparse.Namespace) -> int:
    from avlearn.index.build import bundle_info

    print(json.dumps(bundle_info(args.bundle), indent=1, sort_keys=True))
    return 0
