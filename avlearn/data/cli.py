"""Data subcommands: ``avlearn synth`` (synthetic world) and ``avlearn prepare`` (decode once into shards).

Also runnable alone: ``python -m avlearn.data.cli prepare --data SRC --out DIR``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from avlearn.errors import UserError, require_path, user_errors

SYNTH_MARKER = "synth_settings.json"  # the settings of the world in --out (resume / refuse, avlearn.outdir)


def register(sub) -> None:
    """Add ``synth`` and ``prepare`` to an argparse subparsers object."""
    p = sub.add_parser("synth", help="generate a synthetic world: audio-visual instance world (videos, labels, boxes, splits) or motion world")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--kind", choices=("av", "motion"), default="av", help="av: sounding families of instances; motion: categories are kinds of motion")
    p.add_argument("--videos", type=int, default=None, help="number of videos (default: av 64, motion 400)")
    p.add_argument("--seed", type=int, default=0, help="random seed (the world is a function of its settings)")
    p.add_argument("--seconds", type=float, default=None, help="video length in seconds (default: av 10, motion 8)")
    p.add_argument("--fps", type=int, default=25, help="video frame rate")
    p.add_argument("--size", type=int, default=None, help="frame size in pixels, square (default: av 128, motion 64)")
    p.add_argument("--sample-rate", type=int, default=16000, help="audio rate in Hz")
    p.add_argument("--workers", type=int, default=2, help="processes generating videos (the output does not depend on it)")
    p.add_argument("--overwrite", action="store_true", help="write into an --out that holds another world or other files (rewrites videos in place)")
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
    p.add_argument("--segment-sec", type=float, default=1.0, help="segment length in seconds")
    p.add_argument("--hop-sec", type=float, default=1.0, help="seconds between segment starts")
    p.add_argument("--frame-size", type=int, default=256, help="short side of stored frames in px (0: native)")
    p.add_argument("--sample-rate", type=int, default=16000, help="audio rate in Hz")
    p.add_argument("--frames-per-segment", type=int, default=1, help="frames stored per segment (evenly spaced)")
    p.add_argument("--shard-size", type=int, default=1000, help="target segments per shard")
    p.add_argument("--clips-per-shard", type=int, default=None, help="clips per shard (default: from --shard-size)")
    p.add_argument("--audio-format", choices=("flac", "f16"), default="flac", help="stored audio: lossless FLAC or raw float16")
    p.add_argument("--allow-no-audio", action="store_true", help="keep files without audio instead of recording NoAudioStream")
    p.add_argument("--timeout-sec", type=float, default=120.0, help="per-file decode time limit")
    p.add_argument("--memory-mb", type=int, default=4096, help="per-file decoder memory cap")
    p.add_argument("--media-dir", default=None, help="AudioSet: folder holding the media")
    p.add_argument("--template", default="{ytid}_{start:.3f}.mp4", help="AudioSet: media file name template")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--kind",
        choices=("segments", "frames"),
        default="segments",
        help="segments: audio-visual segments; frames: one frame sequence per clip (temporal tasks, colorization)",
    )
    fr = p.add_argument_group("frame sequences (--kind frames; --clips-per-shard defaults to 50)")
    fr.add_argument("--fps", type=float, default=8.0, help="frames per second kept, on each video's frame grid (0: every frame)")
    fr.add_argument("--short-px", type=int, default=128, help="short side of stored frames in px (0: native)")
    fr.add_argument("--max-frames", type=int, default=None, help="at most this many frames per clip (default: all)")
    p.set_defaults(func=_prepare)


def _synth(args: argparse.Namespace) -> int:
    from avlearn.outdir import claim_output

    given = {"videos": args.videos, "seconds": args.seconds, "size_px": args.size}
    common = {k: v for k, v in given.items() if v is not None} | {
        "seed": args.seed,
        "fps": args.fps,
        "sample_rate_hz": args.sample_rate,
        "workers": args.workers,
    }
    settings = {k: v for k, v in vars(args).items() if k not in ("func", "_parser", "verbose", "workers", "overwrite", "command")}
    how = claim_output(args.out, settings, what="synthetic world", marker=SYNTH_MARKER, overwrite=args.overwrite)
    world_json = Path(args.out) / "world.json"
    if how == "resume" and world_json.is_file():
        summary = json.loads(world_json.read_text())
        print(f"{args.out} already holds this world (same settings): nothing to do", file=sys.stderr)
    elif args.kind == "motion":
        from avlearn.data.motion_world import make_motion_world

        with user_errors(ValueError):
            summary = make_motion_world(args.out, distractors=args.distractors or 0, **common)
    else:
        from avlearn.data.synth import make_world

        with user_errors(ValueError):
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
    from avlearn.data.shards import ERRORS_JSONL
    from avlearn.data.sources import SourceError
    from avlearn.errors import count_reasons, work_summary

    require_path(args.data, "the source to decode", "--data")
    with user_errors(PrepareConfigMismatch, SourceError, FileNotFoundError, ValueError):
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
            kind=args.kind,
            fps=args.fps,
            short_px=args.short_px,
            max_frames=args.max_frames,
        )
    print(json.dumps(summary, indent=1))
    errors_file = Path(args.out) / ERRORS_JSONL
    line = work_summary("prepare", summary["clips"], summary["clips_ok"], summary["clips"] - summary["clips_ok"], count_reasons(errors_file), errors_file)
    print(line, file=sys.stderr)
    if summary["clips"] == 0:
        raise UserError(f"--data {args.data} holds no media files; point --data at a folder of videos, a manifest or an AudioSet csv")
    return 0 if summary.get("segments", summary.get("sequences", 0)) > 0 else 1


def main(argv: list[str] | None = None) -> int:
    from avlearn.cli import Parser, configure_logging, dispatch, parse

    parser = Parser(prog="python -m avlearn.data.cli")
    register(parser.add_subparsers(dest="command", required=True))
    try:
        args = parse(parser, sys.argv[1:] if argv is None else list(argv))
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    configure_logging(False)
    return dispatch(parser, args)


if __name__ == "__main__":
    sys.exit(main())
