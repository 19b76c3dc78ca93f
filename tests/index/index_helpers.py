"""Synthetic embedding dirs (real shard files, written by avlearn.pipeline.writer) for the index tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from avlearn.atomic import atomic_write_json
from avlearn.pipeline.reader import segment_id
from avlearn.pipeline.writer import ShardRows, write_shard


def clustered(n: int, d: int, *, clusters: int = 32, seed: int = 0, spread: float = 0.3) -> np.ndarray:
    """(n, d) float32 L2-normalised Gaussian-mixture vectors."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((clusters, d)).astype(np.float32)
    x = centers[rng.integers(0, clusters, n)] + spread * rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def write_embeddings(
    out: Path, *, units: int = 3, clips_per_unit: int = 4, segments_per_clip: int = 5, dim: int = 16, seed: int = 0, no_audio_clip: int | None = 1
) -> dict:
    """An embeddings dir whose shards hold clustered vectors; returns {segment_id: (image, audio|None, meta)}."""
    out.mkdir(parents=True, exist_ok=True)
    truth = {}
    n_total = units * clips_per_unit * segments_per_clip
    img_all = clustered(n_total, dim, seed=seed)
    aud_all = clustered(n_total, dim, seed=seed + 1)
    k = 0
    for u in range(units):
        ids, img, aud, ha, start, cid, src, lab = [], [], [], [], [], [], [], []
        for p in range(clips_per_unit):
            clip_has_audio = not (no_audio_clip is not None and u == 0 and p == no_audio_clip)
            for s in range(segments_per_clip):
                sid = segment_id(u, p, s)
                ids.append(sid)
                img.append(img_all[k])
                aud.append(aud_all[k] if clip_has_audio else np.zeros(dim, np.float32))
                ha.append(clip_has_audio)
                start.append(float(s))
                cid.append(f"clip-{u}-{p}.mp4")
                src.append(f"/data/clip-{u}-{p}.mp4")
                lab.append("dog;bark" if p % 2 else "")
                truth[sid] = (img_all[k], aud_all[k] if clip_has_audio else None, (cid[-1], src[-1], float(s), tuple(x for x in lab[-1].split(";") if x)))
                k += 1
        rows = ShardRows(
            np.array(ids, np.int64),
            np.array(img, np.float32),
            np.array(aud, np.float32),
            np.array(ha),
            np.array(start),
            np.array(cid),
            np.array(src),
            np.array(lab),
        )
        write_shard(out, u, rows, {"files": clips_per_unit, "errors": [], "no_audio": []})
    atomic_write_json(
        out / "plan.json", {"format_version": 1, "checkpoint_hash": "abc123", "dim": dim, "segment_sec": 1.0, "hop_sec": 1.0, "num_units": units, "missing": []}
    )
    return truth
