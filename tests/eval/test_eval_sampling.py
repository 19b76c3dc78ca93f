"""Evaluations sample before they decode: the seeded draw of clips, the same from a folder, a csv and a
prepared shard dir; only the drawn files are decoded; the vectorised relevance equals the old loops."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest

from avlearn.data.ontology import Ontology
from avlearn.data.prepare import prepare
from avlearn.data.segments import load_segment_records
from avlearn.eval.avc import evaluate_embedder, label_overlap, relevance_matrices
from avlearn.eval.sampling import iter_sampled_spans, sample_order, sample_segments
from avlearn.testing import make_tone_video

SR = 16000


@pytest.fixture(scope="module")
def tone_folder(tmp_path_factory) -> Path:
    """12 clips of 3 s (3 segments each), 32x32, each its own tone and its own grey level."""
    root = tmp_path_factory.mktemp("tones")
    for i in range(12):
        make_tone_video(root / f"v{i:02d}.mp4", seconds=3.0, size=(32, 32), freq_hz=200.0 + 60.0 * i)
    return root


def _keys(sample) -> list[tuple[str, float]]:
    return [(os.path.realpath(r.path), r.start_sec) for r in sample.records]


def test_only_the_drawn_clips_are_decoded(tone_folder, tmp_path):
    """12 clips, max_segments 4, one segment per clip: 4 clips decoded. Replacing every clip not drawn with
    garbage changes nothing (a decoded garbage file would be counted and would change the draw)."""
    kw = dict(size_px=32, sample_rate_hz=SR, segment_sec=1.0, hop_sec=1.0)
    folder = tmp_path / "clips"  # a copy: its files are spoiled below (the draw hashes the real path, so the copy is drawn in place)
    folder.mkdir()
    for p in sorted(tone_folder.glob("*.mp4")):
        (folder / p.name).write_bytes(p.read_bytes())
    first = sample_segments(folder, max_segments=4, segments_per_clip=1, seed=3, **kw)
    rep = first.report
    assert rep["clips_listed"] == 12 and rep["clips_decoded"] == 4 and rep["clips_kept"] == 4 and rep["segments"] == 4
    assert rep["clips_without_segments"] == 0
    drawn = {r.clip_id for r in first.records}
    assert drawn == {s.clip_id for s in sample_order(first.spans, 3)[:4]}  # the first four of the seeded order
    for p in sorted(folder.glob("*.mp4")):  # every clip NOT drawn becomes a text file named .mp4
        if p.name not in drawn:
            p.write_bytes(b"this is not a video\n" * 50)
    again = sample_segments(folder, max_segments=4, segments_per_clip=1, seed=3, **kw)
    assert again.report["clips_decoded"] == 4 and again.report["clips_without_segments"] == 0
    assert [r.key for r in again.records] == [r.key for r in first.records]
    for a, b in zip(first.records, again.records):
        assert np.array_equal(a.frame, b.frame) and np.array_equal(a.audio, b.audio)
    # the control: decoding the whole folder does meet the garbage (so the check above can fail)
    everything = sample_segments(folder, max_segments=0, **kw)
    assert everything.report["clips_decoded"] == 12 and everything.report["clips_without_segments"] == 8


def test_budget_and_whole_split(tone_folder):
    kw = dict(size_px=32, sample_rate_hz=SR)
    part = sample_segments(tone_folder, max_segments=7, seed=0, **kw)  # whole clips of 3 segments: 3 + 3 + 1
    assert part.report["segments"] == 7 and part.report["clips_decoded"] == 3
    assert sorted(len([r for r in part.records if r.clip_id == c]) for c in {r.clip_id for r in part.records}) == [1, 3, 3]
    assert [r.key for r in part.records] == sorted(r.key for r in part.records)
    full = sample_segments(tone_folder, max_segments=1000, seed=0, **kw)  # the split fits: every segment, as a full decode gives
    ref = load_segment_records(tone_folder, size_px=32, sample_rate_hz=SR)
    assert [r.key for r in full.records] == sorted(r.key for r in ref) and len(ref) == 36
    assert [s.clip_id for s in sample_order(full.spans, 0)] != [s.clip_id for s in sample_order(full.spans, 1)]  # another seed, another order


def test_same_draw_from_folder_csv_and_shard_dir(tone_folder, tmp_path):
    """A csv naming the same files (another order, other clip ids) and a shard dir prepared from the folder
    give the same clips and segments; media equal up to the shard codecs (frames JPEG q95, audio 16-bit FLAC)."""
    manifest = tmp_path / "list.csv"
    with open(manifest, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "clip_id"])
        for p in sorted(tone_folder.glob("*.mp4"), reverse=True):
            w.writerow([os.path.relpath(p, tmp_path), f"clip-{p.stem}"])
    shards = tmp_path / "shards"
    summary = prepare(tone_folder, shards, workers=1, frame_size_px=32, clips_per_shard=5, progress=False)
    assert summary["clips_ok"] == 12
    kw = dict(max_segments=5, segments_per_clip=2, seed=7, size_px=32, sample_rate_hz=SR)
    folder = sample_segments(tone_folder, **kw)
    listed = sample_segments(manifest, **kw)
    sharded = sample_segments(shards, **kw)
    assert folder.report["source_kind"] == "folder" and listed.report["source_kind"] == "manifest" and sharded.report["source_kind"] == "shards"
    assert _keys(folder) == _keys(sharded) and sorted(_keys(folder)) == sorted(_keys(listed)) and len(_keys(folder)) == 5
    assert sharded.report["clips_decoded"] == folder.report["clips_decoded"] == 3  # 2 + 2 + 1
    for a, b in zip(folder.records, sharded.records):
        assert a.key == b.key
        assert np.abs(a.frame.astype(int) - b.frame.astype(int)).max() <= 2  # JPEG of a flat frame
        np.testing.assert_allclose(a.audio, b.audio, atol=1e-4)  # 16-bit FLAC: steps of 3e-5
    assert all(
        sorted(_keys(sample_segments(src, **{**kw, "seed": 8}))) == sorted(_keys(sample_segments(tone_folder, **{**kw, "seed": 8})))
        for src in (manifest, shards)
    )


def test_eval_on_shard_dir_equals_folder(tiny_world, tmp_path):
    """`evaluate_avc` on a world's videos and on a shard dir prepared from them: the same segments; with an oracle
    the same figures exactly; with a real (random-init) network the same embeddings up to the shard codecs (JPEG q95
    frames, 16-bit FLAC audio) and the figures within 0.03."""
    import torch
    from test_avc_eval import Oracle  # tests/eval is on sys.path (rootdir-relative imports)

    from avlearn.checkpoint import save_checkpoint
    from avlearn.embed import Embedder
    from avlearn.eval.avc import evaluate_avc
    from avlearn.models import create_model

    videos = tiny_world / "videos"  # 16 labelled clips (labels.csv one folder up)
    shards = tmp_path / "shards"
    prepare(videos, shards, workers=1, frame_size_px=32, clips_per_shard=2, progress=False)
    kw = dict(max_segments=7, segments_per_clip=2, seed=0, size_px=32, sample_rate_hz=SR)
    raw, sh = sample_segments(videos, **kw), sample_segments(shards, **kw)
    assert [r.key for r in raw.records] == [r.key for r in sh.records] and raw.report["segments"] == 7
    assert raw.report["clips_listed"] > raw.report["clips_kept"]  # a real draw, not the whole split
    oracle = [evaluate_embedder(Oracle(s.records), s.records) for s in (raw, sh)]
    assert json.dumps(oracle[0], sort_keys=True) == json.dumps(oracle[1], sort_keys=True)

    torch.manual_seed(0)
    save_checkpoint(tmp_path / "ave", create_model("ave_net", "test_tiny"))
    emb = Embedder.from_checkpoint(tmp_path / "ave", device="cpu")
    for embed, field, floor in ((emb.embed_images, "frame", 0.98), (emb.embed_audio, "audio", 0.9999)):  # JPEG q95 frames (min 0.992 over all 48), FLAC
        x, y = (embed(np.stack([getattr(r, field) for r in s.records])) for s in (raw, sh))
        cos = (x * y).sum(1) / np.linalg.norm(x, axis=1) / np.linalg.norm(y, axis=1)
        assert cos.min() > floor, (field, cos)
    # end to end on every segment (the whole listing: no draw, so the same figures wherever the test runs); measured
    # gaps 0.0131 at most (image->image mAP); on a 7-segment draw a swap of two near-tied candidates of this
    # random-init network moved a figure by up to 0.21, too coarse to test
    a = evaluate_avc(tmp_path / "ave", videos, max_segments=0, device="cpu")
    b = evaluate_avc(tmp_path / "ave", shards, max_segments=0, device="cpu")
    assert a["segments"] == b["segments"] == 48 and a["sample"]["clips_decoded"] == b["sample"]["clips_decoded"] == 16
    assert a["trained"]["avc"]["pairs"] == b["trained"]["avc"]["pairs"] == 96
    assert a["trained"]["avc"]["accuracy_all"] == pytest.approx(b["trained"]["avc"]["accuracy_all"], abs=0.03)
    for direction in ("image->audio", "audio->image", "image->image", "audio->audio"):
        assert a["trained"]["retrieval"][direction]["queries"] == b["trained"]["retrieval"][direction]["queries"]
        for key in ("mAP", "nDCG@30"):
            assert a["trained"]["retrieval"][direction][key] == pytest.approx(b["trained"]["retrieval"][direction][key], abs=0.03), (direction, key)


def test_sampled_spans_keep_listing_order(tone_folder):
    from avlearn.data.sources import load_source

    spans = load_source(tone_folder).spans
    got = list(iter_sampled_spans(spans, 5, seed=2))
    assert len(got) == 5 and got == [s for s in spans if s in got]
    assert {s.clip_id for s in got} == {s.clip_id for s in sample_order(spans, 2)[:5]}
    assert list(iter_sampled_spans(spans, 0, seed=2)) == spans


# ---------------------------------------------------------------- relevance: vectorised == the old loops


def _old_relevance(label_sets, ontology=None) -> np.ndarray:
    """The O(N^2) Python loops relevance_matrices used before it was vectorised (the reference)."""
    labels = [set(s) for s in label_sets]
    n = len(labels)
    if ontology is not None:
        return np.array([[ontology.relevance(labels[q], labels[i]) for i in range(n)] for q in range(n)], dtype=np.float64)
    return np.array([[float(bool(labels[i] & labels[q])) for i in range(n)] for q in range(n)])


def _random_ontology(tmp_path, rng, classes: int = 40) -> Ontology:
    """A random DAG: 3 roots, every other class 1-2 parents among earlier classes (several paths to a root)."""
    mids = [f"/c{i}" for i in range(classes)]
    children: dict[str, list[str]] = {m: [] for m in mids}
    for i in range(3, classes):
        for p in rng.choice(i, size=int(rng.integers(1, 3)), replace=False):
            children[mids[p]].append(mids[i])
    (tmp_path / "ontology.json").write_text(json.dumps([{"id": m, "name": m.upper(), "child_ids": children[m]} for m in mids]))
    return Ontology.load(tmp_path / "ontology.json")


def test_vectorised_relevance_equals_reference(tmp_path):
    rng = np.random.default_rng(0)
    onto = _random_ontology(tmp_path, rng)
    pool = [*onto.names, "/unknown1", "/unknown2"]  # unknown mids count only for exact matches
    sets = [tuple(rng.choice(pool, size=int(rng.integers(0, 4)), replace=False)) for _ in range(150)]
    ref = _old_relevance(sets, onto)
    got = onto.relevance_matrix(sets, chunk=17)  # several chunks, the last one short
    assert got.dtype == np.int8 and np.array_equal(got, ref)
    assert {0, 1, 2} <= set(np.unique(ref).tolist())  # every grade occurs
    assert np.array_equal(label_overlap(sets), _old_relevance(sets))


def test_relevance_matrices_use_the_vectorised_forms(tmp_path, tone_folder):
    rng = np.random.default_rng(1)
    onto = _random_ontology(tmp_path, rng, classes=12)
    records = load_segment_records(tone_folder, size_px=32, sample_rate_hz=SR)
    for i, r in enumerate(records):
        r.labels = (f"/c{(i * 5) % 12}",) if i % 7 else ()
    sets = [r.labels for r in records]
    assert np.array_equal(relevance_matrices(records, onto)["image->audio"], _old_relevance(sets, onto))
    assert np.array_equal(relevance_matrices(records)["audio->audio"], _old_relevance(sets))


# ---------------------------------------------------------------- the temporal evaluations draw before they decode


def _spoil_all_but(folder: Path, keep: set[str]) -> None:
    for p in sorted(folder.glob("*.mp4")):
        if p.name not in keep:
            p.write_bytes(b"this is not a video\n" * 50)


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for p in sorted(src.glob("*.mp4")):
        (dst / p.name).write_bytes(p.read_bytes())
    return dst


def test_pretext_videos_are_drawn_before_decoding(tone_folder, tmp_path):
    from avlearn.eval.temporal import load_eval_videos

    folder = _copy(tone_folder, tmp_path / "clips")
    pre = {"image_size_px": [32, 32]}
    videos, rep = load_eval_videos(str(folder), pre, max_videos=4, seed=5, what="test")
    assert rep == {"listed": 12, "drawn": 4, "decoded": 4, "skipped": 0, "missing": 0}
    names = [Path(v.path).name for v in videos]
    assert names == sorted(names) and len(videos[0].frames) == 75  # the listing's order; every frame of a 3 s clip at 25 fps
    _spoil_all_but(folder, set(names))
    again, rep2 = load_eval_videos(str(folder), pre, max_videos=4, seed=5, what="test")
    assert rep2["skipped"] == 0 and [Path(v.path).name for v in again] == names
    assert all(np.array_equal(a.frames, b.frames) for a, b in zip(videos, again))
    assert load_eval_videos(str(folder), pre, max_videos=0, seed=5, what="test")[1]["skipped"] == 8  # the control: all of them meet the garbage


def test_probe_clips_are_drawn_before_decoding(tone_folder, tmp_path):
    from avlearn.data.action_sets import LabelledSplit
    from avlearn.data.sources import load_source
    from avlearn.eval.probe import probe_actions
    from avlearn.models import create_model

    folder = _copy(tone_folder, tmp_path / "clips")
    # 4 classes with 2 training clips each: any 3 drawn training clips hold at least 2 classes (the probe runs)
    spans = [dataclasses.replace(s, labels=(f"class{i // 2 if i < 8 else i - 8}",)) for i, s in enumerate(load_source(folder).spans)]
    split = LabelledSplit("tones", spans[:8], spans[8:])
    model = create_model("shuffle_learn", "test_tiny")
    kw = dict(max_clips=3, moments=2, random_inits=1, supervised_epochs=0, seed=1)
    out = probe_actions(model, split, **kw)
    assert out["train_clips_listed"] == 8 and out["test_clips_listed"] == 4 and out["skipped"] == 0
    assert out["train_clips"] == 3 and out["test_clips"] + out["test_clips_of_unseen_classes"] == 3
    drawn = {Path(s.path).name for side in (split.train, split.test) for s in iter_sampled_spans(side, 3, 1)}
    _spoil_all_but(folder, drawn)
    again = probe_actions(model, split, **kw)
    assert again["skipped"] == 0 and again["train_clips"] == 3
    assert "layers" in out and again["layers"] == out["layers"]  # the same clips decoded: the same probe figures
    assert probe_actions(model, split, **{**kw, "max_clips": 0})["skipped"] == 6  # the control: 12 clips, 6 spoiled


def test_shard_dir_cut_otherwise_is_one_line_exit_2(tone_folder, tmp_path, capsys):
    """`avlearn eval avc --data SHARDS` on shards cut on another grid than the model's: one line naming the fix, exit 2."""
    import torch

    from avlearn.checkpoint import save_checkpoint
    from avlearn.cli import main
    from avlearn.models import create_model

    shards = tmp_path / "shards"
    prepare(tone_folder, shards, workers=1, frame_size_px=32, segment_sec=1.0, hop_sec=0.5, clips_per_shard=6, progress=False)
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "ave", create_model("ave_net", "test_tiny"))
    code = main(["eval", "avc", "--checkpoint", str(tmp_path / "ave"), "--data", str(shards), "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "Traceback" not in err[0], err
    assert "every 0.5 s" in err[0] and "avlearn prepare --segment-sec 1 --hop-sec 1" in err[0], err[0]
