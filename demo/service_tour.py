"""The demo's tour of the service: start the gRPC server in-process on the demo's bundle, query it
through the real client (image -> sounds per clip, sound -> heatmap), run a batch-embed job over an
archive, and save what the report shows (query frames, hits, sounds, heatmap overlays)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

log = logging.getLogger("demo.run")


def serve_and_query(out: Path, world: Path, bundle: Path, ave: Path, avol: Path, archive: Path, *, seed: int, queries: int) -> dict[str, Any]:
    """Serve ``bundle`` (AVE-Net ``ave``, AVOL-Net ``avol``), query it with ``queries`` held-out frames of ``world`` (seeded), embed ``archive`` as a job."""
    import csv

    import numpy as np

    from avlearn.embed.heatmap import render_overlay
    from avlearn.media import read_audio, read_frames
    from avlearn.media.writer import write_audio
    from avlearn_client import Client
    from services.server import serve
    from services.settings import Settings

    assets = out / "assets"
    if assets.exists():
        shutil.rmtree(assets)
    assets.mkdir()
    settings = Settings(
        bundle=bundle,
        checkpoint=ave,
        localizer_checkpoint=avol,
        host="127.0.0.1",
        port=0,
        job_roots=(archive,),
        job_output=out / "jobs",
    )
    with open(world / "splits" / "test.csv") as f:
        rows = list(csv.DictReader(f))
    rng = np.random.default_rng(seed)
    picks = [rows[i] for i in rng.choice(len(rows), size=min(queries, len(rows)), replace=False)]
    gallery, heatmaps = [], []
    sample_rate = 16000
    handle = serve(settings)
    try:
        with Client(handle.address, timeout_sec=60) as client:
            info = client.index_info()
            sample_rate = info.sample_rate_hz
            for qi, row in enumerate(picks):
                video = (world / "splits" / row["path"]).resolve()
                t = 1.0
                frame = read_frames(video, [t]).images[0]
                img_path = assets / f"query{qi}.png"
                _save_png(frame, img_path)
                res = client.search_audio_by_image(img_path.read_bytes(), k=5, group_by_clip=True)  # 5 clips, each its best segment
                hits = []
                for hi, hit in enumerate(res.hits):
                    src = Path(hit.source)
                    wav = assets / f"q{qi}_hit{hi}.wav"
                    write_audio(wav, read_audio(src, hit.start_sec, info.segment_sec, sample_rate), sample_rate)
                    hit_frame = assets / f"q{qi}_hit{hi}.png"
                    _save_png(read_frames(src, [hit.start_sec]).images[0], hit_frame)
                    hits.append(
                        {
                            "score": hit.score,
                            "labels": list(hit.labels),
                            "source": src.name,
                            "start_sec": hit.start_sec,
                            "audio": wav.name,
                            "frame": hit_frame.name,
                            "relevant": bool(set(hit.labels) & set(row["label"].split(";"))),  # sounds like the query (docs/metrics.md)
                            "own_clip": src.resolve() == video,
                        }
                    )
                gallery.append({"query": img_path.name, "label": row["label"], "visible": row["visible"], "hits": hits, "timings_ms": res.timings.__dict__})
                # audio of this video at t → heatmap on its frame (the sounding object should light up)
                wav_path = assets / f"loc{qi}.wav"
                write_audio(wav_path, read_audio(video, t, info.segment_sec, sample_rate), sample_rate)
                loc = client.localize(wav_path.read_bytes(), img_path.read_bytes(), overlay=True)
                overlay = assets / f"loc{qi}_overlay.png"
                overlay.write_bytes(loc.overlay_png or render_overlay(frame, loc.grid))
                heatmaps.append(
                    {
                        "image": img_path.name,
                        "audio": wav_path.name,
                        "overlay": overlay.name,
                        "label": row["label"],
                        "score": loc.score,
                        "peak_yx": list(loc.peak_yx),
                        "timings_ms": loc.timings.__dict__,
                    }
                )
            job = client.submit_embed_job(str(archive), build_bundle=True)
            last = job
            for last in client.watch_job(job.job_id, timeout_sec=900):
                log.info("demo: job %s %s %.0f%% (%d/%d files)", last.job_id[:8], last.state, 100 * last.progress, last.files_done, last.files_total)
            job_info = {
                "job_id": last.job_id,
                "state": last.state,
                "files_total": last.files_total,
                "segments": last.segments,
                "error": last.error,
                "summary": last.summary,
                "archive": str(archive),
            }
            index = {"bundle_id": info.bundle_id, "counts": info.counts, "factories": info.factories, "recall": info.manifest.get("recall")}
    finally:
        handle.stop(grace_sec=2.0)
    return {"address": handle.address, "gallery": gallery, "heatmaps": heatmaps, "job": job_info, "index": index}


def _save_png(rgb, path: Path) -> None:
    from PIL import Image

    Image.fromarray(rgb).save(path)
