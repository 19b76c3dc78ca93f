"""The AVC evaluation's plumbing on real decoded segments, with oracle stand-in models.

An oracle that knows each segment's labels must score perfectly where the protocol says
perfect is possible, and a constant one at chance, so every number is checked against a
value computed by hand from the world's ground truth.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from avlearn.data.segments import load_segment_records
from avlearn.embed.heatmap import Heatmap
from avlearn.eval import metrics as M
from avlearn.eval.avc import EvalDataError, evaluate_embedder, find_boxes, load_boxes, relevance_matrices


class Oracle:
    """Embeds a segment as the one-hot of its sounding label; says "corresponds" iff the audio's
    label is visible in the frame; localizes by painting the annotated box."""

    has_localizer = True

    def __init__(self, records, boxes=None) -> None:
        self.cats = sorted({label for r in records for label in r.labels})
        self.by_frame = {r.frame.tobytes(): r for r in records}
        self.by_wave = {r.audio.tobytes(): r for r in records}
        self.boxes = boxes

    def _onehot(self, recs) -> np.ndarray:
        out = np.zeros((len(recs), len(self.cats)), np.float32)
        for i, r in enumerate(recs):
            out[i, self.cats.index(r.labels[0])] = 1.0
        return out

    def embed_images(self, frames):
        return self._onehot([self.by_frame[f.tobytes()] for f in frames])

    def embed_audio(self, waves):
        return self._onehot([self.by_wave[w.tobytes()] for w in waves])

    def correspondence(self, frames, waves):
        return np.array([float(self.by_wave[w.tobytes()].labels[0] in self.by_frame[f.tobytes()].visible) for f, w in zip(frames, waves)])

    def localize_batch(self, frames, waves):
        out = []
        for f in frames:
            r = self.by_frame[f.tobytes()]
            t, bb = min(self.boxes[str(Path(r.path).resolve())], key=lambda e: abs(e[0] - r.start_sec))
            h, w = f.shape[:2]  # a grid at the frame's size: upsampling leaves it as it is
            grid = M.boxes_mask(bb, (h, w)).astype(np.float32) + np.linspace(0, 1e-3, h * w, dtype=np.float32).reshape(h, w)
            out.append(Heatmap(grid=grid, score=1.0, peak_yx=(0.5, 0.5)))
        return out


@pytest.fixture(scope="module")
def test_records(tiny_world):
    return load_segment_records(tiny_world, sample_rate_hz=16000)  # every video: each label has several


def test_oracle_scores_perfectly(tiny_world, test_records):
    boxes = load_boxes(find_boxes(tiny_world))
    res = evaluate_embedder(Oracle(test_records, boxes), test_records, boxes=boxes)
    avc = res["avc"]
    assert avc["pairs"] == 2 * len(test_records)
    assert avc["accuracy_not_visible"] == 1.0 and avc["positive_accuracy"] == 1.0
    # negatives whose category IS visible are "wrong" for the oracle: all-negatives accuracy drops below 1 iff any exist
    visible_negs = avc["pairs"] // 2 - avc["negatives_not_visible"]
    assert avc["negative_accuracy_all"] == pytest.approx(1 - visible_negs / (avc["pairs"] // 2))
    # one-hot label embeddings rank every same-label item first; relevance = label visible ⊇ same label
    assert res["retrieval"]["audio->audio"]["mAP"] == 1.0 and res["retrieval"]["image->image"]["recall@1"] == 1.0
    assert res["retrieval"]["image->audio"]["recall@1"] == 1.0
    loc = res["localization"]
    assert loc["samples"] == len(test_records)  # the world annotates every whole second
    assert loc["pointing_accuracy"] == 1.0
    assert loc["mean_cIoU"] == pytest.approx(loc["ceiling_mean_cIoU"], abs=1e-6)  # the box itself reaches the ceiling


def test_relevance_by_hand(test_records):
    rel = relevance_matrices(test_records)
    q, i = 0, next(j for j, r in enumerate(test_records) if r.labels != test_records[0].labels)
    expect = float(test_records[i].labels[0] in test_records[q].visible)
    assert rel["image->audio"][q, i] == expect and rel["audio->image"][i, q] == expect
    assert rel["audio->audio"][q, i] == 0.0 and rel["audio->audio"][q, q] == 1.0


def test_bad_boxes(tmp_path):
    (tmp_path / "b.json").write_text(json.dumps([{"file": "x.mp4", "bbox": [[0, 0, 1]]}]))
    with pytest.raises(EvalDataError):
        load_boxes(tmp_path / "b.json")
    (tmp_path / "c.json").write_text("{not json")
    with pytest.raises(EvalDataError):
        load_boxes(tmp_path / "c.json")


def test_ontology_graded_relevance(tmp_path, test_records):
    from avlearn.data.ontology import Ontology

    classes = [
        {"id": "/r", "name": "Root", "child_ids": ["/a", "/b"]},
        {"id": "/a", "name": "A", "child_ids": ["/a1", "/a2"]},
        {"id": "/a1", "name": "A1", "child_ids": []},
        {"id": "/a2", "name": "A2", "child_ids": []},
        {"id": "/b", "name": "B", "child_ids": []},
    ]
    (tmp_path / "ontology.json").write_text(json.dumps(classes))
    onto = Ontology.load(tmp_path / "ontology.json")
    import dataclasses

    recs = [dataclasses.replace(r) for r in test_records[:3]]  # copies: the fixture is shared
    for r, labels in zip(recs, [("/a1",), ("/a2",), ("/b",)]):
        r.labels, r.visible = labels, labels
    rel = relevance_matrices(recs, onto)
    # same class 2; siblings under the non-root /a 1; only the root in common 0
    assert rel["image->audio"].tolist() == [[2, 1, 0], [1, 2, 0], [0, 0, 2]]
