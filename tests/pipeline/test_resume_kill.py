"""kill -9 the `avlearn embed` CLI at random points several times; the resumed result equals an uninterrupted run."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from indexer_helpers import make_archive

from avlearn.pipeline.embed import run_embed
from avlearn.pipeline.writer import done_units, iter_shards


def _cmd(ckpt, data, out):
    return [
        sys.executable,
        "-m",
        "avlearn.cli",
        "embed",
        "--checkpoint",
        str(ckpt),
        "--data",
        str(data),
        "--out",
        str(out),
        "--files-per-shard",
        "1",
        "--batch-size",
        "3",
        "--workers",
        "2",
        "--no-progress",
    ]


def _result(out):
    rows = [r for _, r in iter_shards(out)]
    return {k: np.concatenate([getattr(r, k) for r in rows]) for k in ("ids", "image", "audio", "has_audio", "start_sec", "clip_id", "labels")}


@pytest.mark.slow  # ~4 CLI launches, each importing torch (~10 s on a loaded 2-core box)
def test_sigkill_resume_equals_uninterrupted_run(tiny_checkpoint, tmp_path):
    data = tmp_path / "data"
    make_archive(data, clips=10, seconds=2.0, corrupt=1, silent=1)  # 12 files -> 12 units
    ref_out, out = tmp_path / "ref", tmp_path / "emb"
    run_embed(tiny_checkpoint, data, ref_out, files_per_shard=1, batch_size=3, workers=2, show_progress=False)
    rng = random.Random(1234)
    kills = partial_states = 0
    for _ in range(3):
        before = len(done_units(out))
        proc = subprocess.Popen(_cmd(tiny_checkpoint, data, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        # wait for progress (a new finished shard), then kill at a random moment soon after it
        # (soon: on an idle machine the remaining units finish within a second)
        while proc.poll() is None and len(done_units(out)) <= before and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.05))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
        n = len(done_units(out))
        partial_states += 0 < n < 12
    assert kills >= 2 and partial_states >= 2
    subprocess.run(_cmd(tiny_checkpoint, data, out), check=True, capture_output=True)
    a, b = _result(out), _result(ref_out)
    np.testing.assert_array_equal(a["ids"], b["ids"])
    assert len(np.unique(a["ids"])) == len(a["ids"])
    for k in ("image", "audio", "has_audio", "start_sec", "clip_id", "labels"):
        np.testing.assert_array_equal(a[k], b[k])
    errors = (out / "errors.jsonl").read_text().splitlines()
    assert errors == (ref_out / "errors.jsonl").read_text().splitlines() and len(errors) == 1
    assert not list(out.rglob(".*.tmp-*"))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] and summary["segments_total"] == len(b["ids"])
