"""Embedding throughput vs decode-only throughput on the same files, in the same run.

Decode-only = the indexer's own decode stage alone (sandboxed ``read_segments`` per file,
``--workers`` threads), so the ratio shows how close the full pipeline (decode + batched
inference + shard writing) gets to decoding being the only cost. Goal: >= 0.8.

    python bench/embed.py --workers 2
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def make_checkpoint(out: Path, preset: str) -> Path:
    import torch

    from avlearn.checkpoint import save_checkpoint
    from avlearn.models import create_model

    torch.manual_seed(0)
    save_checkpoint(out, create_model("ave_net", preset))  # random weights: speed only
    return out


def make_synth(out: Path, videos: int) -> Path:
    try:
        from avlearn.data.synth import make_world

        make_world(out, videos=videos, seconds=10.0, size_px=128, davis=0, workers=2, progress=False)
    except ImportError:  # pragma: no cover - the synth world is part of avlearn.data
        import numpy as np

        from avlearn.media.writer import write_video

        out.mkdir(parents=True, exist_ok=True)
        for i in range(videos):
            t = np.arange(160000) / 16000
            write_video(
                out / f"tone{i}.mp4",
                (np.full((128, 128, 3), (3 * j) % 256, np.uint8) for j in range(250)),
                25,
                audio=(0.3 * np.sin(2 * np.pi * 220 * (i + 1) * t)).astype(np.float32),
                sample_rate_hz=16000,
            )
    return out


def decode_only(data: Path, embedder, workers: int, segment_sec: float) -> dict:
    from avlearn.pipeline.reader import ClipJob, DecodeConfig, decode_clip, list_clips

    clips, _ = list_clips(data)
    cfg = DecodeConfig(tuple(embedder.image_size_px), int(embedder.sample_rate_hz), segment_sec, segment_sec)
    t = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        done = list(pool.map(lambda c: decode_clip(ClipJob(0, 0, c), cfg), clips))
    wall = time.perf_counter() - t
    segs = sum(len(d.segments) for d in done)
    return {
        "files": len(clips),
        "segments": segs,
        "errors": sum(d.error is not None for d in done),
        "wall_sec": round(wall, 2),
        "segments_per_sec": round(segs / wall, 2),
    }


def bench(name: str, data: Path, ckpt: Path, workers: int, batch_size: int, tmp: Path) -> dict:
    from avlearn.embed import Embedder
    from avlearn.pipeline.embed import run_embed

    embedder = Embedder.from_checkpoint(ckpt, device="cpu")
    decode_only(data, embedder, workers, 1.0)  # warm-up: forkserver start, page cache (both runs then see warm files)
    dec = decode_only(data, embedder, workers, 1.0)
    summary = run_embed(ckpt, data, tmp / f"emb-{name}", workers=workers, batch_size=batch_size, device="cpu", show_progress=False)
    ratio = summary["segments_per_sec"] / dec["segments_per_sec"]
    row = {
        "data": name,
        "decode_only": dec,
        "embed": {k: summary[k] for k in ("files_total", "segments", "errors", "files_no_audio", "wall_sec", "segments_per_sec", "stages_sec")},
        "ratio": round(ratio, 3),
    }
    print(
        f"{name:8s} decode-only {dec['segments_per_sec']:8.1f} seg/s | embed {summary['segments_per_sec']:8.1f} seg/s | ratio {ratio:.2f} | stages {summary['stages_sec']}",
        flush=True,
    )
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--preset", default="small")
    ap.add_argument("--synth-videos", type=int, default=48)
    ap.add_argument("--real", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "video"))
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)  # the decoders get the other cores
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        ckpt = make_checkpoint(tmp / "ckpt", args.preset)
        rows = []
        if Path(args.real).is_dir():
            rows.append(bench("real", Path(args.real), ckpt, args.workers, args.batch_size, tmp))
        rows.append(bench("synth", make_synth(tmp / "synth", args.synth_videos), ckpt, args.workers, args.batch_size, tmp))
    print(json.dumps(rows, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
