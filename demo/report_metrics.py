"""The held-out figures of the demo report in plain words: which metrics, what each means, its baseline.

``avlearn eval avc`` returns some forty raw figures (``retrieval/image->audio/recall@1``, ``localization/cIoU@0.5``,
...). The report shows the ones below, each with a name a reader understands, a one-line definition,
the trained value, the random-weights value and, where one exists, chance or the best value the
boxes allow; the raw table stays available, folded, for whoever wants it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Metric:
    """One reported figure: ``path`` into an evaluation dict (keys joined by '/'), a plain name, a definition, and its reference."""

    path: str
    name: str
    definition: str
    chance: float | None = None  # an analytic chance level, when there is one
    ceiling_path: str | None = None  # the best value the annotations allow (a figure of the same evaluation)


METRICS: tuple[Metric, ...] = (
    Metric(
        "avc/accuracy_all",
        "Sound-frame match",
        "Shown a frame and one second of sound, the model says whether both come from the same moment of one video; half the pairs do.",
        chance=0.5,
    ),
    Metric(
        "avc/accuracy_not_visible",
        "Sound-frame match, clear cases",
        "The same, leaving out mismatched pairs whose sound's category happens to be on screen (those are right at the category level).",
        chance=0.5,
    ),
    Metric(
        "retrieval/image->audio/recall@1",
        "Image → sound, first hit right",
        "For each held-out frame, the nearest of all held-out sounds is of a category visible in the frame.",
    ),
    Metric(
        "retrieval/image->audio/recall@5",
        "Image → sound, a right hit in the top 5",
        "At least one of the 5 nearest sounds is of a category visible in the frame.",
    ),
    Metric(
        "retrieval/image->audio/mAP",
        "Image → sound ranking (mAP)",
        "Mean average precision over every frame's ranking of all sounds: 1 when all right sounds come before all others.",
    ),
    Metric(
        "retrieval/audio->image/mAP",
        "Sound → image ranking (mAP)",
        "The same with a sound as the query and frames showing its category as the right answers.",
    ),
    Metric(
        "retrieval/image->image/mAP",
        "Similar images (mAP)",
        "Frames ranked by a frame; right: frames of the same sounding category (the query's own video left out).",
    ),
    Metric(
        "retrieval/audio->audio/mAP",
        "Similar sounds (mAP)",
        "Sounds ranked by a sound; right: the same category (the query's own video left out).",
    ),
    Metric(
        "localization/pointing_accuracy",
        "Points at the sounding object",
        "The hottest point of AVOL-Net's heatmap for a frame and its own sound lies inside the sounding object's box.",
    ),
    Metric(
        "localization/cIoU@0.5",
        "Heatmap covers the object (cIoU ≥ 0.5)",
        "The hottest half of the frame (the LVS protocol's fixed threshold) overlaps the box with consensus IoU ≥ 0.5. "
        "The objects cover much less than half a frame, so even a perfect heatmap scores only the 'best possible' value.",
        ceiling_path="localization/ceiling_cIoU@0.5",
    ),
    Metric(
        "localization/AUC",
        "Heatmap overlap over all thresholds (AUC)",
        "Area under the curve of the fraction of frames whose cIoU reaches t, for t from 0 to 1 (LVS protocol); limited by the box sizes as above.",
        ceiling_path="localization/ceiling_AUC",
    ),
)


def lookup(d: Any, path: str) -> float | None:
    """The number at ``path`` ("a/b/c"; keys may hold '.', '>' or '@') in nested dicts, or None (missing, not a number, NaN)."""
    for key in path.split("/"):
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    if isinstance(d, bool) or not isinstance(d, (int, float)) or math.isnan(float(d)):
        return None
    return float(d)


def metric_rows(ev: dict[str, Any]) -> list[dict[str, Any]]:
    """The report's metric table: one dict per :data:`METRICS` entry present in ``ev`` (name, definition, trained, random, chance, best)."""
    rows = []
    for m in METRICS:
        trained = lookup(ev.get("trained", {}), m.path)
        if trained is None:
            continue
        rows.append(
            {
                "path": m.path,
                "name": m.name,
                "definition": m.definition,
                "trained": trained,
                "random": lookup(ev.get("random", {}), m.path),
                "chance": m.chance,
                "best": lookup(ev.get("trained", {}), m.ceiling_path) if m.ceiling_path else None,
            }
        )
    return rows


def pct(v: float | None) -> str:
    """0.8123 → '81%', 0.0234 → '2.3%' (None → 'n/a')."""
    if v is None:
        return "n/a"
    return f"{100 * v:.1f}%" if abs(v) < 0.1 else f"{100 * v:.0f}%"


def headline(ev: dict[str, Any]) -> list[tuple[str, float | None, float | None, float | None]]:
    """The three findings the summary states in words: (sentence stem, trained, random weights, chance)."""
    t, r = ev.get("trained", {}), ev.get("random", {})
    out = []
    for path, stem, chance in (
        ("retrieval/image->audio/recall@1", "Given a held-out frame, the nearest sound is of a category on screen", None),
        ("avc/accuracy_all", "It judges rightly whether a frame and one second of sound belong together", 0.5),
        ("localization/pointing_accuracy", "The heatmap's hottest point lands on the sounding object", None),
    ):
        if lookup(t, path) is not None:
            out.append((stem, lookup(t, path), lookup(r, path), chance))
    return out
