"""The Ray engine (local Ray instance, 2 CPUs) produces the same shards as the local engine."""

from __future__ import annotations

import json

import numpy as np
import pytest

from avlearn.pipeline.embed import run_embed
from avlearn.pipeline.writer import iter_shards

ray = pytest.importorskip("ray", reason="the 'ray' extra is not installed")


def _collect(emb):
    rows = [r for _, r in iter_shards(emb)]
    return {k: np.concatenate([getattr(r, k) for r in rows]) for k in ("ids", "image", "audio", "has_audio", "clip_id")}


@pytest.mark.slow  # Ray start-up alone takes 10-30 s on a loaded 2-core machine
def test_ray_engine_matches_local_engine(tiny_checkpoint, archive, tmp_path):
    local = run_embed(tiny_checkpoint, archive, tmp_path / "local", files_per_shard=3, batch_size=4, dtype="float32", show_progress=False)
    remote = run_embed(
        tiny_checkpoint, archive, tmp_path / "ray", engine="ray", workers=2, files_per_shard=3, batch_size=4, dtype="float32", show_progress=False
    )
    assert remote["complete"] and remote["segments_total"] == local["segments_total"] > 0
    a, b = _collect(tmp_path / "local"), _collect(tmp_path / "ray")
    np.testing.assert_array_equal(a["ids"], b["ids"])
    np.testing.assert_array_equal(a["clip_id"], b["clip_id"])
    np.testing.assert_array_equal(a["has_audio"], b["has_audio"])
    np.testing.assert_allclose(a["image"], b["image"], atol=1e-5)  # batch composition differs
    np.testing.assert_allclose(a["audio"], b["audio"], atol=1e-5)
    errs = lambda p: sorted(json.loads(x)["clip_id"] for x in (p / "errors.jsonl").read_text().splitlines())  # noqa: E731
    assert errs(tmp_path / "ray") == errs(tmp_path / "local") == ["broken00.mp4", "broken01.mp4"]
