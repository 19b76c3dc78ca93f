"""Labelled train/test splits of videos for the action probe: a synthetic world, any two labelled
sources, or a local copy of UCF101 / HMDB51 in its official layout with the official split files.

- World (``world_split``): ``splits/train.csv`` and ``splits/test.csv`` of a synthetic world
  (``avlearn synth``; the motion world labels each video with its kind of motion).
- Two sources (``sources_split``): anything ``avlearn.data.sources.load_source`` reads, each clip's
  class its first label.
- UCF101 (``ucf101_split``): ``ROOT/<Class>/v_<Class>_gXX_cYY.avi`` and the official lists
  ``classInd.txt`` ("1 ApplyEyeMakeup"), ``trainlist0N.txt`` ("ApplyEyeMakeup/v_..._g08_c01.avi 1")
  and ``testlist0N.txt`` ("ApplyEyeMakeup/v_..._g01_c01.avi"), N = 1..3, looked up in ``lists_dir``,
  else in ``ROOT/ucfTrainTestlist``, ``ROOT/../ucfTrainTestlist`` or ``ROOT``.
- HMDB51 (``hmdb51_split``): ``ROOT/<class>/<video>.avi`` and the official files
  ``<class>_test_split<N>.txt`` ("<video>.avi 1"; 1 = train, 2 = test, 0 = unused), looked up in
  ``lists_dir``, else in ``ROOT/testTrainMulti_7030_splits``, ``ROOT/../testTrainMulti_7030_splits`` or ``ROOT``.

Every split is checked for hygiene: no video file (by resolved path) on both sides
(:func:`check_disjoint`). Videos listed but absent are counted in ``missing``, never fatal.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from avlearn.data.spans import ClipSpan

log = logging.getLogger(__name__)

UCF_LISTS = "ucfTrainTestlist"
HMDB_LISTS = "testTrainMulti_7030_splits"


@dataclass
class LabelledSplit:
    """Labelled clips on two sides: the probe is fitted on ``train`` and scored on ``test``.

    Attributes:
        name: where it came from ("world", "sources", "ucf101 split 1", ...).
        train, test: clips, each with its class as ``labels[0]``.
        missing: one dict per listed video whose file was not found.
    """

    name: str
    train: list[ClipSpan]
    test: list[ClipSpan]
    missing: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_disjoint(self.train, self.test)

    @property
    def classes(self) -> list[str]:
        """The classes of the training side, sorted."""
        return sorted({s.labels[0] for s in self.train if s.labels})


def check_disjoint(train: list[ClipSpan], test: list[ClipSpan]) -> None:
    """Raise ValueError when a video file (resolved path) is on both sides of a split."""
    seen = {os.path.realpath(s.path) for s in train}
    both = sorted({os.path.realpath(s.path) for s in test} & seen)
    if both:
        raise ValueError(f"{len(both)} video(s) are in both the probe's training and test clips (first: {both[0]}); give disjoint splits")


def _labelled(spans: list[ClipSpan]) -> list[ClipSpan]:
    return [s for s in spans if s.labels]


def sources_split(train: str | os.PathLike, test: str | os.PathLike, *, name: str = "sources") -> LabelledSplit:
    """Two labelled sources (``load_source`` specs); clips without a label are left out."""
    from avlearn.data.sources import load_source

    a, b = load_source(train), load_source(test)
    return LabelledSplit(name, _labelled(a.spans), _labelled(b.spans), list(a.missing) + list(b.missing))


def world_split(world: str | os.PathLike) -> LabelledSplit:
    """``splits/train.csv`` and ``splits/test.csv`` of a synthetic world (or of any folder laid out so).

    Raises:
        FileNotFoundError: the folder has no such splits.
    """
    from avlearn.data.splits import resolve_split

    return sources_split(resolve_split(world, "train"), resolve_split(world, "test"), name="world")


def _find_lists(root: Path, lists_dir: str | os.PathLike | None, folder: str, probe_name: str) -> Path:
    candidates = [Path(lists_dir)] if lists_dir else [root / folder, root.parent / folder, root]
    for c in candidates:
        if (c / probe_name).is_file():
            return c
    where = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(f"no {probe_name} in {where}; pass the folder of the official split files with --split-lists")


def _check_split_number(split: int) -> None:
    if split not in (1, 2, 3):
        raise ValueError(f"the official splits are 1, 2 and 3, got {split}")


def _span(root: Path, rel: str, label: str, missing: list[dict]) -> ClipSpan | None:
    path = root / rel
    if not path.is_file():
        missing.append({"clip_id": rel, "path": str(path), "error": "MissingMedia", "reason": "listed in the split files, not found"})
        return None
    return ClipSpan(rel, str(path.resolve()), labels=(label,), visible=(label,))


def ucf101_split(root: str | os.PathLike, split: int = 1, *, lists_dir: str | os.PathLike | None = None) -> LabelledSplit:
    """UCF101 split ``split`` (1-3) from the official ``classInd.txt``, ``trainlist0N.txt`` and ``testlist0N.txt``.

    The class of a video is the folder in its listed path, checked against ``classInd.txt``.

    Raises:
        FileNotFoundError: the split files are not found.
        ValueError: a listed class is not in classInd.txt, or a bad split number.
    """
    _check_split_number(split)
    root = Path(root)
    lists = _find_lists(root, lists_dir, UCF_LISTS, "classInd.txt")
    classes = {}
    for line in (lists / "classInd.txt").read_text().splitlines():
        if line.strip():
            index, name = line.split()
            classes[name] = int(index)
    missing: list[dict] = []
    sides: dict[str, list[ClipSpan]] = {}
    for side in ("train", "test"):
        path = lists / f"{side}list0{split}.txt"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found (UCF101 split {split})")
        spans = []
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            rel = line.split()[0].replace("\\", "/")
            label = rel.split("/")[0]
            if label not in classes:
                raise ValueError(f"{path}:{n}: class {label!r} is not in classInd.txt")
            span = _span(root, rel, label, missing)
            if span is not None:
                spans.append(span)
        sides[side] = spans
    if missing:
        log.warning("UCF101 split %d: %d listed videos not found under %s (first: %s)", split, len(missing), root, missing[0]["path"])
    return LabelledSplit(f"ucf101 split {split}", sides["train"], sides["test"], missing)


def hmdb51_split(root: str | os.PathLike, split: int = 1, *, lists_dir: str | os.PathLike | None = None) -> LabelledSplit:
    """HMDB51 split ``split`` (1-3) from the official ``<class>_test_split<N>.txt`` files (1 = train, 2 = test, 0 = unused).

    Raises:
        FileNotFoundError: no split file is found.
        ValueError: a line whose mark is not 0, 1 or 2, or a bad split number.
    """
    _check_split_number(split)
    root = Path(root)
    suffix = f"_test_split{split}.txt"
    candidates = [Path(lists_dir)] if lists_dir else [root / HMDB_LISTS, root.parent / HMDB_LISTS, root]
    lists = next((c for c in candidates if c.is_dir() and any(c.glob(f"*{suffix}"))), None)
    if lists is None:
        where = ", ".join(str(c) for c in candidates)
        raise FileNotFoundError(f"no *{suffix} in {where}; pass the folder of the official split files with --split-lists")
    missing: list[dict] = []
    sides: dict[str, list[ClipSpan]] = {"train": [], "test": []}
    for path in sorted(lists.glob(f"*{suffix}")):
        label = path.name[: -len(suffix)]
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            video, mark = line.split()[:2]
            if mark not in ("0", "1", "2"):
                raise ValueError(f"{path}:{n}: expected 0, 1 or 2 after the video name, got {mark!r}")
            if mark == "0":
                continue
            span = _span(root, f"{label}/{video}", label, missing)
            if span is not None:
                sides["train" if mark == "1" else "test"].append(span)
    if missing:
        log.warning("HMDB51 split %d: %d listed videos not found under %s (first: %s)", split, len(missing), root, missing[0]["path"])
    return LabelledSplit(f"hmdb51 split {split}", sides["train"], sides["test"], missing)


def action_split(
    data: str | os.PathLike | None = None,
    *,
    train: str | os.PathLike | None = None,
    test: str | os.PathLike | None = None,
    ucf101: str | os.PathLike | None = None,
    hmdb51: str | os.PathLike | None = None,
    split: int = 1,
    lists_dir: str | os.PathLike | None = None,
) -> LabelledSplit:
    """The labelled split the options name: ``ucf101`` or ``hmdb51`` (official split ``split``), else
    ``train`` + ``test`` sources, else the world ``data``'s train/test splits.

    Raises:
        ValueError: more than one kind given, or only one of train / test.
        FileNotFoundError: the world has no train/test splits, or split files are missing.
    """
    given = [k for k, v in (("ucf101", ucf101), ("hmdb51", hmdb51), ("probe_train/probe_test", train or test)) if v]
    if len(given) > 1:
        raise ValueError(f"give one labelled set for the probe, got {' and '.join(given)}")
    if ucf101:
        return ucf101_split(ucf101, split, lists_dir=lists_dir)
    if hmdb51:
        return hmdb51_split(hmdb51, split, lists_dir=lists_dir)
    if train or test:
        if not (train and test):
            raise ValueError("give both --probe-train and --probe-test (labelled sources of different videos)")
        return sources_split(train, test)
    if data is None:
        raise ValueError("no labelled set for the probe: give a world with splits, --probe-train/--probe-test, --ucf101 or --hmdb51")
    return world_split(data)
