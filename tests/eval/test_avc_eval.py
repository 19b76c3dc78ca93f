"""The AVC evaluation's plumbing on real decoded segments, with oracle stand-in models.

An oracle that knows each segment's labels must score perfectly where the protocol says
perfect is possible, an oracle that only knows the clip must score at chance once the
query's own clip is left out, and VGG-SS-style boxes (bare ids, off-grid times) must be
scored on the frame at their time, so every number is checked against a value computed
by hand from the world's ground truth.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from avlearn.data.segments import load_segment_records
from avlearn.embed.heatmap import Heatmap
from avlearn.eval.avc import evaluate_embedder, relevance_matrices, same_clip
from avlearn.eval.boxes import EvalDataError, decode_boxes, find_boxes, load_boxes, match_boxes
from avlearn.media import read_audio, read_frames

SR = 16000


class Oracle:
    """Embeds a segment as the one-hot of its sounding label; says "corresponds" iff the audio's
    label is visible in the frame; localizes by painting the ground truth it is given per frame."""

    has_localizer = True

    def __init__(self, records, gt_by_frame=None) -> None:
        self.cats = sorted({label for r in records for label in r.labels})
        self.by_frame = {r.frame.tobytes(): r for r in records}
        self.by_wave = {r.audio.tobytes(): r for r in records}
        self.gt_by_frame = gt_by_frame or {}

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
            gt = self.gt_by_frame[f.tobytes()]  # KeyError: the evaluation decoded another frame than the annotated one
            grid = gt.astype(np.float32) + np.linspace(0, 0.5, gt.size, dtype=np.float32).reshape(gt.shape)  # tie-free; 224 x 224: no resampling
            out.append(Heatmap(grid=grid, score=1.0, peak_yx=(0.5, 0.5)))
        return out


class ClipOracle(Oracle):
    """Knows only which clip a segment comes from: the one-hot of its clip (no category knowledge)."""

    def __init__(self, records) -> None:
        super().__init__(records)
        self.clips = sorted({r.clip_id for r in records})

    def _onehot(self, recs) -> np.ndarray:
        out = np.zeros((len(recs), len(self.clips)), np.float32)
        for i, r in enumerate(recs):
            out[i, self.clips.index(r.clip_id)] = 1.0
        return out


@pytest.fixture(scope="module")
def test_records(tiny_world):
    return load_segment_records(tiny_world, sample_rate_hz=SR)  # every video: each label has several


def _gt_by_annotated_frame(matched) -> dict[bytes, np.ndarray]:
    """The annotated frame of each box, decoded independently of the evaluation (read_frames at its time)."""
    return {read_frames(path, [e.time_sec]).images[0].tobytes(): e.gt_map() for e, path in matched}


def test_oracle_scores_perfectly(tiny_world, test_records):
    matched, report = match_boxes(load_boxes(find_boxes(tiny_world)), sorted({r.path for r in test_records}))
    boxes = decode_boxes(matched, sample_rate_hz=SR, segment_sec=1.0)
    res = evaluate_embedder(Oracle(test_records, _gt_by_annotated_frame(matched)), test_records, boxes=(boxes[0], {**report, **boxes[1]}))
    avc = res["avc"]
    assert list(avc)[0] == "accuracy_all"  # the paper's protocol is the first figure
    assert avc["pairs"] == 2 * len(test_records)
    assert avc["accuracy_not_visible"] == 1.0 and avc["positive_accuracy"] == 1.0
    # negatives whose category IS visible are "wrong" for the oracle: all-negatives accuracy drops below 1 iff any exist
    visible_negs = avc["pairs"] // 2 - avc["negatives_not_visible"]
    assert avc["negative_accuracy_all"] == pytest.approx(1 - visible_negs / (avc["pairs"] // 2))
    assert avc["accuracy_all"] == pytest.approx((avc["positive_accuracy"] + avc["negative_accuracy_all"]) / 2)
    # one-hot label embeddings rank every same-label item first (one tie group of relevant items), own clip left out
    for direction in ("image->audio", "audio->image", "image->image", "audio->audio"):
        r = res["retrieval"][direction]
        assert r["mAP"] == 1.0 and r["recall@1"] == 1.0 and r["nDCG@30"] == pytest.approx(1.0), direction
        assert r["relevance"] == "same sounding label" and r["queries"] == len(test_records)
    loc = res["localization"]
    assert loc["samples"] == loc["boxes_total"] == report["boxes_total"] > 0  # every annotated frame of every video scored
    assert loc["boxes_video_not_found"] == 0 and loc["boxes_undecodable"] == 0
    assert loc["pointing_accuracy"] == 1.0
    assert loc["mean_cIoU"] == pytest.approx(loc["ceiling_mean_cIoU"], abs=1e-6)  # the box itself reaches the ceiling


def test_own_clip_is_excluded(test_records):
    """A model that only recognises the clip (its own segments identical, all others orthogonal) is at chance."""
    res = evaluate_embedder(ClipOracle(test_records), test_records)
    own = same_clip(test_records)
    rel = relevance_matrices(test_records)["image->audio"]
    # every other clip's segment scores 0: one tie group, so recall@1 = the share of relevant candidates
    share = np.mean([rel[q][~own[q]].sum() / (~own[q]).sum() for q in range(len(test_records))])
    for direction in ("image->audio", "image->image"):
        r = res["retrieval"][direction]
        assert r["recall@1"] == pytest.approx(share) and r["chance_mAP"] == pytest.approx(share)
        assert r["recall@1"] < 0.5 < r["recall@10"] < 1.0  # counting the own clip would give recall@1 = 1
    assert own.sum() > len(test_records)  # clips have several segments (the sibling segments are excluded too)


def test_relevance_by_hand(test_records):
    rel = relevance_matrices(test_records)
    q = 0
    other = next(j for j, r in enumerate(test_records) if r.labels != test_records[q].labels)
    same = next(j for j, r in enumerate(test_records) if r.labels == test_records[q].labels and r.clip_id != test_records[q].clip_id)
    for direction in ("image->audio", "audio->image", "image->image", "audio->audio"):
        assert rel[direction][q, other] == 0.0 and rel[direction][q, same] == 1.0  # the query's sounding category decides


def test_vggss_boxes_bare_id_and_off_grid_time(tiny_world, test_records, tmp_path):
    """Boxes as VGG-SS gives them: a bare video id and a time off the segment grid are scored on the frame
    at that time (decoded as the index decodes segments); unknown videos and undecodable times are counted."""
    videos = sorted({r.path for r in test_records})
    fps = 25.0  # the tiny world's frame rate
    entries = [
        {"file": Path(videos[0]).stem, "class": "x", "bbox": [[0.1, 0.2, 0.6, 0.9]], "time_sec": 0.37},
        {"file": Path(videos[1]).stem, "class": "x", "bbox": [[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]], "time_sec": 1.52},
        {"file": Path(videos[2]).stem, "class": "x", "annotators": [[[0.0, 0.0, 0.7, 0.7]], [[0.2, 0.2, 1.0, 1.0]]], "time_sec": 2.3},
        {"file": "no_such_video", "class": "x", "bbox": [[0, 0, 1, 1]], "time_sec": 1.0},
        {"file": Path(videos[3]).stem, "class": "x", "bbox": [[0, 0, 1, 1]], "time_sec": 30.0},  # past the end
    ]
    (tmp_path / "vggss.json").write_text(json.dumps(entries))
    matched, report = match_boxes(load_boxes(tmp_path / "vggss.json"), videos)
    assert [p for _, p in matched] == videos[:3] + [videos[3]]
    assert report["boxes_video_not_found"] == 1 and report["video_not_found_examples"] == ["no_such_video"]
    samples, decoded = decode_boxes(matched, sample_rate_hz=SR, segment_sec=1.0)
    assert len(samples) == 3 and decoded["boxes_undecodable"] == 1 and "30 s" in decoded["undecodable_examples"][0]
    for s, (e, path) in zip(samples, matched):
        ref = read_frames(path, [e.time_sec])
        assert np.array_equal(s.frame, ref.images[0]) and s.frame_sec == pytest.approx(ref.times_sec[0])
        assert s.frame_sec <= e.time_sec + 1e-6 and e.time_sec - s.frame_sec < 1 / fps  # the frame on screen then, off the 1 s grid
        np.testing.assert_allclose(s.audio, read_audio(path, s.frame_sec, 1.0, SR), atol=1e-6)  # audio from the frame's own time
    assert samples[2].gt.max() == 1.0 and 0.5 in samples[2].gt  # the consensus map of two annotators
    res = evaluate_embedder(Oracle(test_records, _gt_by_annotated_frame(matched[:3])), test_records, boxes=(samples, {**report, **decoded}))
    loc = res["localization"]
    assert loc["samples"] == 3 and loc["pointing_accuracy"] == 1.0 and loc["boxes_total"] == 5
    assert loc["boxes_video_not_found"] == 1 and loc["boxes_undecodable"] == 1


def test_ambiguous_bare_id_is_reported(tmp_path):
    (tmp_path / "b.json").write_text(json.dumps([{"file": "clip", "bbox": [[0, 0, 1, 1]], "time_sec": 0}]))
    matched, report = match_boxes(load_boxes(tmp_path / "b.json"), ["/a/clip.mp4", "/b/clip.mp4"])
    assert matched == [] and report["boxes_video_ambiguous"] == 1


def test_bad_boxes(tmp_path):
    (tmp_path / "b.json").write_text(json.dumps([{"file": "x.mp4", "bbox": [[0, 0, 1]]}]))
    with pytest.raises(EvalDataError):
        load_boxes(tmp_path / "b.json")
    (tmp_path / "c.json").write_text("{not json")
    with pytest.raises(EvalDataError):
        load_boxes(tmp_path / "c.json")
    (tmp_path / "d.json").write_text(json.dumps([{"file": "x", "bbox": [[0, 0, 1, 1]], "time_sec": -1}]))
    with pytest.raises(EvalDataError):
        load_boxes(tmp_path / "d.json")


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
    recs = [dataclasses.replace(r) for r in test_records[:3]]  # copies: the fixture is shared
    for r, labels in zip(recs, [("/a1",), ("/a2",), ("/b",)]):
        r.labels, r.visible = labels, labels
    rel = relevance_matrices(recs, onto)
    # same class 2; siblings under the non-root /a 1; only the root in common 0
    assert rel["image->audio"].tolist() == [[2, 1, 0], [1, 2, 0], [0, 0, 2]]


def test_eval_avc_on_videos_of_different_sizes(tmp_path):
    """A real archive mixes frame sizes: the evaluation decodes every frame at the model's input size
    (as the indexer does), so a folder of 48x64, 64x96 and 90x160 videos evaluates instead of failing to stack."""
    import csv

    import torch

    from avlearn.checkpoint import save_checkpoint
    from avlearn.eval.avc import evaluate_avc
    from avlearn.models import create_model
    from avlearn.testing import make_tone_video

    torch.manual_seed(0)
    save_checkpoint(tmp_path / "ave", create_model("ave_net", "test_tiny"))
    data = tmp_path / "mixed"
    data.mkdir()
    rows = []
    for i, (size, freq) in enumerate([((48, 64), 220.0), ((64, 96), 440.0), ((90, 160), 880.0), ((48, 64), 330.0)]):
        make_tone_video(data / f"v{i}.mp4", seconds=2.0, size=size, freq_hz=freq)
        rows.append([f"v{i}.mp4", "low" if freq < 400 else "high", ""])
    with open(data / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows([["path", "label", "visible"], *rows])
    out = evaluate_avc(tmp_path / "ave", data, device="cpu")
    assert out["segments"] == 8 and out["videos"] == 4
    assert out["trained"]["retrieval"]["image->audio"]["queries"] == 8.0  # every segment has a same-label clip besides its own
