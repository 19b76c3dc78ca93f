"""`avlearn eval avc`: how well an AVE-Net / AVOL-Net checkpoint matches sounds to frames.

On the held-out segments of a source (the ``test`` split of a world by default):

1. **AVC accuracy** on balanced, matched pairs (each segment once as a positive and
   once as the anchor of a negative with audio of another video, grid-aligned like
   training; :class:`avlearn.pretext.avc.CorrespondencePairs` with a fixed seed).
   Reported (a) over the positives and the negatives whose audio category is NOT
   visible in the frame (a negative whose category is on screen is a correct
   correspondence at the category level), and (b) over all pairs.
2. **Retrieval** image→audio, audio→image, image→image and audio→audio with
   recall@1/5/10 (a relevant item in the top k), precision@10, mAP and nDCG@30.
   Relevance: with an AudioSet ontology, the graded :meth:`Ontology.relevance` of the
   two label sets (2 shared label, 1 related in the ontology, 0 otherwise); without,
   cross-modal relevance = the audio's category is visible in the frame, and within a
   modality = same sounding label. Within a modality the query's own video is
   excluded from its ranking (its other segments are trivially similar).
3. **Localization** (an AVOL-Net: the checkpoint itself or ``localizer``) in the LVS
   protocol on VGG-SS-format boxes (``[{"file", "class", "bbox": [[x0, y0, x1, y1]]
   normalised, "time_sec"}]``): the heatmap for the frame and its own audio, resized
   to the frame, top 50% as the prediction; cIoU@0.5 and AUC; pointing-game accuracy
   (the heatmap's peak inside a box); and the ceiling the boxes allow (the same
   summaries of the best cIoU any top-50% map could reach).

``random_weights=True`` evaluates the same architecture from random init beside it.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from avlearn.data.segments import SegmentRecord
from avlearn.eval import metrics as M
from avlearn.eval.registry import register_eval

log = logging.getLogger(__name__)


class EvalDataError(ValueError):
    """The evaluation data cannot be used (no segments, fewer than two videos, unreadable boxes)."""


# ---------------------------------------------------------------- inputs


def load_boxes(path: str | os.PathLike) -> dict[str, list[tuple[float, list[list[float]]]]]:
    """VGG-SS-format boxes → {resolved media path: [(time_sec, [[x0, y0, x1, y1], ...]), ...]}.

    ``file`` is resolved against the JSON file's folder when relative.
    """
    p = Path(path)
    try:
        entries = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise EvalDataError(f"cannot read boxes {p}: {exc}") from exc
    if not isinstance(entries, list):
        raise EvalDataError(f"{p}: expected a JSON list of {{file, bbox, time_sec}} entries")
    out: dict[str, list[tuple[float, list[list[float]]]]] = {}
    for e in entries:
        try:
            f = Path(e["file"])
            key = str((f if f.is_absolute() else p.parent / f).resolve())
            boxes = [[float(v) for v in b] for b in e["bbox"]]
            if any(len(b) != 4 for b in boxes):
                raise ValueError("a bbox needs 4 numbers")
            out.setdefault(key, []).append((float(e.get("time_sec", 0.0)), boxes))
        except (KeyError, TypeError, ValueError) as exc:
            raise EvalDataError(f"{p}: bad box entry {e!r:.200}: {exc}") from exc
    return out


def find_boxes(data: str | os.PathLike) -> Path | None:
    """A ``boxes.json`` in the data folder or up to two folders above (a world's, for its splits)."""
    p = Path(data).resolve()
    start = p if p.is_dir() else p.parent
    for d in [start, *list(start.parents)[:2]]:
        if (d / "boxes.json").is_file():
            return d / "boxes.json"
    return None


def apply_labels_csv(records: list[SegmentRecord], path: str | os.PathLike) -> int:
    """Set ``labels``/``visible`` of records from a labels.csv (path,label,visible); returns how many matched."""
    p = Path(path)
    table: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
    with p.open(newline="") as f:
        for row in csv.DictReader(f):
            media = Path(row["path"])
            key = str((media if media.is_absolute() else p.parent / media).resolve())
            labels = tuple(x for x in (row.get("label") or row.get("labels") or "").split(";") if x)
            table[key] = (labels, tuple(x for x in (row.get("visible") or "").split(";") if x))
    n = 0
    for r in records:
        hit = table.get(str(Path(r.path).resolve()))
        if hit is not None:
            r.labels, r.visible = hit
            n += 1
    return n


# ---------------------------------------------------------------- relevance


def relevance_matrices(records: list[SegmentRecord], ontology: Any | None = None) -> dict[str, np.ndarray] | None:
    """Graded relevance (N, N) per direction ("image->audio", "audio->image", "image->image", "audio->audio").

    None when the records carry no labels.
    """
    labels = [set(r.labels) for r in records]
    if not any(labels):
        return None
    visible = [set(r.visible) or set(r.labels) for r in records]
    n = len(records)
    if ontology is not None:
        grade = np.array([[ontology.relevance(labels[q], labels[i]) for i in range(n)] for q in range(n)], dtype=np.float64)
        return {"image->audio": grade, "audio->image": grade, "image->image": grade, "audio->audio": grade}
    # image query q, audio item i: relevant when the audio's category is on screen in q's frame
    cross = np.array([[float(bool(labels[i] & visible[q])) for i in range(n)] for q in range(n)])
    same = np.array([[float(bool(labels[i] & labels[q])) for i in range(n)] for q in range(n)])
    return {"image->audio": cross, "audio->image": cross.T.copy(), "image->image": same, "audio->audio": same}


# ---------------------------------------------------------------- the evaluation


def _avc(emb: Any, frames: np.ndarray, waves: np.ndarray, records: list[SegmentRecord], seed: int) -> dict[str, Any]:
    from avlearn.pretext.avc import CorrespondencePairs

    pairs = CorrespondencePairs(records, seed=seed).epoch_pairs(0)
    fi = np.array([p.frame_idx for p in pairs])
    ai = np.array([p.audio_idx for p in pairs])
    label = np.array([p.label for p in pairs])
    prob = emb.correspondence(frames[fi], waves[ai])
    pred = (prob > 0.5).astype(int)
    correct = pred == label
    pos, neg = label == 1, label == 0
    out: dict[str, Any] = {
        "pairs": int(label.size),
        "accuracy_all": float(correct.mean()),
        "positive_accuracy": float(correct[pos].mean()),
        "negative_accuracy_all": float(correct[neg].mean()),
    }
    if any(r.labels for r in records):
        visible = [set(r.visible) or set(r.labels) for r in records]
        not_visible = np.array([p.label == 0 and not (set(records[p.audio_idx].labels) & visible[p.frame_idx]) for p in pairs])
        keep = pos | not_visible
        out.update(
            {
                "accuracy_not_visible": float(correct[keep].mean()),
                "balanced_accuracy_not_visible": float(0.5 * correct[pos].mean() + 0.5 * correct[not_visible].mean()) if not_visible.any() else float("nan"),
                "negatives_not_visible": int(not_visible.sum()),
                "negative_accuracy_not_visible": float(correct[not_visible].mean()) if not_visible.any() else float("nan"),
            }
        )
    return out


def _retrieval(emb: Any, frames: np.ndarray, waves: np.ndarray, records: list[SegmentRecord], ontology: Any | None) -> dict[str, Any]:
    rel = relevance_matrices(records, ontology)
    img = emb.embed_images(frames)
    aud = emb.embed_audio(waves)
    scores = {"image->audio": img @ aud.T, "audio->image": aud @ img.T, "image->image": img @ img.T, "audio->audio": aud @ aud.T}
    clips = np.array([r.clip_id for r in records])
    same_video = clips[:, None] == clips[None, :]
    out: dict[str, Any] = {}
    if rel is None:  # no labels: instance retrieval of the segment's own other half
        eye = np.eye(len(records))
        for k in ("image->audio", "audio->image"):
            out[k] = {"relevance": "same segment", **M.retrieval_report(scores[k], eye)}
        return out
    for k, s in scores.items():
        within = k in ("image->image", "audio->audio")
        out[k] = M.retrieval_report(s, rel[k], exclude=same_video if within else None)
        out[k]["relevance"] = "ontology" if ontology is not None else ("same sounding label" if within else "audio category visible in the frame")
    return out


def _localization(
    emb: Any, frames: np.ndarray, waves: np.ndarray, records: list[SegmentRecord], boxes: dict[str, list], tolerance_sec: float = 0.05
) -> dict[str, Any]:
    from avlearn.embed.heatmap import upsample_heatmap

    picked, gts = [], []
    for i, r in enumerate(records):
        entries = boxes.get(str(Path(r.path).resolve()))
        if not entries:
            continue
        t, bb = min(entries, key=lambda e: abs(e[0] - r.start_sec))
        if abs(t - r.start_sec) <= tolerance_sec:
            picked.append(i)
            gts.append(bb)
    if not picked:
        return {"samples": 0, "skipped": "no segment matches an annotated (file, time_sec)"}
    heatmaps = emb.localize_batch(frames[picked], waves[picked])
    ious, hits, ceilings = [], [], []
    for i, bb, hm in zip(picked, gts, heatmaps):
        size = frames[i].shape[:2]
        heat = upsample_heatmap(hm.grid, size)
        gt = M.boxes_mask(bb, size)
        ious.append(M.ciou(heat, gt))
        hits.append(M.pointing_hit(heat, gt))
        ceilings.append(M.ciou_ceiling(gt))
    ceiling = M.ciou_summary(ceilings)
    return {
        "samples": len(picked),
        **M.ciou_summary(ious),
        "pointing_accuracy": float(np.mean(hits)),
        "ceiling_cIoU@0.5": ceiling["cIoU@0.5"],
        "ceiling_AUC": ceiling["AUC"],
        "ceiling_mean_cIoU": ceiling["mean_cIoU"],
    }


def evaluate_embedder(
    emb: Any, records: list[SegmentRecord], *, boxes: dict[str, list] | None = None, ontology: Any | None = None, seed: int = 0
) -> dict[str, Any]:
    """All AVC metrics of one :class:`avlearn.embed.Embedder` on in-memory records."""
    frames = np.stack([r.frame for r in records])
    waves = np.stack([r.audio for r in records])  # type: ignore[misc]
    out: dict[str, Any] = {"avc": _avc(emb, frames, waves, records, seed), "retrieval": _retrieval(emb, frames, waves, records, ontology)}
    if boxes is not None:
        if emb.has_localizer:
            out["localization"] = _localization(emb, frames, waves, records, boxes)
        else:
            out["localization"] = {"skipped": "localization needs an AVOL-Net (the checkpoint itself, or --localizer)"}
    return out


def _random_like(checkpoint: str | os.PathLike, seed: int) -> Any:
    from avlearn.checkpoint import read_config
    from avlearn.models import model_from_config

    return model_from_config(read_config(checkpoint)["model"], seed=seed)


def _subsample(records: list[SegmentRecord], max_segments: int, seed: int) -> list[SegmentRecord]:
    if max_segments <= 0 or len(records) <= max_segments:
        return records
    keep = np.sort(np.random.default_rng(seed).choice(len(records), max_segments, replace=False))
    return [records[i] for i in keep]


def evaluate_avc(
    checkpoint: str | os.PathLike,
    data: str | os.PathLike,
    *,
    split: str = "test",
    boxes: str | os.PathLike | None = None,
    labels: str | os.PathLike | None = None,
    ontology: str | os.PathLike | None = None,
    localizer: str | os.PathLike | None = None,
    random_weights: bool = False,
    max_segments: int = 2000,
    seed: int = 0,
    device: str = "auto",
) -> dict[str, Any]:
    """Evaluate an AVE-Net / AVOL-Net checkpoint (see the module docstring); returns a JSON-ready dict.

    Args:
        data: a source, or a folder with ``splits/`` (``split`` picks the csv).
        boxes: VGG-SS-format JSON (default: a boxes.json beside the data, if any).
        labels: a labels.csv overriding the labels the source carries.
        ontology: AudioSet ontology.json for graded relevance.
        localizer: an AVOL-Net checkpoint for localization when ``checkpoint`` is an AVE-Net.
        max_segments: evaluate at most this many segments (a seeded random subset).

    Raises:
        CheckpointError: bad checkpoint. EvalDataError: unusable data or boxes.
    """
    from avlearn.data.ontology import Ontology
    from avlearn.data.segments import load_segment_records
    from avlearn.embed import Embedder
    from avlearn.pretext import resolve_split

    emb = Embedder.from_checkpoint(checkpoint, localizer=localizer, device=device)
    try:
        src = resolve_split(data, split)
    except FileNotFoundError:
        src = str(data)
    records = load_segment_records(src, size_px=None, sample_rate_hz=emb.sample_rate_hz, segment_sec=emb.segment_sec, hop_sec=emb.segment_sec)
    if labels is not None:
        matched = apply_labels_csv(records, labels)
        log.info("labels from %s matched %d of %d segments", labels, matched, len(records))
    records = _subsample(records, max_segments, seed)
    if len({r.clip_id for r in records}) < 2:
        raise EvalDataError(f"{src}: AVC evaluation needs segments of at least two videos, got {len(records)} segments")
    boxes_path = Path(boxes) if boxes is not None else find_boxes(data)
    box_index = load_boxes(boxes_path) if boxes_path is not None else None
    onto = Ontology.load(ontology) if ontology is not None else None
    result: dict[str, Any] = {
        "checkpoint": str(checkpoint),
        "model": emb.model_name,
        "localizer": str(localizer) if localizer else None,
        "data": src,
        "boxes": str(boxes_path) if boxes_path else None,
        "segments": len(records),
        "videos": len({r.clip_id for r in records}),
        "trained": evaluate_embedder(emb, records, boxes=box_index, ontology=onto, seed=seed),
    }
    if random_weights:
        rand_loc = _random_like(localizer, seed + 1) if localizer else None
        rand = Embedder(_random_like(checkpoint, seed), localizer=rand_loc, device=device)
        result["random_weights"] = evaluate_embedder(rand, records, boxes=box_index, ontology=onto, seed=seed)
    return M.json_safe(result)  # type: ignore[return-value]


@register_eval("avc")
def eval_avc(
    checkpoint: str,
    data: str,
    split: str = "test",
    boxes: str | None = None,
    labels: str | None = None,
    ontology: str | None = None,
    localizer: str | None = None,
    random_weights: bool = False,
    max_segments: int = 2000,
    seed: int = 0,
    device: str = "auto",
) -> dict[str, Any]:
    """AVC accuracy, cross-modal and within-modal retrieval, and LVS localization of a checkpoint."""
    return evaluate_avc(
        checkpoint,
        data,
        split=split,
        boxes=boxes,
        labels=labels,
        ontology=ontology,
        localizer=localizer,
        random_weights=random_weights,
        max_segments=max_segments,
        seed=seed,
        device=device,
    )
