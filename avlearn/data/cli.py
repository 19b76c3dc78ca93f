"""Data subcommands: ``avlearn synth`` (synthetic world) and ``avlearn prepare`` (decode once into shards).

Also runnable alone: ``python -m avlearn.data.cli prepare --data SRC --out DIR``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys


def register(sub) -> None:
    """Add ``synth`` and ``prepare`` to an argparse subparsers object."""
    p = sub.add_parser("synth", help="generate a synthetic world: audio-visual instance world (videos, labels, boxes, splits) or motion world")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--kind", choices=("av", "motion"), default="av", help="av: sounding families of instances; motion: categories are kinds of motion")
    p.add_argument("--videos", type=int, default=None, help="number of videos (default: av 64, motion 400)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seconds", type=float, default=None, help="video length in seconds (default: av 10, motion 8)")
    p.add_argument("--fps", type=int, default=25)
    p.add_argument("--size", type=int, default=None, help="frame size in pixels, square (default: av 128, motion 64)")
    p.add_argument("--sample-rate", type=int, default=16000, help="audio rate in Hz")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument(
        "--distractors",
        type=int,
        default=None,
        help="av: at most N silent distractors per video (default 2); motion: N extra objects moving as other kinds (default 0)",
    )
    av = p.add_argument_group("audio-visual world (--kind av)")
    av.add_argument("--categories", type=int, default=8, help="sounding categories")
    av.add_argument("--instances", type=int, default=24, help="instances per category (1: one template per category, the template-matching world)")
    av.add_argument("--heldout-instances", type=float, default=0.25, help="fraction of each category's instances seen only in splits/test.csv")
    av.add_argument("--heldout-categories", type=int, default=0, help="sounding categories seen only in splits/test_unseen_categories.csv")
    av.add_argument("--ambiguous", action="store_true", help="distractors are silent objects of sounding categories")
    av.add_argument("--davis", type=int, default=4, help="number of DAVIS-style tracking sequences")
    av.add_argument("--no-shared", action="store_true", help="do not use real looks/sounds from ../shared/data")
    p.set_defaults(func=_synth)

    p = sub.add_parser("prepare", help="decode a source once into WebDataset tar shards (resumable)")
    p.add_argument("--data", required=True, help="folder | manifest .csv/.jsonl | AudioSet segments .csv")
    p.add_argument("--out", required=True, help="shard dir (re-run the same command to resume)")
    p.add_argument("--workers", type=int, default=2, help="clips decoded at once (each in its own child process)")
    p.add_argument("--segment-sec", type=float, default=1.0)
    p.add_argument("--hop-sec", type=float, default=1.0)
    p.add_argument("--frame-size", type=int, default=256, help="short side of stored frames in px (0: native)")
    p.add_argument("--sample-rate", type=int, default=16000, help="audio rate in Hz")
    p.add_argument("--frames-per-segment", type=int, default=1)
    p.add_argument("--shard-size", type=int, default=1000, help="target segments per shard")
    p.add_argument("--clips-per-shard", type=int, default=None, help="clips per shard (default: from --shard-size)")
    p.add_argument("--audio-format", choices=("flac", "f16"), default="flac")
    p.add_argument("--allow-no-audio", action="store_true", help="keep files without audio instead of recording NoAudioStream")
    p.add_argument("--timeout-sec", type=float, default=120.0, help="per-file decode time limit")
    p.add_argument("--memory-mb", type=int, default=4096, help="per-file decoder memory cap")
    p.add_argument("--media-dir", default=None, help="AudioSet: folder holding the media")
    p.add_argument("--template", default="{ytid}_{start:.3f}.mp4", help="AudioSet: media file name template")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_prepare)


def _synth(args: argparse.Namespace) -> int:
    given = {"videos": args.videos, "seconds": args.seconds, "size_px": args.size}
    common = {k: v for k, v in given.items() if v is not None} | {
        "seed": args.seed,
        "fps": args.fps,
        "sample_rate_hz": args.sample_rate,
        "workers": args.workers,
    }
    if args.kind == "motion":
        from avlearn.data.motion_world import make_motion_world

        summary = make_motion_world(args.out, distractors=args.distractors or 0, **common)
    else:
        from avlearn.data.synth import make_world

        summary = make_world(
            args.out,
            categories=args.categories,
            instances=args.instances,
            heldout_instances=args.heldout_instances,
            heldout_categories=args.heldout_categories,
            ambiguous=args.ambiguous,
            davis=args.davis,
            use_shared=not args.no_shared,
            max_distractors=2 if args.distractors is None else args.distractors,
            **common,
        )
    print(json.dumps({k: v for k, v in summary.items() if k not in ("videos", "davis", "categories")}, indent=1, default=str))
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from avlearn.data.prepare import PrepareConfigMismatch, prepare
    from avlearn.data.sources import SourceError

    try:
        summary = prepare(
            args.data,
            args.out,
            workers=args.workers,
            segment_sec=args.segment_sec,
            hop_sec=args.hop_sec,
            frame_size_px=args.frame_size,
            sample_rate_hz=args.sample_rate,
            frames_per_segment=args.frames_per_segment,
            shard_size=args.shard_size,
            clips_per_shard=args.clips_per_shard,
            audio_format=args.audio_format,
            allow_no_audio=args.allow_no_audio,
            timeout_sec=args.timeout_sec,
            memory_mb=args.memory_mb,
            media_dir=args.media_dir,
            template=args.template,
            progress=not args.no_progress,
        )
    except (PrepareConfigMismatch, SourceError, FileNotFoundError, ValueError) as exc:
        print(f"avlearn prepare: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m avlearn.data.cli")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
