"""`avlearn eval avc`: how well an AVE-Net / AVOL-Net checkpoint matches sounds to frames.

On the held-out segments of a source (the ``test`` split of a world by default; a folder, csv or
prepared shard dir), at most ``max_segments`` of them, drawn from the listing before anything is
decoded (:mod:`avlearn.eval.sampling`), so memory follows the sample, not the split; every figure
is defined in docs/metrics.md:

1. **AVC accuracy** on balanced, matched pairs (each segment once as a positive and
   once as the anchor of a negative with audio of another video, grid-aligned like
   training; :class:`avlearn.pretext.avc.CorrespondencePairs` with a fixed seed).
   First over all pairs (``accuracy_all``: the paper's protocol, negatives are random
   other clips whatever their category), then over the positives and the negatives whose
   audio category is NOT visible in the frame (``accuracy_not_visible``).
2. **Retrieval** image→audio, audio→image, image→image and audio→audio with
   recall@1/5/10 (a relevant item in the top k), precision@10, mAP and nDCG@30, all
   tie-aware (:mod:`avlearn.eval.metrics`). Every segment of the query's own clip is
   left out of its ranking and of its relevant set. Relevance: the query's sounding
   category (same label); with an AudioSet ontology, the graded :meth:`Ontology.relevance`
   of the two label sets (2 shared label, 1 related in the ontology, 0 otherwise). Without
   labels, instance retrieval: the relevant item is the query's own segment in the other
   modality (the clip's other segments are left out).
3. **Localization** (an AVOL-Net: the checkpoint itself or ``localizer``) in the LVS
   protocol on VGG-SS-format boxes (``[{"file", "class", "bbox": [[x0, y0, x1, y1]]
   normalised, "time_sec"}]``; ``file`` a path or a bare video id, ``time_sec`` any time;
   ``"annotators": [[box, ...], ...]`` for Flickr-SoundNet's consensus map): the frame on
   screen at ``time_sec`` and the audio from that frame on, decoded as the index decodes
   segments; cIoU@0.5 and AUC as the reference implementation computes them; the pointing
   game; the ceiling the boxes allow. Boxes whose video is not in the data, or whose
   frame cannot be decoded, are counted and listed, never dropped silently.

``random_weights=True`` evaluates the same architecture from random init beside it.
"""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from avlearn.data.segments import SegmentRecord
from avlearn.eval import metrics as M
from avlearn.eval.boxes import BoxSample, EvalDataError, decode_boxes, find_boxes, load_boxes, match_boxes
from avlearn.eval.registry import register_eval

log = logging.getLogger(__name__)

PROTOCOL = {
    "avc": "accuracy_all: positives + negatives from random other clips (the paper's protocol); accuracy_not_visible: negatives whose category is on screen left out",
    "sample": "clips drawn by a seeded hash of (file, start) before decoding, segments_per_clip kept each, up to max_segments (avlearn.eval.sampling)",
    "retrieval": "own clip excluded from ranking and relevant set; relevance = same sounding label (or ontology grade); tie-aware (McSherry & Najork 2008)",
    "localization": "LVS / VGG-SS reference (hche11/Localizing-Visual-Sounds-the-Hard-Way): 224x224 maps, median threshold, cIoU@0.5, AUC over t = 0.05 i",
    "doc": "docs/metrics.md",
}


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


DIRECTIONS = ("image->audio", "audio->image", "image->image", "audio->audio")


def relevance_matrices(records: list[SegmentRecord], ontology: Any | None = None) -> dict[str, np.ndarray] | None:
    """Graded relevance (N, N) per direction ("image->audio", "audio->image", "image->image", "audio->audio").

    Item i is relevant to query q when it sounds like q: a shared sounding label (1), or with an
    ontology the graded :meth:`Ontology.relevance` of the label sets. The same matrix serves every
    direction (the query's sounding category decides, in either modality). None without labels.
    """
    labels = [r.labels for r in records]
    if not any(labels):
        return None
    if ontology is not None:
        grade = ontology.relevance_matrix(labels).astype(np.float64)
    else:
        grade = label_overlap(labels)
    return dict.fromkeys(DIRECTIONS, grade)


