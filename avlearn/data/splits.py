"""The split convention shared by training, evaluation and the action probe.

``resolve_split(data, split)`` maps a data spec to the source of one split, so "the val split
of a world" means the same everywhere.
"""

from __future__ import annotations

import os
from pathlib import Path

SPLITS = ("train", "val", "test")


def resolve_split(data: str | os.PathLike, split: str) -> str:
    """The source of ``split`` ("train" | "val" | "test") for a data spec.

    - a folder holding ``splits/{split}.csv`` (a synthetic world, or any folder laid out so): that csv;
    - ``.../train.csv`` (or val/test) given for another split: its sibling ``{split}.csv``;
    - otherwise ``data`` itself for "train", and FileNotFoundError for the others.
    """
    p = Path(data)
    if p.is_dir() and (p / "splits" / f"{split}.csv").is_file():
        return str(p / "splits" / f"{split}.csv")
    if p.is_file() and p.suffix == ".csv" and p.stem in SPLITS:
        sibling = p.with_name(f"{split}.csv")
        if sibling.is_file():
            return str(sibling)
    if split == "train":
        return str(p)
    raise FileNotFoundError(f"no {split!r} split for {os.fspath(data)} (expected {p / 'splits' / (split + '.csv')})")
