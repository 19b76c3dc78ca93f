"""Which video of the instance world goes to which split, and shows which category and instance.

Splits (``SPLITS``):
- ``test_unseen_categories``: every video of the held-out sounding categories (~their share of the videos);
- of the rest, ~10 % each to ``val`` (new videos of training instances), ``test`` (videos of the held-out,
  never-trained instances) and ``test_seen`` (new videos of training instances), the others to ``train``.
  Without held-out instances (one instance per category, or fraction 0) ``test`` holds new videos of the
  training instances and there is no ``test_seen``: the split of the single-template world.

Within a split, labels are balanced (each block of k consecutive videos holds each of its k categories once,
in a seeded order) and so are instances (each category cycles through its allowed instances in seeded blocks).
Everything is a function of the seed.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from avlearn.data._synth_run import seeded_rng, split_order

SPLITS = ("train", "val", "test", "test_seen", "test_unseen_categories")
_STREAM_SPLIT, _STREAM_LABELS, _STREAM_INSTANCES, _STREAM_HELDOUT = 4, 3, 6, 7


@dataclass(frozen=True)
class Slot:
    """One video's split, category (index into the sounding categories) and instance (index in its category)."""

    split: str
    category: int
    instance: int


@dataclass(frozen=True)
class SplitPlan:
    """Held-out instances and categories, and every video's slot.

    Attributes:
        instances: instances per category.
        heldout_instances: per sounding category, the sorted indices of its held-out instances (none for a
            held-out category: all of it is unseen).
        heldout_categories: sorted indices of the held-out sounding categories.
        slots: one per video.
    """

    instances: int
    heldout_instances: list[list[int]]
    heldout_categories: list[int]
    slots: list[Slot]

    def allowed(self, category: int, split: str) -> list[int]:
        """Instances of sounding category ``category`` that an object in a video of ``split`` may show."""
        everyone = list(range(self.instances))
        held = self.heldout_instances[category]
        if split == "test_unseen_categories" or category in self.heldout_categories:
            return everyone
        if split == "test" and held:
            return held
        return [i for i in everyone if i not in held]

    def split_indices(self) -> dict[str, list[int]]:
        """Video indices by split name (splits without videos left out)."""
        out: dict[str, list[int]] = {}
        for i, s in enumerate(self.slots):
            out.setdefault(s.split, []).append(i)
        return {name: out[name] for name in SPLITS if name in out}


def _heldout_instances(seed: int, name: str, count: int, fraction: float) -> list[int]:
    """round(fraction * count) instances, at least 1 when fraction > 0 and at most count - 1 (none for count 1)."""
    if count < 2 or fraction <= 0:
        return []
    n = min(count - 1, max(1, int(round(fraction * count))))
    perm = seeded_rng(seed, _STREAM_HELDOUT, zlib.crc32(name.encode())).permutation(count)
    return sorted(int(i) for i in perm[:n])


def plan_splits(seed: int, videos: int, names: list[str], instances: int, heldout_fraction: float, heldout_categories: int) -> SplitPlan:
    """The plan of a world of ``videos`` videos over the sounding categories ``names``.

    Raises:
        ValueError: when ``heldout_categories`` leaves no category to train on, or the fraction is outside [0, 1).
    """
    k = len(names)
    if not 0 <= heldout_categories < k:
        raise ValueError(f"heldout_categories must be in [0, {k - 1}] with {k} sounding categories, got {heldout_categories}")
    if not 0.0 <= heldout_fraction < 1.0:
        raise ValueError(f"heldout_instances must be in [0, 1), got {heldout_fraction}")
    held_cats = sorted(int(c) for c in seeded_rng(seed, _STREAM_HELDOUT, 0).permutation(k)[:heldout_categories])
    held = [[] if c in held_cats else _heldout_instances(seed, name, instances, heldout_fraction) for c, name in enumerate(names)]
    order = seeded_rng(seed, _STREAM_SPLIT, 0).permutation(videos)
    n_unseen = max(1, int(round(videos * heldout_categories / k))) if heldout_categories else 0
    eval_names = ["val", "test"] + (["test_seen"] if any(held) else [])
    by_split = split_order(order[n_unseen:], eval_names)
    by_split["test_unseen_categories"] = sorted(int(i) for i in order[:n_unseen])
    plan = SplitPlan(instances, held, held_cats, [])
    slots: dict[int, Slot] = {}
    for split_id, split in enumerate(SPLITS):
        cats = held_cats if split == "test_unseen_categories" else [c for c in range(k) if c not in held_cats]
        seen: dict[int, int] = {}
        for j, index in enumerate(by_split.get(split, [])):
            block, pos = divmod(j, len(cats))
            c = cats[int(seeded_rng(seed, _STREAM_LABELS, split_id, block).permutation(len(cats))[pos])]
            pool = plan.allowed(c, split)
            m = seen.get(c, 0)
            seen[c] = m + 1
            block, pos = divmod(m, len(pool))
            slots[index] = Slot(split, c, pool[int(seeded_rng(seed, _STREAM_INSTANCES, split_id, c, block).permutation(len(pool))[pos])])
    return SplitPlan(instances, held, held_cats, [slots[i] for i in range(videos)])
