"""UCF101 / HMDB51 official layouts and split files, on generated folders laid out as the real sets are."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from avlearn.data.action_sets import action_split, hmdb51_split, ucf101_split

CLASSES = ["ApplyEyeMakeup", "Biking", "JumpRope"]


def _video(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, dst)


@pytest.fixture
def ucf_root(index_videos, tmp_path) -> Path:
    """UCF-101/<Class>/v_<Class>_gXX_cYY.avi with ucfTrainTestlist/ beside the class folders (the official archive's layout).

    Groups 1-2 are test in split 1, groups 3-4 train (as the official lists split by group); one listed video is absent.
    """
    root = tmp_path / "UCF-101"
    lists = tmp_path / "ucfTrainTestlist"
    lists.mkdir()
    (lists / "classInd.txt").write_text("".join(f"{i} {c}\r\n" for i, c in enumerate(CLASSES, 1)))  # CRLF, as shipped
    train, test = [], []
    for c in CLASSES:
        for g in (1, 2, 3, 4):
            rel = f"{c}/v_{c}_g{g:02d}_c01.avi"
            if not (c == "JumpRope" and g == 4):  # listed, not on disk
                _video(index_videos / "videos" / f"idx{g % 2}.mp4", root / rel)
            (test if g <= 2 else train).append(rel)
    (lists / "trainlist01.txt").write_text("".join(f"{rel} {CLASSES.index(rel.split('/')[0]) + 1}\r\n" for rel in train))
    (lists / "testlist01.txt").write_text("".join(f"{rel}\r\n" for rel in test))
    return root


def test_ucf101_official_split_files(ucf_root) -> None:
    split = ucf101_split(ucf_root, 1)
    assert split.name == "ucf101 split 1" and split.classes == CLASSES
    assert len(split.train) == 5 and len(split.test) == 6 and len(split.missing) == 1  # JumpRope g04 is listed but absent
    assert all(s.labels[0] == Path(s.path).parent.name for s in split.train + split.test)
    assert {s.clip_id.split("_g")[1][:2] for s in split.test} == {"01", "02"}
    assert not {s.path for s in split.train} & {s.path for s in split.test}
    with pytest.raises(FileNotFoundError, match="trainlist02"):
        ucf101_split(ucf_root, 2)
    with pytest.raises(ValueError, match="1, 2 and 3"):
        ucf101_split(ucf_root, 4)
    with pytest.raises(FileNotFoundError, match="--split-lists"):
        ucf101_split(ucf_root, 1, lists_dir=ucf_root)  # the wrong folder for the lists


def test_ucf101_lists_that_put_a_video_on_both_sides_are_refused(ucf_root) -> None:
    lists = ucf_root.parent / "ucfTrainTestlist"
    (lists / "testlist01.txt").write_text((lists / "testlist01.txt").read_text() + "Biking/v_Biking_g03_c01.avi\r\n")
    with pytest.raises(ValueError, match="in both the probe's training and test clips"):
        ucf101_split(ucf_root, 1)


def test_hmdb51_official_split_files(index_videos, tmp_path) -> None:
    root, lists = tmp_path / "hmdb51", tmp_path / "testTrainMulti_7030_splits"
    lists.mkdir()
    for c in ("brush_hair", "cartwheel"):
        rows = []
        for n, mark in enumerate([1, 1, 2, 0, 2]):
            name = f"{c}_clip{n}.avi"
            _video(index_videos / "videos" / f"idx{n % 2}.mp4", root / c / name)
            rows.append(f"{name} {mark} \n")  # the official files end each line with a space
        (lists / f"{c}_test_split1.txt").write_text("".join(rows))
    split = hmdb51_split(root, 1)
    assert split.classes == ["brush_hair", "cartwheel"] and len(split.train) == 4 and len(split.test) == 4 and not split.missing
    assert all(s.labels[0] in s.path for s in split.train + split.test)  # the class comes from the split file's name
    (lists / "cartwheel_test_split1.txt").write_text("cartwheel_clip0.avi 7\n")
    with pytest.raises(ValueError, match="expected 0, 1 or 2"):
        hmdb51_split(root, 1)


def test_action_split_picks_one_set(ucf_root, tmp_path) -> None:
    assert action_split(ucf101=ucf_root, split=1).name == "ucf101 split 1"
    with pytest.raises(ValueError, match="one labelled set"):
        action_split(ucf101=ucf_root, hmdb51=tmp_path)
    with pytest.raises(ValueError, match="both --probe-train and --probe-test"):
        action_split(train=ucf_root)
    with pytest.raises(FileNotFoundError):
        action_split(tmp_path)  # a folder without splits/
