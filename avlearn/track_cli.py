"""``avlearn track``: propagate a first-frame mask through a video with a colorization checkpoint.

    avlearn track --checkpoint C (--frames DIR | --video FILE) --first-mask PNG --out DIR
                  [--topk K] [--radius R] [--refs N] [--scale S] [--features model|lab] [--overlay FILE.png|.mp4]

Writes one DAVIS palette PNG per frame into ``--out`` (named after the frame files,
or 00000.png, ... for a video). ``--features lab`` runs the raw-Lab baseline (no
checkpoint needed). A thin shell over :func:`avlearn.track.track` (a library command, like synth, prepare and eval).
"""

from __future__ import annotations

import argparse


def register(sub) -> None:
    """Add ``track`` to an argparse subparsers object."""
    p = sub.add_parser("track", help="propagate a first-frame object mask through a video (colorization tracking)")
    p.add_argument("--checkpoint", default=None, help="colorizer checkpoint dir (required unless --features lab)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--frames", default=None, help="folder of frame images (sorted by name)")
    src.add_argument("--video", default=None, help="video file")
    p.add_argument("--first-mask", required=True, help="palette PNG of the first frame (object ids; 0 = background)")
    p.add_argument("--out", required=True, help="output folder for the per-frame palette PNGs")
    p.add_argument("--topk", type=int, default=10, help="reference cells kept per target cell")
    p.add_argument("--radius", type=int, default=12, help="local search radius in feature cells")
    p.add_argument("--refs", type=int, default=3, help="previous frames used as references (besides the first)")
    p.add_argument("--scale", type=float, default=1.0, help="resize frames by this factor before feature extraction")
    p.add_argument("--temperature", type=float, default=None, help="softmax temperature (default: the features' own)")
    p.add_argument("--features", choices=("model", "lab"), default="model", help="learned embeddings or the raw-Lab baseline")
    p.add_argument("--overlay", default=None, help="also write the masks over the frames: a .png strip or an .mp4")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    p.set_defaults(func=_track)


def _track(args: argparse.Namespace) -> int:
    from avlearn.checkpoint import CheckpointError
    from avlearn.data.davis import DavisLayoutError
    from avlearn.errors import UserError, user_errors
    from avlearn.media import MediaError
    from avlearn.track import TrackConfig, load_features, track

    if args.features == "model" and not args.checkpoint:
        raise UserError("--checkpoint is required (a colorizer checkpoint dir), or use --features lab")
    with user_errors(ValueError, FileNotFoundError, CheckpointError, DavisLayoutError, MediaError):
        feats = load_features(args.checkpoint, features=args.features, device=args.device)
        cfg = TrackConfig(topk=args.topk, radius=args.radius, refs=args.refs, scale=args.scale, temperature=args.temperature, device=args.device)
        paths = track(features=feats, first_mask=args.first_mask, out_dir=args.out, frames_dir=args.frames, video=args.video, config=cfg)
        if args.overlay:
            from avlearn.viz import overlay_from_dirs

            overlay_from_dirs(args.frames, args.video, args.out, args.overlay)
    print(f"wrote {len(paths)} masks to {args.out}")
    return 0
