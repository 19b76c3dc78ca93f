"""SQLite metadata store: get_many, get and iter_all return exactly what was written."""

from __future__ import annotations

import math
import random

import pytest

from avlearn.index.metadata import MetadataReader, SegmentMeta, write_metadata


def _awkward_rows(n: int) -> list[SegmentMeta]:
    rng = random.Random(0)
    names = ["plain", 'quote"s', "back\\slash", "ünïcødé 猫", "tab\tnew\nline", "", "comma,semi"]
    rows = []
    for i in range(n):
        start = rng.choice([0.0, 1e-300, 5e-324, 1 / 3, 123456.789012345678, 2.5, math.pi * 1e9, rng.random() * 1e4])
        labels = tuple(rng.sample(["dog", "guitar", "ünï", "a b", 'q"'], rng.randint(0, 3)))
        rows.append(SegmentMeta(i * 7 + 3, rng.choice(names) + str(i), "/a/" + rng.choice(names), start, labels, bool(i % 3)))
    return rows


def test_get_many_equals_written_rows(tmp_path):
    rows = _awkward_rows(2000)
    path = tmp_path / "metadata.sqlite"
    assert write_metadata(path, rows) == len(rows)
    reader = MetadataReader(path)
    try:
        want = {r.segment_id: r for r in rows}
        got = reader.get_many(list(want) + [-1, 1, 10**12])  # unknown ids are absent; more than one 900-id chunk
        assert got == want  # dataclass equality: start_sec bit-exact, labels and unicode intact
        assert list(reader.iter_all()) == sorted(rows, key=lambda r: r.segment_id)
        assert reader.get_many([]) == {}
        assert reader.get(rows[5].segment_id) == rows[5]
        with pytest.raises(KeyError):
            reader.get(1)
    finally:
        reader.close()