def label_overlap(label_sets: list[tuple[str, ...]]) -> np.ndarray:
    """(N, N) float64: 1 where two label sets share a label, else 0 (multi-hot rows, one matrix product)."""
    vocab = {m: j for j, m in enumerate(sorted({m for s in label_sets for m in s}))}
    hot = np.zeros((len(label_sets), len(vocab)), np.float32)
    for i, s in enumerate(label_sets):
        hot[i, [vocab[m] for m in s]] = 1.0
    return (hot @ hot.T > 0).astype(np.float64)


def same_clip(records: list[SegmentRecord]) -> np.ndarray:
    """(N, N) bool: segments i and j come from one clip (same clip id, or the same media file)."""
    clips = np.array([r.clip_id for r in records])
    paths = np.array([str(Path(r.path).resolve()) for r in records])
    return (clips[:, None] == clips[None, :]) | (paths[:, None] == paths[None, :])


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
        "accuracy_all": float(correct.mean()),  # the headline: the paper's protocol (all negatives)
        "pairs": int(label.size),
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
    own = same_clip(records)
    out: dict[str, Any] = {}
    if rel is None:  # no labels: instance retrieval of the segment's own other half among other clips' segments
        eye = np.eye(len(records), dtype=bool)
        for k in ("image->audio", "audio->image"):
            out[k] = {"relevance": "same segment", **M.retrieval_report(scores[k], eye.astype(float), exclude=own & ~eye)}
        return out
    for k, s in scores.items():
        out[k] = M.retrieval_report(s, rel[k], exclude=own)
        out[k]["relevance"] = "ontology" if ontology is not None else "same sounding label"
    return out


def _localization(emb: Any, samples: list[BoxSample], report: dict[str, Any]) -> dict[str, Any]:
    from avlearn.embed.heatmap import upsample_heatmap

    if not samples:
        return {"samples": 0, **report, "skipped": "no annotated frame of the data could be scored (see the counts)"}
    heatmaps = emb.localize_batch([s.frame for s in samples], np.stack([s.audio for s in samples]))
    ious, hits, ceilings = [], [], []
    for s, hm in zip(samples, heatmaps):
        heat = upsample_heatmap(hm.grid, s.gt.shape)  # bilinear, half-pixel centres: cv2.resize INTER_LINEAR of the reference
        ious.append(M.ciou(heat, s.gt))
        hits.append(M.pointing_score(heat, s.gt))
        ceilings.append(M.ciou_ceiling(s.gt))
    ceiling = M.ciou_summary(ceilings)
    return {
        "samples": len(samples),
        **M.ciou_summary(ious),
        "pointing_accuracy": float(np.mean(hits)),
        "ceiling_cIoU@0.5": ceiling["cIoU@0.5"],
        "ceiling_AUC": ceiling["AUC"],
        "ceiling_mean_cIoU": ceiling["mean_cIoU"],
        **report,
    }


