"""Sources: folders (+labels.csv), manifests (CSV/JSONL), AudioSet CSVs (both header forms), shard dirs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from avlearn.data.sources import SourceError, is_shard_dir, load_source, split_multi
from avlearn.data.spans import ClipSpan
from avlearn.testing import make_tone_video


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_tone_video(tmp_path_factory.mktemp("src") / "a.mp4", seconds=1.0, size=(32, 48))


def _copy(clip: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(clip, dst)
    return dst


def test_split_multi_forms():
    assert split_multi("dog; cat;") == ("dog", "cat")
    assert split_multi('["dog", "cat"]') == ("dog", "cat")
    assert split_multi(["dog"]) == ("dog",)
    assert split_multi("") == () and split_multi(None) == ()
    with pytest.raises(SourceError):
        split_multi("[not json")


def test_folder_recursive_with_labels(tmp_path, clip):
    root = tmp_path / "world"
    _copy(clip, root / "videos" / "b.mp4")
    _copy(clip, root / "videos" / "sub" / "a.MKV")  # extension check is case-insensitive
    _copy(clip, root / "videos" / "c.webm")
    (root / "videos" / "notes.txt").write_text("not media")
    # labels.csv above the media folder, paths relative to the csv's folder
    (root / "labels.csv").write_text("path,label,visible\nvideos/b.mp4,dog,dog;cat\nvideos/sub/a.MKV,cat,\n")
    # a nearer labels.csv overrides the farther one
    (root / "videos" / "sub" / "labels.csv").write_text("path,label,visible\na.MKV,bird,bird\n")
    src = load_source(root / "videos")
    assert src.kind == "folder"
    assert [s.clip_id for s in src.spans] == ["b.mp4", "c.webm", "sub/a.MKV"]
    by_id = {s.clip_id: s for s in src.spans}
    assert by_id["b.mp4"].labels == ("dog",) and by_id["b.mp4"].visible == ("dog", "cat")
    assert by_id["sub/a.MKV"].labels == ("bird",) and by_id["sub/a.MKV"].visible == ("bird",)
    assert by_id["c.webm"].labels == ()
    assert all(Path(s.path).is_absolute() and Path(s.path).is_file() for s in src.spans)
    assert [(m["clip_id"], m["error"]) for m in src.missing] == [("notes.txt", "NotMedia")]  # accounted for, not decoded


def test_manifest_csv_and_jsonl(tmp_path, clip):
    _copy(clip, tmp_path / "media" / "x.mp4")
    _copy(clip, tmp_path / "media" / "y.mp4")
    (tmp_path / "m.csv").write_text('path,start_sec,end_sec,labels,visible\nmedia/x.mp4,0.5,2.5,dog;cat,dog\nmedia/y.mp4,,,"[""bird""]",\nmedia/gone.mp4,,,,\n')
    src = load_source(tmp_path / "m.csv")
    assert src.kind == "manifest"
    x, y = src.spans
    assert x == ClipSpan("media/x.mp4", str((tmp_path / "media" / "x.mp4").resolve()), 0.5, 2.0, ("dog", "cat"), ("dog",))
    assert y.start_sec == 0.0 and y.duration_sec is None and y.labels == ("bird",)
    assert [m["clip_id"] for m in src.missing] == ["media/gone.mp4"]
    assert src.missing[0]["error"] == "MissingMedia"

    lines = [
        {"path": "media/x.mp4", "start_sec": 0, "end_sec": 1, "labels": ["dog"]},
        {"path": "media/x.mp4", "start_sec": 1, "end_sec": 2, "labels": "cat;bird", "visible": "cat"},
    ]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    src = load_source(tmp_path / "m.jsonl")
    assert [s.clip_id for s in src.spans] == ["media/x.mp4@0.000", "media/x.mp4@1.000"]  # same file twice: ids made unique
    assert src.spans[1].labels == ("cat", "bird") and src.spans[1].visible == ("cat",)


def test_bad_manifests_raise(tmp_path):
    (tmp_path / "bad.csv").write_text("file,label\na.mp4,dog\n")
    with pytest.raises(SourceError, match="path"):
        load_source(tmp_path / "bad.csv")
    (tmp_path / "bad.jsonl").write_text("{not json}\n")
    with pytest.raises(SourceError, match="not JSON"):
        load_source(tmp_path / "bad.jsonl")
    (tmp_path / "span.csv").write_text("path,start_sec,end_sec\na.mp4,2,1\n")
    with pytest.raises(SourceError, match="not after"):
        load_source(tmp_path / "span.csv")
    with pytest.raises(FileNotFoundError):
        load_source(tmp_path / "nope")
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(SourceError):
        load_source(tmp_path / "x.txt")


AUDIOSET_ROWS = [
    ("abcdefghijk", 30.0, 40.0, "/m/09x0r,/t/dd00088"),  # found by the template
    ("ABCDEFGHIJK", 10.0, 20.0, "/m/04rlf"),  # found by the ytid fallback (cut clip, other name)
    ("zzzzzzzzzzz", 0.0, 10.0, "/m/0jbk"),  # found by the fallback as the whole video "{ytid}.mkv"
    ("missing0000", 5.0, 15.0, "/m/012xff"),  # missing
]


def _audioset_media(clip: Path, media: Path) -> None:
    _copy(clip, media / "abcdefghijk_30.000.mp4")
    _copy(clip, media / "nested" / "ABCDEFGHIJK_10000_20000.mp4")
    _copy(clip, media / "zzzzzzzzzzz.mkv")


@pytest.mark.parametrize("form", ["comments", "header"])
def test_audioset_both_header_forms(tmp_path, clip, form):
    media = tmp_path / "media"
    _audioset_media(clip, media)
    body = "".join(f'{y}, {s:.3f}, {e:.3f}, "{labels}"\n' for y, s, e, labels in AUDIOSET_ROWS)
    if form == "comments":
        head = "# Segments csv created Sun Mar  5 10:54:31 2017\n# num_ytids=4, num_segs=4, num_unique_labels=5, num_positive_labels=5\n# YTID, start_seconds, end_seconds, positive_labels\n"
    else:
        head = "YTID,start_seconds,end_seconds,positive_labels\n"
    (tmp_path / "segs.csv").write_text(head + body)
    src = load_source(tmp_path / "segs.csv", media_dir=media)
    assert src.kind == "audioset"
    by_id = {s.clip_id: s for s in src.spans}
    assert set(by_id) == {"abcdefghijk_30.000", "ABCDEFGHIJK_10.000", "zzzzzzzzzzz_0.000"}
    a = by_id["abcdefghijk_30.000"]
    assert Path(a.path).name == "abcdefghijk_30.000.mp4" and a.start_sec == 0.0 and a.duration_sec == 10.0
    assert a.labels == ("/m/09x0r", "/t/dd00088")
    b = by_id["ABCDEFGHIJK_10.000"]
    assert Path(b.path).name == "ABCDEFGHIJK_10000_20000.mp4" and b.start_sec == 0.0  # fallback is case-sensitive
    z = by_id["zzzzzzzzzzz_0.000"]
    assert Path(z.path).name == "zzzzzzzzzzz.mkv" and z.start_sec == 0.0 and z.duration_sec == 10.0
    assert [m["ytid"] for m in src.missing] == ["missing0000"]
    assert src.missing[0]["path"].endswith("missing0000_5.000.mp4")


def test_audioset_whole_video_template_offsets(tmp_path, clip):
    media = tmp_path / "media"
    _copy(clip, media / "abcdefghijk.mp4")
    (tmp_path / "segs.csv").write_text('YTID,start_seconds,end_seconds,positive_labels\nabcdefghijk,0.500,1.000,"/m/09x0r"\n')
    (span,) = load_source(tmp_path / "segs.csv", media_dir=media, template="{ytid}.mp4").spans
    assert span.start_sec == 0.5 and span.duration_sec == 0.5  # a template without {start}: the file is the whole video


def test_audioset_bad_row(tmp_path):
    (tmp_path / "segs.csv").write_text("YTID,start_seconds,end_seconds,positive_labels\nabc,1.0\n")
    with pytest.raises(SourceError, match="4 fields"):
        load_source(tmp_path / "segs.csv")


def test_real_audioset_csvs(shared_data):
    firsts = {}
    for name, rows in (("balanced_train_segments.csv", 22160), ("eval_segments.csv", 20371)):
        src = load_source(shared_data / "audioset" / name, media_dir=shared_data / "video")
        assert src.spans == [] and len(src.missing) == rows  # no AudioSet media here: every row listed as missing
        assert all(m["clip_id"].startswith(m["ytid"]) for m in src.missing[:100])
        firsts[name] = src.missing[0]
    first = firsts["balanced_train_segments.csv"]
    assert first["ytid"] == "--PJHxphWEs" and first["clip_id"] == "--PJHxphWEs_30.000"


def test_real_folder_labels(shared_data):
    src = load_source(shared_data / "video")
    assert len(src.spans) == len([p for p in (shared_data / "video").iterdir() if p.suffix in {".mp4", ".webm", ".avi"}])
    by_id = {s.clip_id: s for s in src.spans}
    assert by_id["moviepy_video_with_failing_audio.mp4"].labels == ("airplane fly-over",)  # from ../labels.csv


def test_is_shard_dir(tmp_path):
    assert not is_shard_dir(tmp_path)
    (tmp_path / "prepare.json").write_text("{}")
    assert is_shard_dir(tmp_path)
    assert not is_shard_dir(tmp_path / "prepare.json")


def test_every_file_of_a_folder_is_a_clip_or_a_recorded_skip(tmp_path, clip):
    """Extensions outside the common list are tried (FFmpeg probes by content); hidden files,
    broken links and non-media files are listed with a reason; nothing is dropped silently."""
    root = tmp_path / "archive"
    for name in ("a.mpg", "b.ts", "c.flv", "d.3gp", "e.ogv", "f.unknownext", "noext"):
        _copy(clip, root / name)
    _copy(clip, root / ".hidden.mp4")
    _copy(clip, root / ".cache" / "x.mp4")
    (root / "cover.jpg").write_bytes(b"not really a jpeg")
    (root / "dangling.mp4").symlink_to(root / "gone.mp4")
    src = load_source(root)
    assert [s.clip_id for s in src.spans] == ["a.mpg", "b.ts", "c.flv", "d.3gp", "e.ogv", "f.unknownext", "noext"]
    assert sorted((m["clip_id"], m["error"]) for m in src.missing) == [
        (".cache", "HiddenFile"), (".hidden.mp4", "HiddenFile"), ("cover.jpg", "NotMedia"), ("dangling.mp4", "BrokenLink"),
    ]  # fmt: skip
    assert all(m["reason"] for m in src.missing)
    from avlearn.media import read_segments

    assert len(read_segments(src.spans[-1].path, size_px=(32, 32), sample_rate_hz=16000)) >= 1  # decoded by content