def evaluate_embedder(
    emb: Any,
    records: list[SegmentRecord],
    *,
    boxes: tuple[list[BoxSample], dict[str, Any]] | None = None,
    ontology: Any | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """All AVC metrics of one :class:`avlearn.embed.Embedder` on in-memory records.

    Args:
        boxes: (decoded annotated frames, their matching/decoding report) from :func:`match_boxes` and :func:`decode_boxes`.
    """
    frames = np.stack([r.frame for r in records])
    waves = np.stack([r.audio for r in records])  # type: ignore[misc]
    out: dict[str, Any] = {"avc": _avc(emb, frames, waves, records, seed), "retrieval": _retrieval(emb, frames, waves, records, ontology)}
    if boxes is not None:
        if emb.has_localizer:
            out["localization"] = _localization(emb, *boxes)
        else:
            out["localization"] = {"skipped": "localization needs an AVOL-Net (the checkpoint itself, or --localizer)"}
    return out


def _random_like(checkpoint: str | os.PathLike, seed: int) -> Any:
    from avlearn.checkpoint import read_config
    from avlearn.models import model_from_config

    return model_from_config(read_config(checkpoint)["model"], seed=seed)


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
    segments_per_clip: int = 0,
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
        max_segments: evaluate at most this many segments, drawn before decoding (:mod:`avlearn.eval.sampling`).
        segments_per_clip: keep at most this many segments of each drawn clip (0: all).

    Raises:
        CheckpointError: bad checkpoint. EvalDataError: unusable data or boxes.
    """
    from avlearn.data.ontology import Ontology
    from avlearn.data.splits import resolve_split
    from avlearn.embed import Embedder
    from avlearn.eval.sampling import sample_segments

    emb = Embedder.from_checkpoint(checkpoint, localizer=localizer, device=device)
    try:
        src = resolve_split(data, split)
    except FileNotFoundError:
        src = str(data)
    # a seeded draw of clips from the listing, then only those decoded, frames at the model's input size as the indexer
    # decodes them (one resize path; videos of any size mix); memory: the sample, not the split
    sample = sample_segments(
        src, max_segments=max_segments, segments_per_clip=segments_per_clip, seed=seed,
        size_px=emb.image_size_px, sample_rate_hz=emb.sample_rate_hz, segment_sec=emb.segment_sec, hop_sec=emb.segment_sec,
    )  # fmt: skip
    records = sample.records
    if labels is not None:
        matched = apply_labels_csv(records, labels)
        log.info("labels from %s matched %d of %d segments", labels, matched, len(records))
    media_paths = sorted({s.path for s in sample.spans})
    if len({r.clip_id for r in records}) < 2:
        raise EvalDataError(f"{src}: AVC evaluation needs segments of at least two videos, got {len(records)} segments")
    boxes_path = Path(boxes) if boxes is not None else find_boxes(data)
    box_samples = None
    if boxes_path is not None and emb.has_localizer:
        pairs, report = match_boxes(load_boxes(boxes_path), media_paths)
        if max_segments > 0 and len(pairs) > max_segments:
            keep = np.sort(np.random.default_rng(seed).choice(len(pairs), max_segments, replace=False))
            report["boxes_subsampled_from"] = len(pairs)
            pairs = [pairs[i] for i in keep]
        samples, decoded = decode_boxes(pairs, sample_rate_hz=emb.sample_rate_hz, segment_sec=emb.segment_sec)
        box_samples = (samples, {**report, **decoded})
    elif boxes_path is not None:
        box_samples = ([], {})
    onto = Ontology.load(ontology) if ontology is not None else None
    result: dict[str, Any] = {
        "checkpoint": str(checkpoint),
        "model": emb.model_name,
        "localizer": str(localizer) if localizer else None,
        "data": src,
        "boxes": str(boxes_path) if boxes_path else None,
        "segments": len(records),
        "videos": len({r.clip_id for r in records}),
        "sample": sample.report,
        "protocol": PROTOCOL,
        "trained": evaluate_embedder(emb, records, boxes=box_samples, ontology=onto, seed=seed),
    }
    if random_weights:
        rand_loc = _random_like(localizer, seed + 1) if localizer else None
        rand = Embedder(_random_like(checkpoint, seed), localizer=rand_loc, device=device)
        result["random_weights"] = evaluate_embedder(rand, records, boxes=box_samples, ontology=onto, seed=seed)
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
    segments_per_clip: int = 0,
    seed: int = 0,
    device: str = "auto",
) -> dict[str, Any]:
    """AVC accuracy, cross-modal and within-modal retrieval, and LVS localization of a checkpoint.

    max_segments: evaluate at most this many segments: clips drawn with --seed from the listing (folder, csv or
        prepared shard dir) and only those decoded (docs/metrics.md, Sampling); 0: every segment
    segments_per_clip: keep at most this many segments of each drawn clip (0: all of them)
    """
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
        segments_per_clip=segments_per_clip,
        seed=seed,
        device=device,
    )
